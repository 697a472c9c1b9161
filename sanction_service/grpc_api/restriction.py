"""RestrictionService: messages in, Checker calls, messages out. Nothing else."""

from __future__ import annotations

import logging

from google.rpc import status_pb2
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc

from .. import metrics
from ..checker import Checker, CheckResult, NotReady
from ..identity import InvalidDocument
from ..policy import InvalidTrip
from ..settings import MAX_BATCH
from ..store import StoreError
from . import errors
from .convert import InvalidField, check_response, to_query

log = logging.getLogger(__name__)
CALLER_ERRORS = (InvalidDocument, InvalidTrip, InvalidField)


class RestrictionServicer(restriction_pb2_grpc.RestrictionServiceServicer):
    def __init__(self, checker: Checker):
        self.checker = checker

    def CheckRestriction(self, request, context):
        outcome = self._answer([request])
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        item = outcome[0]
        if isinstance(item, status_pb2.Status):
            errors.abort(context, item)
        return item

    def BatchCheckRestriction(self, request, context):
        if len(request.checks) > MAX_BATCH:
            errors.abort(context, errors.bad_request("checks", f"a batch holds at most {MAX_BATCH} checks"))
        outcome = self._answer(list(request.checks))
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        items = [
            pb.BatchCheckItem(error=item) if isinstance(item, status_pb2.Status) else pb.BatchCheckItem(result=item)
            for item in outcome
        ]
        return pb.BatchCheckResponse(items=items)

    def StreamCheckRestriction(self, request_iterator, context):
        for request in request_iterator:
            if not request.request_id:
                status = errors.bad_request("request_id", "is required to match the answer")
                _count_error(status)
                yield pb.StreamCheckResponse(error=status)
                continue
            outcome = self._answer([request.check])
            item = outcome if isinstance(outcome, status_pb2.Status) else outcome[0]
            if isinstance(item, status_pb2.Status):
                yield pb.StreamCheckResponse(request_id=request.request_id, error=item)
            else:
                yield pb.StreamCheckResponse(request_id=request.request_id, result=item)

    def _answer(self, requests: list[pb.CheckRequest]) -> list | status_pb2.Status:
        """Per-item answers (CheckResponse or error Status), or one Status when we cannot answer at all."""
        answers: list = [None] * len(requests)
        queries, positions = [], []
        for i, request in enumerate(requests):
            try:
                queries.append(to_query(request))
                positions.append(i)
            except CALLER_ERRORS as exc:
                answers[i] = errors.bad_request(exc.field, exc.reason)
        try:
            results = self.checker.check_many(queries) if queries else []
        except NotReady as exc:
            status = errors.unavailable(f"not ready: {exc}")
            _count_error(status)
            return status
        except StoreError as exc:
            log.error("store unreadable: %s", exc)
            status = errors.unavailable("restriction store unavailable")
            _count_error(status)
            return status
        for i, result in zip(positions, results):
            if isinstance(result, CheckResult):
                answers[i] = check_response(result)
            else:
                answers[i] = errors.bad_request(result.field, result.reason)
        for answer in answers:
            if isinstance(answer, status_pb2.Status):
                _count_error(answer)
        return answers


def _count_error(status: status_pb2.Status) -> None:
    metrics.CHECK_ERRORS.labels(errors.code_name(status)).inc()
