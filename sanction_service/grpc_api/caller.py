"""Who is calling: the interceptor in front of RestrictionService and ListAdminService.

For each call it names the client (the token's name; without a tokens file the subject
of a verified client certificate when mutual TLS is on; else "anonymous"), refuses it
when the tokens file requires a token or role it lacks (auth.py decides), and runs the
handler with that name in client_metrics.CALLER, where the per-client counters read it.
Admin calls that change the list or read personal data (AUDITED) are written to the
audit log with their outcome (audit.py); so are those refused PERMISSION_DENIED (a known
client trying what it may not). UNAUTHENTICATED calls are not: anyone can make them,
and an fsync each would let anyone load the disk; the per-RPC metrics count them.

Health and reflection pass untouched.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import grpc

from .. import audit, client_metrics
from ..settings import AUDIT_LOG_FILE
from .auth import ROLE_FOR_SERVICE, Tokens

log = logging.getLogger(__name__)

ADMIN_SERVICE = "sanction.v1.ListAdminService"
# ApplyEvents changes the list; GetListing and LookupPerson read personal data. GetStats
# reads only totals (it writes only the refusal counters): not audited.
AUDITED = frozenset({"ApplyEvents", "GetListing", "LookupPerson"})
# Distinct certificate subjects given their own label; beyond, "other-certificate". A
# tokens file bounds token names; only the CA bounds subjects.
MAX_CERTIFICATE_NAMES = 100
OTHER_CERTIFICATE = "other-certificate"


class CallerInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: Tokens | None, audit_log: audit.AuditLog | None, *, client_certificates: bool = False):
        self.tokens = tokens
        self.audit_log = audit_log
        self.client_certificates = client_certificates
        self._subjects: set[str] = set()
        self._lock = threading.Lock()
        # (method, token name) -> (the handler grpc found, its wrapped twin): wrapping is
        # done once, not per call (the metrics interceptor outside also caches on the
        # handler's identity; a new object each call made it instrument every call
        # afresh, ~40 us). Bounded: token names come from the tokens file.
        self._wrapped: dict[tuple[str, str | None], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def reload_tokens(self) -> None:
        if self.tokens is not None:
            self.tokens.reload()

    def intercept_service(self, continuation, handler_call_details):
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        needed = ROLE_FOR_SERVICE.get(service)
        handler = continuation(handler_call_details)
        if needed is None or handler is None:
            return handler
        name, refused = None, False
        if self.tokens is not None:
            client, refusal = self.tokens.decide(handler_call_details.invocation_metadata, needed)
            if refusal is not None:
                if client is None:  # UNAUTHENTICATED
                    return _refusing(handler, *refusal)
                log.warning("client %s lacks role %s for %s", client.name, needed, handler_call_details.method)
                handler, refused = _refusing(handler, *refusal), True
            assert client is not None  # decide names the client whenever it lets the call go on
            name = client.name
        audited = service == ADMIN_SERVICE and (method in AUDITED or refused) and self.audit_log is not None
        if refused:  # a new refusing handler each time: not worth keeping
            return _with_caller(handler, functools.partial(self._name, name), method if audited else None, self.audit_log)
        key = (handler_call_details.method, name)
        known = self._wrapped.get(key)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _with_caller(handler, functools.partial(self._name, name), method if audited else None, self.audit_log)
        self._wrapped[key] = (handler, wrapped)
        return wrapped

    def _name(self, token_name: str | None, context) -> str:
        if token_name is not None:
            return token_name
        if self.client_certificates:
            subject = _certificate_subject(context)
            if subject:
                with self._lock:
                    if subject in self._subjects or len(self._subjects) < MAX_CERTIFICATE_NAMES:
                        self._subjects.add(subject)
                        return subject
                return OTHER_CERTIFICATE
        return client_metrics.ANONYMOUS


def _certificate_subject(context) -> str:
    """The verified client certificate's subject as gRPC reports it (e.g. CN=rail-12306), or ""."""
    auth = context.auth_context() or {}
    for key in ("x509_subject", "x509_common_name"):
        values = auth.get(key)
        if values:
            text = values[0].decode(errors="replace")
            return text if key == "x509_subject" else f"CN={text}"
    return ""


def _with_caller(handler, name_of, audited_method: str | None, audit_log):
    """The same handler, its behaviour run with the caller's name set (and, for an audited
    method, inside an audit entry). functools.wraps carries the behaviour's attributes
    over, among them the thread pool server.py's run_on gave it."""
    kind = _KINDS[handler.request_streaming, handler.response_streaming]
    behaviour = getattr(handler, kind)

    if handler.response_streaming:
        # Streams are checks (never audited). The generator runs on one pool thread from
        # its first answer to its last, so setting the name once is enough.
        @functools.wraps(behaviour)
        def run(request, context):
            client_metrics.CALLER.set(name_of(context))
            yield from behaviour(request, context)
    elif audited_method is None:

        @functools.wraps(behaviour)
        def run(request, context):
            # Not reset afterwards: the next call on this thread sets its own first.
            client_metrics.CALLER.set(name_of(context))
            return behaviour(request, context)
    else:

        @functools.wraps(behaviour)
        def run(request, context):
            name = name_of(context)
            client_metrics.CALLER.set(name)
            with audit_log.entry(client=name, peer=context.peer(), method=audited_method) as entry:
                try:
                    response = behaviour(request, context)
                except BaseException:
                    code = context.code() if hasattr(context, "code") else None
                    entry["outcome"] = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                    raise
                entry["outcome"] = "OK"
                return response

    return handler._replace(**{kind: run})


_KINDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
_MAKERS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _refusing(handler, code: grpc.StatusCode, message: str):
    """A handler of the same kind that ends the call with `code`. Its request is not even
    decoded, and it runs on the main pool: a refused stream takes no stream slot."""

    def abort(request_or_iterator, context):
        context.abort(code, message)

    return _MAKERS[_KINDS[handler.request_streaming, handler.response_streaming]](abort)


def caller_interceptor(settings) -> CallerInterceptor:
    """From the settings: the tokens file (TokenFileError if unusable) and the audit log
    (OSError now if it cannot be written, rather than a lost entry later)."""
    tokens = Tokens(settings.tokens_file) if settings.tokens_file else None
    audit_log = audit.AuditLog(settings.audit_log or Path(settings.data_dir) / AUDIT_LOG_FILE)
    audit_log.check_writable()
    return CallerInterceptor(tokens, audit_log, client_certificates=bool(settings.tls_client_ca))
