"""Whether `sanction serve` may open its admin API where it listens.

ListAdminService.ApplyEvents can DELIST anyone, and only the tokens file gives roles (a
client certificate proves who a client is, but grants no role: every holder could call
ApplyEvents). So without a tokens file the server listens only on a loopback address
(or a Unix socket), where only this machine reaches it, unless the operator says in so
many words that it is open (SANCTION_ALLOW_UNAUTHENTICATED=on, --allow-unauthenticated).
Either way an admin API without tokens is logged as a WARNING at every start.
"""

from __future__ import annotations

import ipaddress
import socket

from .settings import Settings


class Unprotected(Exception):
    """A non-loopback address without a tokens file, and no explicit permission."""


def is_loopback(listen: str) -> bool:
    """Whether every address `listen` (gRPC's host:port, or unix:path) binds is loopback.
    An empty host, 0.0.0.0 and [::] mean every interface; a name that does not resolve
    counts as not loopback."""
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = listen.rpartition(":")[0].strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def admin_exposure(settings: Settings) -> str | None:
    """None when a tokens file protects the admin API; else the WARNING to log at start-up.
    Raises Unprotected when the address is not loopback and nothing allows it."""
    if settings.tokens_file:
        return None
    loopback = is_loopback(settings.listen)
    if not loopback and not settings.allow_unauthenticated:
        raise Unprotected(
            f"{settings.listen} is not a loopback address and there is no tokens file: anyone reaching it could call "
            "ListAdminService (ApplyEvents can DELIST anyone). Set SANCTION_TOKENS_FILE (--tokens-file), or "
            "SANCTION_ALLOW_UNAUTHENTICATED=on (--allow-unauthenticated) to serve it open anyway"
        )
    where = "this machine" if loopback else "anyone who reaches it"
    return (
        f"the admin API (ListAdminService: ApplyEvents, LookupPerson, ...) needs no token: no tokens file, so "
        f"{where} may call it on {settings.listen}"
    )
