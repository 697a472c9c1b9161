"""Per-client Prometheus counters, the metrics side of the audit trail: which client
(a token's name, a client certificate's subject, or "anonymous") got how many answers of
each decision, plus the health of the tokens file and of the audit log.

Label values are bounded: token names come only from the tokens file, certificate
subjects are capped by grpc_api/caller.py, and decisions are ALLOW or DENY. The client
being answered is in CALLER, set by the interceptor for the thread running the call.
"""

from __future__ import annotations

import contextvars
import functools

from prometheus_client import Counter

from .checker import CheckResult
from .decisions import ALLOW, DENY

ANONYMOUS = "anonymous"
CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default=ANONYMOUS)

CLIENT_CHECKS = Counter(
    "sanction_client_checks_total",
    "Check answers sent, by client (token name, certificate subject or anonymous) and decision "
    "(batch and stream items counted one by one; items answered with an error are not).",
    ["client", "decision"],
)
TOKEN_RELOADS = Counter(
    "sanction_tokens_reloads_total",
    "Tokens file re-reads on SIGHUP: ok (new tokens in force) or error (old ones kept).",
    ["result"],
)
AUDIT_WRITE_ERRORS = Counter(
    "sanction_audit_write_errors_total",
    "Admin-call audit entries that could not be written to the audit log (they are logged).",
)

_child = functools.lru_cache(maxsize=4096)(CLIENT_CHECKS.labels)


def count_answers(results, unlisted: int = 0) -> None:
    """Count sent answers for the current caller: the CheckResults among `results`, plus
    `unlisted` ALLOW answers the batch fast path gave without a CheckResult."""
    allow, deny = unlisted, 0
    for r in results:
        if isinstance(r, CheckResult):
            if r.decision.decision == DENY:
                deny += 1
            else:
                allow += 1
    client = CALLER.get()
    if allow:
        _child(client, ALLOW).inc(allow)
    if deny:
        _child(client, DENY).inc(deny)
