"""`sanction publish`: validate a feed exactly as `sanction load` does and append its
valid events to the stream, in feed order, each exactly once.

Two passes over the file. The first decodes and parses every line with the loader's own
code (`sanction_service.loaders.feed.decode_line`, `events.parse_event`), writes the rejects file in the
loader's format and finds where an earlier run of this feed stopped (below). The second
publishes the valid lines, their bytes unchanged, to `<prefix>.<TYPE>`.

Exactly once, in order:
- `Nats-Msg-Id` is the event's content digest (BLAKE2b of the canonical JSON, which
  includes the event id: the digest the ledger's dedupe compares). Within the stream's
  duplicate window the server drops a message it already has and acknowledges it as a
  duplicate, so a re-run after a crash publishes nothing twice. The digest rather than the
  raw id: an event id may hold characters a header cannot, and a corrected event sent
  again under the same id (FEED.md allows it after a rejection) must not be dropped.
- Before publishing, the stream's last message is read: if its Msg-Id is a line of this
  feed, that line and every line before it are already in the stream (the publisher
  only ever appends a line after the line before it) and are counted as duplicates
  without being sent. This covers a re-run after the duplicate window too, as long as
  nothing else was published since; otherwise lines published before the window are
  appended again, and every replica's ledger counts them as duplicates (same id, same
  content): the log grows, the data does not change.
- Order: up to `window` messages are in flight; each carries
  `Nats-Expected-Last-Msg-Id` = the previous line's Msg-Id (the first of a run or after
  a re-anchor: `Nats-Expected-Last-Sequence` = the stream's last sequence). If a message is
  lost (a reconnect, a leader change) the ones after it are refused by the server instead
  of being stored ahead of it; the publisher waits for the acknowledgements, keeps the
  acknowledged prefix and sends the rest again. The server checks duplicates before
  these expectations, so re-sent messages that did arrive are acknowledged as duplicates.
  When the expectation fails although every earlier line is acknowledged (another
  publisher appended meanwhile, or the previous line was a duplicate of an older
  message), the publisher re-anchors on the stream's current last sequence: each feed's
  own order is always kept.
- Each message carries `Sanction-Pepper-Fingerprint`, the fingerprint of the pepper the
  fleet keys its stores with: a follower with another pepper refuses to follow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js.errors import APIError

from sanction_service.loaders.feed import decode_line

from ..events import EventRejected, content_digest
from ..settings import NatsSettings
from .connect import NatsUnavailable, connect
from .stream import MSG_ID_HEADER, PEPPER_HEADER, ensure_stream, stream_state, subject_for

log = logging.getLogger(__name__)

WRONG_LAST = {10070, 10071}  # JetStream: wrong last msg ID / wrong last sequence


@dataclass
class PublishSummary:
    published: int = 0
    duplicates: int = 0
    already_in_stream: int = 0
    rejected: int = 0
    stream: str = ""
    stream_seq: int = 0
    rejects_path: str = ""
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        lines = self.published + self.duplicates + self.rejected
        text = (
            f"{lines} lines: {self.published} published, {self.duplicates} duplicates"
            + (f" ({self.already_in_stream} already in the stream before this run)" if self.already_in_stream else "")
            + f", {self.rejected} rejected; stream {self.stream} at sequence {self.stream_seq}"
        )
        if self.rejected:
            text += f"\nrejects written to {self.rejects_path}"
            for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1])[:10]:
                text += f"\n  {n:>8}  {reason}"
        return text


@dataclass(frozen=True, slots=True)
class Item:
    line: int
    subject: str
    payload: bytes
    msg_id: str


def _validate(
    feed: Path, rejects_path: Path, summary: PublishSummary, max_payload: int, tail_msg_id: str | None
) -> tuple[set[int], int]:
    """First pass: the loader's decoding and parsing, the rejects file in its format.
    Returns the rejected line numbers and the line whose Msg-Id is the stream's last (0: none)."""
    rejected: set[int] = set()
    tail_line = 0
    with open(feed, "rb") as f, open(rejects_path, "w", encoding="utf-8") as rejects:
        for number, raw in enumerate(f, 1):
            line = decode_line(number, raw)
            if line is None:
                continue
            # decode_line parses the event too (or says why not), exactly as `sanction load`.
            error, event_id, event = line.error, line.event_id, line.event
            if error is None:
                if tail_msg_id is not None and event.digest.hex() == tail_msg_id:
                    tail_line = number
                if len(raw.strip()) + 256 > max_payload:
                    error = EventRejected("", f"larger than the NATS server's max_payload ({max_payload} bytes)")
            if error is not None:
                rejected.add(number)
                summary.rejected += 1
                reason = f"{error.field}: {error.reason}" if error.field else error.reason
                summary.reject_reasons[reason] = summary.reject_reasons.get(reason, 0) + 1
                rejects.write(
                    json.dumps(
                        {"line": number, "event_id": event_id, "field": error.field, "reason": error.reason}, ensure_ascii=False
                    )
                    + "\n"
                )
    return rejected, tail_line


