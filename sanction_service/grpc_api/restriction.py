"""RestrictionService: messages in, Checker calls, messages out.

Deadlines: the time left is checked before each request's work, every 100 items of a
batch (inside its one read snapshot) and before an answer goes out; once it has passed
the call ends DEADLINE_EXCEEDED without further work. Refusals (DENY to a check with a
trip) are counted only for answers sent.
"""

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
# Batch items checked between two looks at the deadline: a few milliseconds of work.
CHUNK = 100


class _Late(Exception):
    """The caller's deadline passed in the middle of a batch."""


class RestrictionServicer(restriction_pb2_grpc.RestrictionServiceServicer):
    def __init__(self, checker: Checker):
        self.checker = checker

    def CheckRestriction(self, request, context):
        _in_time(context)
        outcome = self._answer([request])
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        (answer,), results = outcome
        if isinstance(answer, status_pb2.Status):
            errors.abort(context, answer)
        _in_time(context)
        self.checker.refusals.add_results(results)
        return answer

    def BatchCheckRestriction(self, request, context):
        if len(request.checks) > MAX_BATCH:
            errors.abort(context, errors.bad_request("checks", f"a batch holds at most {MAX_BATCH} checks"))
        _in_time(context)
        outcome = self._answer(list(request.checks), context)
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        answers, results = outcome
        _in_time(context)
        self.checker.refusals.add_results(results)
        return pb.BatchCheckResponse(items=[
            pb.BatchCheckItem(error=item) if isinstance(item, status_pb2.Status) else pb.BatchCheckItem(result=item)
            for item in answers
        ])

    def StreamCheckRestriction(self, request_iterator, context):
        for request in request_iterator:
            if not request.request_id:
                status = errors.bad_request("request_id", "is required to match the answer")
                _count_error(status)
                yield pb.StreamCheckResponse(error=status)
                continue
            _in_time(context)
            outcome = self._answer([request.check])
            if isinstance(outcome, status_pb2.Status):
                yield pb.StreamCheckResponse(request_id=request.request_id, error=outcome)
                continue
            (answer,), results = outcome
            if isinstance(answer, status_pb2.Status):
                yield pb.StreamCheckResponse(request_id=request.request_id, error=answer)
                continue
            yield pb.StreamCheckResponse(request_id=request.request_id, result=answer)
            # grpc asks for the next answer only once this one is sent.
            self.checker.refusals.add_results(results)

    def _answer(self, requests, context=None) -> tuple[list, list] | status_pb2.Status:
        """Per-item answers (CheckResponse or error Status) with the checker's results (to
        count refusals once they are sent), or one Status when we cannot answer at all.
        With `context`, a batch stops once the caller's deadline has passed."""
        answers: list = [None] * len(requests)
        queries, positions = [], []
        for i, request in enumerate(requests):
            try:
                queries.append(to_query(request))
                positions.append(i)
            except CALLER_ERRORS as exc:
                answers[i] = errors.bad_request(exc.field, exc.reason)

        def stop_if_late() -> None:
            if errors.late(context) is not None:
                raise _Late

        try:
            results = self.checker.check_many(queries, count_refusals=False, chunk=CHUNK,
                                              between_chunks=stop_if_late if context else None) if queries else []
        except _Late:
            status = errors.late(context)
            _count_error(status)
            return status
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
        return answers, results


def _in_time(context) -> None:
    status = errors.late(context)
    if status is not None:
        _count_error(status)
        errors.abort(context, status)


def _count_error(status: status_pb2.Status) -> None:
    metrics.CHECK_ERRORS.labels(errors.code_name(status)).inc()
