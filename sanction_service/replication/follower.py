"""`sanction follow`: apply the stream to this replica's store, in stream order, exactly once.

The follower holds the store's writer lock for as long as it runs (no local load can
slip batches in between) and applies each fetched batch of messages through the same
Ledger as `sanction load`, in one LMDB transaction together with the stream sequence of
its last message (`position.meta_updates`). The store, not the consumer, is the
authority on where the replica is: on start, and whenever the delivery is not exactly
the next sequence (a reconnect, a redelivery after a restart of NATS), the follower
deletes its durable pull consumer and creates it again starting at stored sequence + 1.
Messages are acknowledged (explicit ack) only after their batch has committed, so a
kill -9 anywhere leaves either a committed batch with its position or neither.

Every message is judged alike on every replica: a payload that is not a valid event, an
event the ledger rejects (unknown listing, conflict, …) or a message without the pepper
fingerprint header is recorded as rejected at its sequence and the stream goes on. A
message published with another pepper's fingerprint means this replica's pepper is not
the fleet's: the follower refuses to go on (exit 2) before applying it.

A gap is never skipped: if the stream no longer holds the sequence after the stored one
(age limit, deleted messages, a recreated stream), the follower refuses (exit 5) and the
replica must be bootstrapped again from a snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import time
from pathlib import Path

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from sanction_service.loaders.feed import decode_line

from .. import metrics as service_metrics
from ..events import EventRejected
from ..ledger import FeedLine, Ledger
from ..settings import NatsSettings
from ..store import Store
from . import metrics, position
from .connect import connect
from .status import FollowerStatus, write_status
from .stream import PEPPER_HEADER, StreamState, stream_state

log = logging.getLogger(__name__)

EXIT_STOPPED, EXIT_REFUSED, EXIT_GAP = 0, 2, 5


class Refused(Exception):
    """This replica must not follow this stream (exit 2)."""

    code = EXIT_REFUSED


class Gap(Refused):
    """The stream no longer holds what comes after the replica's position (exit 5)."""

    code = EXIT_GAP


class _Resync(Exception):
    pass


def default_consumer(data_dir: str | os.PathLike) -> str:
    """One durable consumer per host and data directory."""
    where = hashlib.blake2b(str(Path(data_dir).resolve()).encode(), digest_size=4).hexdigest()
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]
    return f"replica-{host}-{where}"


