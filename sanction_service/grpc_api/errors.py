"""Rich gRPC errors (google.rpc.Status with details) via grpcio-status.

Messages name the field and the rule, never the value: a full ID number must not reach
an error text.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .. import metrics
from ..checker import NotReady
from ..store import StoreError

log = logging.getLogger(__name__)


def bad_request(field: str, description: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=description)]
        )
    )
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=f"{field}: {description}", details=[detail])


def unavailable(message: str, retry_seconds: int = 1) -> status_pb2.Status:
    return _retry_later(code_pb2.UNAVAILABLE, message, retry_seconds)


def resource_exhausted(message: str, retry_seconds: int = 1) -> status_pb2.Status:
    return _retry_later(code_pb2.RESOURCE_EXHAUSTED, message, retry_seconds)


def late(context: grpc.ServicerContext) -> status_pb2.Status | None:
    """DEADLINE_EXCEEDED once the caller's deadline has passed, else None: nobody waits
    for the answer any more, so doing (and counting) the work would be waste."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message="the deadline passed before the answer")
    return None


def _retry_later(code: int, message: str, retry_seconds: int) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay={"seconds": retry_seconds}))
    return status_pb2.Status(code=code, message=message, details=[detail])


def not_found(message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.NOT_FOUND, message=message)


def abort(context: grpc.ServicerContext, status: status_pb2.Status) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort_with_status raises")  # grpc's stubs do not say it never returns


def code_name(status: status_pb2.Status) -> str:
    return _NAMES.get(status.code, str(status.code))


_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def guard(work):
    """Run the checker; when it cannot answer at all, the one Status for the whole call
    (never a decision it could not read)."""
    try:
        return work()
    except NotReady as exc:
        status = unavailable(f"not ready: {exc}")
    except StoreError as exc:
        log.error("store unreadable: %s", exc)
        status = unavailable("restriction store unavailable")
    count_error(status)
    return status


def count_error(status: status_pb2.Status) -> None:
    metrics.CHECK_ERRORS.labels(code_name(status)).inc()
