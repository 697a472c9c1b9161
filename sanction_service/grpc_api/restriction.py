"""RestrictionService: messages in, Checker calls, messages out.

Streams. The sync server runs a call on a pool thread, and a stream holds its thread for
its whole life: 16 idle streams used to take all 16 threads, and unary checks and health
timed out. Streams now run on a pool of their own (server.py), at most `max_streams` at
a time; the next ones get RESOURCE_EXHAUSTED with a RetryInfo. And a handler blocked
reading its next request could only be cancelled from outside, never ended with a status
of our choosing; so a reader thread per stream moves the requests into a small queue, and
the handler waits on that queue with a timeout: it ends the stream with UNAVAILABLE when
it stays idle too long or the server is closing (`close_streams`).

Deadlines: the time left is checked before each request's work, every 100 items of a
batch (inside its one read snapshot) and before an answer goes out; once it has passed
the call ends DEADLINE_EXCEEDED without further work. Refusals (DENY to a check with a
trip) are counted only for answers sent.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import NoReturn

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc

from .. import client_metrics
from ..checker import Checker, CheckResult, NotReady
from ..identity import InvalidDocument
from ..policy import InvalidTrip
from ..settings import MAX_BATCH
from ..store import StoreError
from . import batch_fast, errors, unary_fast
from .convert import InvalidField, check_response, to_query

log = logging.getLogger(__name__)
CALLER_ERRORS = (InvalidDocument, InvalidTrip, InvalidField)
# Batch items checked between two looks at the deadline: a few milliseconds of work.
CHUNK = 100
# Requests a reader thread takes ahead of its handler: beyond, HTTP/2 flow control makes
# the client wait, as when the handler read them itself.
STREAM_READ_AHEAD = 32
END = object()  # no more requests (client half-closed, cancelled, or the call is over)
CLOSING = object()  # the server is shutting down


class _Late(Exception):
    """The caller's deadline passed in the middle of a batch."""


class RestrictionServicer(restriction_pb2_grpc.RestrictionServiceServicer):
    def __init__(
        self, checker: Checker, *, fast_batches: bool = True, max_streams: int = 100, stream_idle_seconds: float = 60.0
    ):
        self.checker = checker
        self.fast_batches = fast_batches
        self.max_streams = max_streams
        self.stream_idle_seconds = stream_idle_seconds
        self._lock = threading.Lock()
        self._inboxes: set[queue.Queue] = set()  # one per open stream
        self._closing = False

    @property
    def open_streams(self) -> int:
        return len(self._inboxes)

    def CheckRestriction(self, request: bytes, context):
        # `register` hands the request over as the client's bytes.
        _in_time(context)
        fast = unary_fast.answer_check(self.checker, request)
        if fast is None:
            outcome = self._answer([_decoded(pb.CheckRequest, request, context)])
            if isinstance(outcome, status_pb2.Status):
                errors.abort(context, outcome)
            (answer,), results = outcome
        elif isinstance(fast, status_pb2.Status):
            errors.abort(context, fast)
        else:
            answer, result = fast
            results = [result]
        if isinstance(answer, status_pb2.Status):
            errors.abort(context, answer)
        _in_time(context)
        self.checker.refusals.add_results(results)
        client_metrics.count_answers(results)
        return answer

    def BatchCheckRestriction(self, request: bytes, context):
        # `register` hands the request over as the client's bytes: the fast path reads a
        # uniform batch straight from them.
        _in_time(context)
        if self.fast_batches:
            try:
                outcome = batch_fast.answer_batch(self.checker, request)
            except DecodeError:
                _undecodable(pb.BatchCheckRequest, context)
        else:
            checks = _decoded(pb.BatchCheckRequest, request, context).checks
            if len(checks) > MAX_BATCH:
                errors.abort(context, batch_fast.too_many_checks())
            outcome = self._answer(list(checks), context)
            if not isinstance(outcome, status_pb2.Status):
                outcome = (*outcome, 0)  # every ALLOW of the item-by-item path has its CheckResult
        if isinstance(outcome, status_pb2.Status):
            errors.abort(context, outcome)
        answers, results, unlisted = outcome
        _in_time(context)
        self.checker.refusals.add_results(results)
        client_metrics.count_answers(results, unlisted)
        # The fast path's answer is already serialized: `register`'s serializer passes bytes through.
        return answers if isinstance(answers, bytes) else _batch_response(answers)

    def reference_batch(self, checks) -> pb.BatchCheckResponse | status_pb2.Status:
        """Item by item through `_answer`: what the fast path must equal byte for byte."""
        outcome = self._answer(list(checks))
        return outcome if isinstance(outcome, status_pb2.Status) else _batch_response(outcome[0])

    def StreamCheckRestriction(self, request_iterator, context):
        inbox: queue.Queue = queue.Queue(STREAM_READ_AHEAD)
        with self._lock:
            if self._closing:
                refused = errors.unavailable("the server is shutting down")
            elif len(self._inboxes) >= self.max_streams:
                refused = errors.resource_exhausted(f"this server process has its {self.max_streams} streams open")
            else:
                refused = None
                self._inboxes.add(inbox)
        if refused is not None:
            errors.count_error(refused)
            errors.abort(context, refused)
        done = threading.Event()
        threading.Thread(target=_read_requests, args=(request_iterator, inbox, done), name="stream-reader", daemon=True).start()
        try:
            while True:
                request = self._next_request(inbox, context)
                if request is END:
                    return
                if not request.request_id:
                    status = errors.bad_request("request_id", "is required to match the answer")
                    errors.count_error(status)
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
                client_metrics.count_answers(results)
        finally:
            done.set()
            with self._lock:
                self._inboxes.discard(inbox)

    def _next_request(self, inbox: queue.Queue, context):
        """The stream's next request or END; UNAVAILABLE once idle past the limit or closing."""
        try:
            request = inbox.get(timeout=self.stream_idle_seconds if self.stream_idle_seconds > 0 else None)
        except queue.Empty:
            errors.abort(
                context, errors.unavailable(f"stream idle for more than {self.stream_idle_seconds:g} s; open a new one")
            )
        if request is not END and (request is CLOSING or self._closing):
            errors.abort(context, errors.unavailable("the server is shutting down"))
        return request

    def close_streams(self) -> None:
        """Refuse new streams and end the open ones with UNAVAILABLE (those busy with a
        request, once they have answered it)."""
        with self._lock:
            self._closing = True
            inboxes = list(self._inboxes)
        for inbox in inboxes:
            try:
                inbox.put_nowait(CLOSING)
            except queue.Full:
                pass  # its handler has requests to take, and sees _closing at the next one

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
            results = (
                self.checker.check_many(
                    queries, count_refusals=False, chunk=CHUNK, between_chunks=stop_if_late if context else None
                )
                if queries
                else []
            )
        except _Late:
            status = errors.late(context)
            errors.count_error(status)
            return status
        except NotReady as exc:
            status = errors.unavailable(f"not ready: {exc}")
            errors.count_error(status)
            return status
        except StoreError as exc:
            log.error("store unreadable: %s", exc)
            status = errors.unavailable("restriction store unavailable")
            errors.count_error(status)
            return status
        for i, result in zip(positions, results):
            if isinstance(result, CheckResult):
                answers[i] = check_response(result)
            else:
                answers[i] = errors.bad_request(result.field, result.reason)
        for answer in answers:
            if isinstance(answer, status_pb2.Status):
                errors.count_error(answer)
        return answers, results


