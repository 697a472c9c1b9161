"""RestrictionService: messages in, Checker calls, messages out. Nothing else."""

from __future__ import annotations

import logging

import grpc
from google.rpc import status_pb2
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc

from ..checker import Checker, CheckResult
from ..identity import InvalidDocument
from ..policy import InvalidTrip
from ..settings import MAX_BATCH
from . import batch_fast, errors
from .convert import InvalidField, check_response, to_query

log = logging.getLogger(__name__)
CALLER_ERRORS = (InvalidDocument, InvalidTrip, InvalidField)


class RestrictionServicer(restriction_pb2_grpc.RestrictionServiceServicer):
    def __init__(self, checker: Checker, *, fast_batches: bool = True):
        self.checker = checker
        self.fast_batches = fast_batches

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
        if self.fast_batches:
            outcome = batch_fast.answer_batch(self.checker, request)
        else:
            outcome = self.reference_batch(request.checks)
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        return outcome  # serialized by `register`'s serializer, which passes bytes through

    def reference_batch(self, checks) -> pb.BatchCheckResponse | status_pb2.Status:
        """Item by item through `_answer`: what the fast path must equal byte for byte."""
        outcome = self._answer(list(checks))
        if isinstance(outcome, status_pb2.Status):
            return outcome
        return pb.BatchCheckResponse(items=[
            pb.BatchCheckItem(error=item) if isinstance(item, status_pb2.Status) else pb.BatchCheckItem(result=item)
            for item in outcome
        ])

    def StreamCheckRestriction(self, request_iterator, context):
        for request in request_iterator:
            if not request.request_id:
                status = errors.bad_request("request_id", "is required to match the answer")
                errors.count_error(status)
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
        results = errors.guard(lambda: self.checker.check_many(queries) if queries else [])
        if isinstance(results, status_pb2.Status):
            return results
        for i, result in zip(positions, results):
            if isinstance(result, CheckResult):
                answers[i] = check_response(result)
            else:
                answers[i] = errors.bad_request(result.field, result.reason)
        for answer in answers:
            if isinstance(answer, status_pb2.Status):
                errors.count_error(answer)
        return answers


def _message_or_bytes(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def register(servicer: RestrictionServicer, server) -> None:
    """As the generated add_RestrictionServiceServicer_to_server, except that a batch
    answer may arrive already serialized (the fast path writes bytes)."""
    handlers = {
        "CheckRestriction": grpc.unary_unary_rpc_method_handler(
            servicer.CheckRestriction, request_deserializer=pb.CheckRequest.FromString,
            response_serializer=pb.CheckResponse.SerializeToString),
        "BatchCheckRestriction": grpc.unary_unary_rpc_method_handler(
            servicer.BatchCheckRestriction, request_deserializer=pb.BatchCheckRequest.FromString,
            response_serializer=_message_or_bytes),
        "StreamCheckRestriction": grpc.stream_stream_rpc_method_handler(
            servicer.StreamCheckRestriction, request_deserializer=pb.StreamCheckRequest.FromString,
            response_serializer=pb.StreamCheckResponse.SerializeToString),
    }
    name = pb.DESCRIPTOR.services_by_name["RestrictionService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