def _items(feed: Path, settings: NatsSettings, rejected: set[int], after_line: int, summary: PublishSummary) -> Iterator[Item]:
    """Second pass: the valid lines after `after_line`, as messages."""
    with open(feed, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number in rejected or not raw.strip():
                continue
            if number <= after_line:
                summary.duplicates += 1
                summary.already_in_stream += 1
                continue
            payload = raw.strip()
            event = json.loads(payload)
            yield Item(number, subject_for(settings, event["type"]), payload, content_digest(event).hex())


async def _tail_msg_id(js, settings: NatsSettings, last_seq: int) -> str | None:
    if last_seq <= 0:
        return None
    try:
        message = await js.get_msg(settings.stream, seq=last_seq)
    except APIError:
        return None  # deleted or unreadable: no shortcut, the duplicate window still applies
    return (message.headers or {}).get(MSG_ID_HEADER)


async def publish_feed(
    feed: str | os.PathLike,
    rejects_path: str | os.PathLike,
    settings: NatsSettings,
    pepper_fingerprint: str,
    *,
    window: int = 256,
    ack_timeout: float = 5.0,
    give_up_after: float = 60.0,
) -> PublishSummary:
    """Publish a feed file; raises NatsUnavailable if no progress was possible for
    `give_up_after` seconds (whatever was acknowledged stays published: run it again)."""
    summary = PublishSummary(stream=settings.stream, rejects_path=str(rejects_path))
    nc = await connect(settings, name="sanction publish", wait=give_up_after)
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        state = await ensure_stream(js, settings)
        tail = await _tail_msg_id(js, settings, state.last_seq)
        rejected, tail_line = _validate(Path(feed), Path(rejects_path), summary, nc.max_payload, tail)
        if tail_line:
            log.info("the stream's last message is line %d of this feed: publishing what follows it", tail_line)
        items = _items(Path(feed), settings, rejected, tail_line, summary)
        summary.stream_seq = await _send(
            js,
            settings,
            items,
            summary,
            pepper_fingerprint,
            state.last_seq,
            window=window,
            ack_timeout=ack_timeout,
            give_up_after=give_up_after,
        )
    finally:
        await nc.close()
    return summary


async def _send(
    js,
    settings: NatsSettings,
    items: Iterator[Item],
    summary: PublishSummary,
    fingerprint: str,
    last_seq: int,
    *,
    window: int,
    ack_timeout: float,
    give_up_after: float,
) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    previous: str | None = None  # Msg-Id of the last acknowledged line; None: anchor on last_seq
    carry: list[Item] = []
    backoff = 0.1
    while True:
        batch = carry + [item for _, item in zip(range(window - len(carry)), items)]
        if not batch:
            return last_seq
        results: list = []
        for k, item in enumerate(batch):
            headers = {MSG_ID_HEADER: item.msg_id, PEPPER_HEADER: fingerprint}
            before = batch[k - 1].msg_id if k else previous
            if before is None:
                headers["Nats-Expected-Last-Sequence"] = str(last_seq)
            else:
                headers["Nats-Expected-Last-Msg-Id"] = before
            try:
                results.append(await js.publish_async(item.subject, item.payload, headers=headers))
            except (NatsError, OSError) as exc:
                results.append(exc)
                break
        settled = await asyncio.gather(
            *(asyncio.wait_for(r, ack_timeout) if isinstance(r, asyncio.Future) else _raise(r) for r in results),
            return_exceptions=True,
        )
        acked = 0
        for ack in settled:
            if isinstance(ack, BaseException):
                break
            acked += 1
            if ack.duplicate:
                summary.duplicates += 1
            else:
                summary.published += 1
                last_seq = max(last_seq, ack.seq)
        if acked:
            previous = batch[acked - 1].msg_id
            deadline = loop.time() + give_up_after
            backoff = 0.1
        carry = batch[acked:]
        if not carry:
            continue
        error = settled[acked]
        if isinstance(error, APIError) and error.err_code in WRONG_LAST:
            # Every earlier line is acknowledged: anchor the next one on the stream's end.
            state = await stream_state(js, settings)
            last_seq, previous = (state.last_seq if state else 0), None
            continue
        if loop.time() >= deadline:
            raise NatsUnavailable(
                f"no acknowledgement from stream {settings.stream} for {give_up_after:.0f}s "
                f"({type(error).__name__}: {error}); {summary.published} published so far"
            )
        log.warning(
            "publish of line %d not acknowledged (%s: %s); sending again from there", carry[0].line, type(error).__name__, error
        )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


async def _raise(exc: BaseException):
    raise exc
