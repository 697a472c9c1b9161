"""Connecting to NATS with the credentials and TLS options of settings.NatsSettings.

Authentication is whatever the servers are configured for: user and password, a token,
or a .creds file (JWT and nkey seed). TLS is used for tls:// URLs or when a CA is given;
a client certificate where the servers require one. The client reconnects by itself
for ever (every half second); callers decide how long they wait for an answer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

__all__ = ["NatsError", "NatsUnavailable", "connect", "connect_options"]

from ..settings import NatsSettings

log = logging.getLogger(__name__)


ATTEMPT_SECONDS = 5.0


class NatsUnavailable(Exception):
    """No NATS server answered (or the stream did not) within the time allowed."""


def connect_options(settings: NatsSettings, *, name: str) -> dict:
    servers = [url.strip() for url in settings.url.split(",") if url.strip()]
    if not servers:
        raise ValueError("no NATS URL (--nats or SANCTION_NATS_URL)")
    options: dict = dict(
        servers=servers,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        ping_interval=5,
        max_outstanding_pings=2,
    )
    if settings.user:
        options.update(user=settings.user, password=settings.password)
    if settings.token:
        options["token"] = settings.token
    if settings.creds:
        options["user_credentials"] = settings.creds
    if settings.tls_ca or settings.tls_cert or any(url.startswith("tls://") for url in servers):
        context = ssl.create_default_context(cafile=settings.tls_ca or None)
        if settings.tls_cert:
            context.load_cert_chain(settings.tls_cert, settings.tls_key or None)
        options["tls"] = context
    return options


async def connect(settings: NatsSettings, *, name: str, wait: float | None = None, stop: asyncio.Event | None = None) -> Client:
    """Connect, retrying until `wait` seconds have passed (None: until `stop` is set).
    Raises NatsUnavailable when it gives up."""
    options = connect_options(settings, name=name)
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    told = False

    async def quiet(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    while True:
        client = Client()
        # With unlimited reconnects the client retries a first connection for ever too:
        # each attempt gets a bounded time here, and this loop decides when to give up.
        attempt = ATTEMPT_SECONDS if deadline is None else max(0.1, min(ATTEMPT_SECONDS, deadline - loop.time()))
        try:
            await asyncio.wait_for(
                client.connect(
                    error_cb=quiet,
                    disconnected_cb=_note(client, "disconnected from NATS"),
                    reconnected_cb=_note(client, "reconnected to NATS"),
                    **options,
                ),
                attempt,
            )
            return client
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await _discard(client)
            if not told:
                log.warning("cannot reach NATS at %s (%s); retrying", settings.url, str(exc) or type(exc).__name__)
                told = True
        if (deadline is not None and loop.time() >= deadline) or (stop is not None and stop.is_set()):
            raise NatsUnavailable(f"no NATS server answered at {settings.url}")
        await asyncio.sleep(0.5)


async def _discard(client: Client) -> None:
    try:
        await client.close()
    except Exception:  # a half-open client: nothing more to release
        pass


def _note(client: Client, text: str):
    async def callback() -> None:
        if not client.is_closed:
            log.warning(text)

    return callback