class Follower:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        fingerprint: str,
        settings: NatsSettings,
        status_path: Path,
        *,
        consumer: str,
        batch: int = 500,
        idle_seconds: float = 1.0,
    ):
        self.store = store
        self.ledger = ledger
        self.fingerprint = fingerprint
        self.settings = settings
        self.status_path = status_path
        self.consumer = consumer
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.status = FollowerStatus(pid=os.getpid(), stream=settings.stream, consumer=consumer)
        self.applied = 0
        self.created = ""
        self._start_head: int | None = None
        self.js: JetStreamContext | None = None

    async def run(self, stop: asyncio.Event) -> int:
        """Follow until `stop` is set (0) or the replica must not go on (Refused.code)."""
        try:
            with self.store.read() as view:
                start = position.starting_position(view, self.settings.stream)
        except position.NotAReplica as exc:
            return self._refuse(Refused(str(exc)))
        if start is not None:
            self.applied, self.created = start.seq, start.created
        self.status.applied_seq = self.applied
        self._set_state("connecting")
        try:
            nc = await connect(self.settings, name=f"sanction follow {self.consumer}", stop=stop)
        except Exception:
            if stop.is_set():
                return self._stopped()
            raise
        self.js = nc.jetstream()
        try:
            await self._loop(stop)
        except Refused as exc:
            return self._refuse(exc)
        finally:
            await nc.close()
        return self._stopped()

    async def _loop(self, stop: asyncio.Event) -> None:
        sub, fresh = None, False
        while not stop.is_set():
            if sub is None:
                try:
                    sub = await self._resync()
                    fresh = True
                except (NatsError, OSError, _Resync) as exc:
                    self._set_state("disconnected", f"{type(exc).__name__}: {exc}")
                    await _sleep(stop, 0.5)
                    continue
            # Caught up, ask for one message: the client's fetch of a batch waits for the
            # whole batch (or the time-out) once a first message came; one returns at once.
            want = self.batch if self.status.lag_events > 0 else 1
            try:
                messages = await sub.fetch(want, timeout=self.idle_seconds)
            except TimeoutError:
                if await self._idle():
                    sub = await self._drop(sub)
                continue
            except (NatsError, OSError) as exc:
                self._set_state("disconnected", f"{type(exc).__name__}: {exc}")
                sub = await self._drop(sub)
                await _sleep(stop, 0.5)
                continue
            accepted: list[Msg] = []
            for message in messages:
                seq = message.metadata.sequence.stream
                if seq <= self.applied:
                    await _ack(message)  # a redelivery of what the store already holds
                    continue
                if seq != self.applied + len(accepted) + 1:
                    if fresh and not accepted:
                        raise Gap(
                            f"the stream delivered sequence {seq} where {self.applied + 1} was expected: "
                            f"messages {self.applied + 1}..{seq - 1} are gone from stream "
                            f"{self.settings.stream}; bootstrap this replica again from a snapshot"
                        )
                    log.info(
                        "delivery jumped to sequence %d after %d: recreating the consumer", seq, self.applied + len(accepted)
                    )
                    sub = await self._drop(sub)
                    break
                accepted.append(message)
            if accepted:
                self._apply(accepted)
                fresh = False
                for message in accepted:
                    await _ack(message)

    @property
    def _jetstream(self) -> JetStreamContext:
        """The connection's JetStream context: `run` sets it before the loop that uses it."""
        if self.js is None:
            raise RuntimeError("the follower is not connected")
        return self.js

    async def _resync(self):
        """Check the stream against the store, then (re)create the consumer at stored + 1."""
        state = await stream_state(self._jetstream, self.settings)
        if state is None:
            raise _Resync(f"stream {self.settings.stream} does not exist yet")
        self._check(state)
        self.created = self.created or state.created
        if self._start_head is None:
            self._start_head = self.status.start_head = state.last_seq
        self._saw_head(state.last_seq)
        try:
            await self._jetstream.delete_consumer(self.settings.stream, self.consumer)
        except NotFoundError:
            pass
        await self._jetstream.add_consumer(
            self.settings.stream,
            ConsumerConfig(
                durable_name=self.consumer,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.applied + 1,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=max(1000, 4 * self.batch),
                description="sanction follow",
            ),
        )
        sub = await self._jetstream.pull_subscribe_bind(durable=self.consumer, stream=self.settings.stream)
        metrics.RESYNCS.inc()
        log.info(
            "following stream %s from sequence %d (head %d) as consumer %s",
            self.settings.stream,
            self.applied + 1,
            state.last_seq,
            self.consumer,
        )
        self._set_state(self._progress_state())
        return sub

    def _check(self, state: StreamState) -> None:
        if self.created and state.created != self.created:
            raise Gap(
                f"stream {state.name} was created at {state.created}, but this replica followed the one "
                f"created at {self.created}: bootstrap it again from a snapshot"
            )
        if state.last_seq < self.applied:
            raise Gap(
                f"stream {state.name} ends at sequence {state.last_seq} but this replica has applied up to "
                f"{self.applied}: the stream was purged or recreated; bootstrap again from a snapshot"
            )
        if state.first_seq > self.applied + 1:
            raise Gap(
                f"stream {state.name} now starts at sequence {state.first_seq}; this replica needs "
                f"{self.applied + 1}: it is behind the retained window; bootstrap again from a snapshot"
            )

    async def _idle(self) -> bool:
        """Nothing delivered for a while: learn the head. True if the consumer should be
        recreated (the stream has more than the store and nothing came)."""
        try:
            state = await stream_state(self._jetstream, self.settings)
        except (NatsError, OSError) as exc:
            self._set_state("disconnected", f"{type(exc).__name__}: {exc}")
            return False
        if state is None:
            raise Gap(f"stream {self.settings.stream} no longer exists")
        self._check(state)
        self._saw_head(state.last_seq)
        self._set_state(self._progress_state())
        return state.last_seq > self.applied

    async def _drop(self, sub):
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone; the consumer is recreated anyway
                pass
        return None

    def _apply(self, messages) -> None:
        lines: list[FeedLine] = []
        for message in messages:
            seq = message.metadata.sequence.stream
            fingerprint = (message.headers or {}).get(PEPPER_HEADER)
            if fingerprint is not None and fingerprint != self.fingerprint:
                if lines:
                    self._commit(lines, messages[: len(lines)])
                raise Refused(
                    f"stream message {seq} was published for stores keyed with pepper fingerprint "
                    f"{fingerprint}; this replica's pepper has fingerprint {self.fingerprint}. Its every "
                    "lookup would miss: configure the fleet's pepper (SANCTION_PEPPER_FILE)"
                )
            if fingerprint is None:
                line = FeedLine(seq, error=EventRejected("", f"not published by sanction publish (no {PEPPER_HEADER} header)"))
            else:
                line = decode_line(seq, message.data) or FeedLine(seq, error=EventRejected("", "not valid JSON"))
            lines.append(line)
        self._commit(lines, messages)

    def _commit(self, lines: list[FeedLine], messages) -> None:
        outcomes = list(
            self.ledger.apply(
                lines, batch_size=len(lines) + 1, meta_updates=position.meta_updates(self.settings.stream, self.created)
            )
        )
        for outcome in outcomes:
            metrics.MESSAGES.labels(outcome.status.lower()).inc()
            service_metrics.EVENTS.labels(outcome.status.lower()).inc()
            if outcome.status == "REJECTED":
                log.warning(
                    "stream message %d (event %r) rejected: %s %s",
                    outcome.line,
                    outcome.event_id,
                    outcome.field,
                    outcome.reason,
                )
        self.applied = lines[-1].line
        last = messages[-1].metadata
        self._saw_head(last.sequence.stream + last.num_pending)
        behind = self.status.head_seq > self.applied
        self.status.lag_seconds = max(0.0, time.time() - last.timestamp.timestamp()) if behind else 0.0
        self._set_state(self._progress_state())

    def _saw_head(self, head: int) -> None:
        self.status.head_seq = max(head, self.applied)
        self.status.head_checked_at = time.time()

    def _progress_state(self) -> str:
        return "following" if self.applied >= (self._start_head or 0) else "catching_up"

    def _set_state(self, state: str, reason: str = "") -> None:
        if state != self.status.state:
            log.info("follower %s%s", state, f": {reason}" if reason else "")
        self.status.state, self.status.reason = state, reason
        self.status.applied_seq = self.applied
        self.status.lag_events = max(0, self.status.head_seq - self.applied)
        if self.status.lag_events == 0:
            self.status.lag_seconds = 0.0
        write_status(self.status_path, self.status)
        metrics.observe(self.status)

    def _refuse(self, exc: Refused) -> int:
        log.error("refusing to follow: %s", exc)
        self._set_state("refused", str(exc))
        return exc.code

    def _stopped(self) -> int:
        self._set_state("stopped")
        return EXIT_STOPPED


async def _ack(message) -> None:
    try:
        await message.ack()
    except (NatsError, OSError):
        pass  # the store holds the position; an unacknowledged message is skipped when redelivered


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
