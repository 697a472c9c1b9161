"""Bearer-token authentication with roles, as a gRPC server interceptor.

Tokens come from a JSON file: {"clients": [{"name": "rail-12306", "token": "...",
"roles": ["check"]}, ...]}. RestrictionService needs role `check`, ListAdminService role
`admin`; health and reflection stay open so load balancers can probe. Tokens are
compared in constant time against every configured token, so timing tells nothing about
which one (or how much of one) matched. Without a tokens file nothing is required.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

ROLE_FOR_SERVICE = {
    "sanction.v1.RestrictionService": "check",
    "sanction.v1.ListAdminService": "admin",
}
ROLES = frozenset(ROLE_FOR_SERVICE.values())


class TokenFileError(Exception):
    pass


@dataclass(frozen=True)
class Client:
    name: str
    token_digest: bytes  # SHA-256: equal-length comparisons, and no plain token kept in memory
    roles: frozenset[str]


def load_tokens(path: str | Path) -> list[Client]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = raw["clients"]
        short = [c["name"] for c in entries if len(c["token"]) < 16]
        clients = [Client(c["name"], _digest(c["token"].encode()), frozenset(c["roles"])) for c in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenFileError(f"cannot read tokens file {path}: {exc.__class__.__name__}") from None
    if short:
        raise TokenFileError(f"token of client {short[0]!r} is shorter than 16 characters")
    for client in clients:
        if not client.roles <= ROLES:
            raise TokenFileError(f"client {client.name!r} has unknown roles {sorted(client.roles - ROLES)}")
    return clients


class TokenAuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, clients: list[Client]):
        self.clients = clients

    def identify(self, token: bytes) -> Client | None:
        digest = _digest(token)
        found = None
        for client in self.clients:  # no early exit: constant work whatever matches
            if hmac.compare_digest(client.token_digest, digest):
                found = client
        return found

    def intercept_service(self, continuation, handler_call_details):
        service = handler_call_details.method.lstrip("/").split("/")[0]
        needed = ROLE_FOR_SERVICE.get(service)
        if needed is None:
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        header = metadata.get("authorization", "")
        if not header.startswith("Bearer "):
            return _deny(continuation(handler_call_details), grpc.StatusCode.UNAUTHENTICATED,
                         "a bearer token is required (authorization: Bearer <token>)")
        client = self.identify(header[len("Bearer "):].encode())
        if client is None:
            return _deny(continuation(handler_call_details), grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if needed not in client.roles:
            log.warning("client %s lacks role %s for %s", client.name, needed, handler_call_details.method)
            return _deny(continuation(handler_call_details), grpc.StatusCode.PERMISSION_DENIED,
                         f"role '{needed}' is required")
        return continuation(handler_call_details)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def _deny(handler, code: grpc.StatusCode, message: str):
    def abort(request_or_iterator, context):
        context.abort(code, message)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
