"""Bearer-token authentication with roles: the tokens in force and the decision for one call.

Tokens come from a JSON file: {"clients": [{"name": "rail-12306", "token": "...",
"roles": ["check"]}, ...]}. RestrictionService needs role `check`, ListAdminService role
`admin`; health and reflection stay open so load balancers can probe. Tokens are
compared in constant time against every configured token, so timing tells nothing about
which one (or how much of one) matched. Without a tokens file nothing is required.

The file is read again on SIGHUP (`Tokens.reload`, wired in server.py), so a token is
revoked or added without a restart. A new file that cannot be used leaves the tokens in
force as they were and says so (log ERROR, sanction_tokens_reloads_total{result="error"}):
denying everyone because of a typo would stop every client, and the old set was valid
an instant ago. The interceptor that applies these decisions is grpc_api/caller.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from .. import client_metrics

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


class Tokens:
    """The clients in force, replaced whole (one reference swap) by `reload`, so a call
    sees either the old set or the new one."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.clients = load_tokens(path)

    def identify(self, token: bytes) -> Client | None:
        digest = _digest(token)
        found = None
        for client in self.clients:  # no early exit: constant work whatever matches
            if hmac.compare_digest(client.token_digest, digest):
                found = client
        return found

    def decide(self, metadata, needed: str) -> tuple[Client | None, tuple[grpc.StatusCode, str] | None]:
        """(the client, None) when the call may go on, else (the client if known, (code, message))."""
        header = dict(metadata or ()).get("authorization", "")
        if not header.startswith("Bearer "):
            return None, (grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required (authorization: Bearer <token>)")
        client = self.identify(header[len("Bearer ") :].encode())
        if client is None:
            return None, (grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if needed not in client.roles:
            return client, (grpc.StatusCode.PERMISSION_DENIED, f"role '{needed}' is required")
        return client, None

    def reload(self) -> bool:
        """Read the file again; on any problem keep the clients in force (and say so)."""
        try:
            clients = load_tokens(self.path)
        except TokenFileError as exc:
            client_metrics.TOKEN_RELOADS.labels("error").inc()
            log.error("tokens file not reloaded, the %d clients loaded before stay in force: %s", len(self.clients), exc)
            return False
        before = {c.name: c for c in self.clients}
        after = {c.name: c for c in clients}
        changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
        self.clients = clients
        client_metrics.TOKEN_RELOADS.labels("ok").inc()
        log.info(
            "tokens file reloaded: %d clients; added %s, removed %s, token or roles changed %s",
            len(clients),
            sorted(after.keys() - before.keys()) or "none",
            sorted(before.keys() - after.keys()) or "none",
            changed or "none",
        )
        return True


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()