def _read_requests(request_iterator, inbox: queue.Queue, done: threading.Event) -> None:
    """A stream's reader thread: requests into `inbox`, then END. Ends with the call (its
    iterator stops or raises once the handler has sent the status) or with the handler."""
    try:
        for request in request_iterator:
            while not done.is_set():
                try:
                    inbox.put(request, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if done.is_set():
                return
    except Exception:  # the client cancelled or the call ended: the handler learns it from END
        pass
    finally:
        while not done.is_set():
            try:
                inbox.put(END, timeout=0.5)
                break
            except queue.Full:
                continue


def _in_time(context) -> None:
    status = errors.late(context)
    if status is not None:
        errors.count_error(status)
        errors.abort(context, status)


def _batch_response(answers: list) -> pb.BatchCheckResponse:
    return pb.BatchCheckResponse(
        items=[
            pb.BatchCheckItem(error=item) if isinstance(item, status_pb2.Status) else pb.BatchCheckItem(result=item)
            for item in answers
        ]
    )


def _decoded(message_class, raw: bytes, context):
    """The request parsed; bytes that are no such message end the call with
    INVALID_ARGUMENT naming the request (gRPC's own parse said INTERNAL)."""
    try:
        return message_class.FromString(raw)
    except DecodeError:
        _undecodable(message_class, context)


def _undecodable(message_class, context) -> NoReturn:
    status = errors.bad_request("request", f"is not a serialized {message_class.DESCRIPTOR.full_name}")
    errors.count_error(status)
    errors.abort(context, status)


def _message_or_bytes(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def register(servicer: RestrictionServicer, server) -> None:
    """As the generated add_RestrictionServiceServicer_to_server, except that the two
    unary checks take their request as the client's bytes (the fast paths read them
    without a parse) and may answer already serialized bytes."""
    handlers = {
        "CheckRestriction": grpc.unary_unary_rpc_method_handler(
            servicer.CheckRestriction, request_deserializer=None, response_serializer=_message_or_bytes
        ),
        "BatchCheckRestriction": grpc.unary_unary_rpc_method_handler(
            servicer.BatchCheckRestriction, request_deserializer=None, response_serializer=_message_or_bytes
        ),
        "StreamCheckRestriction": grpc.stream_stream_rpc_method_handler(
            servicer.StreamCheckRestriction,
            request_deserializer=pb.StreamCheckRequest.FromString,
            response_serializer=pb.StreamCheckResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["RestrictionService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
