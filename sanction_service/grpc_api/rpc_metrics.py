"""Per-RPC metrics (grpc_server_started_total, grpc_server_handled_total by code,
grpc_server_handling_seconds, sanction_rpcs_in_flight) as the outermost server interceptor.

Outermost, so it also counts the calls the token interceptor refuses (UNAUTHENTICATED,
PERMISSION_DENIED). A call's code is the one its handler ended with: a status set or
aborted with (`context.code()`), UNKNOWN for an unhandled exception, CANCELLED when the
client had gone away by then, OK otherwise. A response stream is handled when it ends:
with its code, or CANCELLED when grpc drops it (the client went away). A client that
cancels a stream while its handler waits for the next request may be counted OK: grpc can
end the requests as if the client had closed its side before it marks the call cancelled,
and the handler has no way to tell the two apart. Not counted: calls
grpc refuses before any handler (unknown method, undecodable or oversized request, deadline
already passed) and non-blocking handlers (health Watch), whose function returns while the
call goes on.

The wrapped handler of each method is built once and reused: the per-call work is a few
counter increments and one histogram observation.
"""

from __future__ import annotations

import functools
import time

import grpc
from prometheus_client import Counter

from .. import metrics

OK = "OK"
UNKNOWN = "UNKNOWN"
CANCELLED = "CANCELLED"
# Instrumented handlers kept: methods x clients, with room to spare.
MAX_WRAPPED = 4096


class _Method:
    """One method's metric children, looked up once."""

    __slots__ = ("_handled", "_labels", "_in_flight", "_seconds", "_started", "grpc_type")

    def __init__(self, full_name: str, grpc_type: str, worker: str):
        service, _, method = full_name.lstrip("/").partition("/")
        self.grpc_type = grpc_type
        self._labels = (grpc_type, service, method)
        self._started = metrics.RPC_STARTED.labels(grpc_type, service, method, worker)
        self._in_flight = metrics.RPC_IN_FLIGHT.labels(service, method, worker)
        self._seconds = metrics.RPC_SECONDS.labels(grpc_type, service, method)
        self._handled: dict[str, Counter] = {}

    def begin(self) -> float:
        self._started.inc()
        self._in_flight.inc()
        return time.perf_counter()

    def end(self, code: str, started: float) -> None:
        self._seconds.observe(time.perf_counter() - started)
        self._in_flight.dec()
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = metrics.RPC_HANDLED.labels(*self._labels, code)
        handled.inc()


def _code(context, failed: bool) -> str:
    code = context.code()
    if code is not None:
        return code.name
    if failed:
        return UNKNOWN
    # A handler that returns after the client cancelled (a stream whose reader saw the
    # cancellation as its end) answered nobody.
    return OK if context.is_active() else CANCELLED


def _unary_response(behavior, method: _Method):
    def handle(request, context):
        started = method.begin()
        failed = True
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            method.end(_code(context, failed), started)

    return functools.update_wrapper(handle, behavior)  # keeps experimental_thread_pool


def _stream_response(behavior, method: _Method):
    def handle(request, context):
        started = method.begin()
        code = CANCELLED  # grpc closed the generator: the call ended before the stream did
        try:
            yield from behavior(request, context)
            code = _code(context, False)
        except GeneratorExit:
            raise
        except BaseException:
            code = _code(context, True)
            raise
        finally:
            method.end(code, started)

    return functools.update_wrapper(handle, behavior)


def _instrument(handler: grpc.RpcMethodHandler, full_name: str, worker: str) -> grpc.RpcMethodHandler:
    kind = (handler.request_streaming, handler.response_streaming)
    behavior = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[kind]
    if getattr(behavior, "experimental_non_blocking", False):
        return handler
    method = _Method(
        full_name,
        {(False, False): "unary", (False, True): "server_stream", (True, False): "client_stream", (True, True): "bidi_stream"}[
            kind
        ],
        worker,
    )
    wrap = _stream_response if handler.response_streaming else _unary_response
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    return make[kind](
        wrap(behavior, method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, worker: str = "0"):
        self.worker = worker
        # (method, id of the handler grpc found) -> (that handler, its instrumented twin).
        # Registered handlers, and the caller gate's per-client twins of them, are the
        # same objects on every call; a refusal is a new handler each time and is wrapped
        # afresh (the table is emptied when it grows past MAX_WRAPPED, so refusals
        # cannot grow it without bound).
        self._wrapped: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        name = handler_call_details.method
        key = (name, id(handler))
        known = self._wrapped.get(key)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _instrument(handler, name, self.worker)
        if len(self._wrapped) >= MAX_WRAPPED:
            self._wrapped.clear()
        self._wrapped[key] = (handler, wrapped)
        return wrapped
