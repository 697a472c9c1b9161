"""A replica's bookkeeping in the store's meta database (no NATS here).

  replication:stream          {"name": stream, "created": the stream's creation time}
  replication:stream_seq      8 B big-endian: the last stream sequence applied (or rejected)
  replication:rejected:<seq>  {"event_id", "field", "reason"} of a message the ledger rejected

The stream sequence is written by `meta_updates` in the same LMDB transaction as the
batch's events, so a follower killed at any point finds exactly the position of what it
committed: nothing lost, nothing applied twice. A rejected message is recorded at its
sequence the same way on every replica; it leaves no journal entry, like a rejected feed
line. `digest.store_digest` keeps these keys out of `all` (a replica and a local load of
the same feed compare equal) and digests them on their own as `replication`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..ledger import REJECTED, FeedLine, Outcome
from ..store import ReadView, decode_u64, dumps, encode_u64

STREAM = b"replication:stream"
STREAM_SEQ = b"replication:stream_seq"
REJECTED_PREFIX = b"replication:rejected:"


class NotAReplica(Exception):
    """The store holds data that did not come from the stream (or from another stream)."""


@dataclass(frozen=True)
class Position:
    stream: str
    created: str
    seq: int


def read_position(view: ReadView) -> Position | None:
    """Where this replica is, or None if it never applied a stream message."""
    raw = view.meta(STREAM)
    if raw is None:
        return None
    identity = json.loads(raw)
    seq = view.meta(STREAM_SEQ)
    return Position(identity["name"], identity["created"], decode_u64(seq) if seq else 0)


def starting_position(view: ReadView, stream: str) -> Position | None:
    """The position to resume from; None for an empty store that starts at the stream's
    beginning. Raises NotAReplica for a store loaded locally or following another stream."""
    position = read_position(view)
    if position is None:
        if view.seq() > 0:
            raise NotAReplica(
                f"{view.store.path} holds {view.seq()} events that did not come from a stream: a "
                "replica starts empty (`sanction init`) or from a snapshot (`--bootstrap`)"
            )
        return None
    if position.stream != stream:
        raise NotAReplica(f"{view.store.path} follows stream {position.stream!r}, not {stream!r}")
    return position


def meta_updates(stream: str, created: str) -> Callable[[list[FeedLine], list[Outcome]], Mapping[bytes, bytes]]:
    """Ledger.apply's meta_updates for a batch whose FeedLine.line are stream sequences."""
    identity = dumps({"name": stream, "created": created})

    def updates(batch: list[FeedLine], outcomes: list[Outcome]) -> dict[bytes, bytes]:
        result = {STREAM: identity, STREAM_SEQ: encode_u64(max(line.line for line in batch))}
        for outcome in outcomes:
            if outcome.status == REJECTED:
                result[REJECTED_PREFIX + encode_u64(outcome.line)] = dumps(
                    {"event_id": outcome.event_id, "field": outcome.field, "reason": outcome.reason}
                )
        return result

    return updates


def rejections(view: ReadView) -> list[dict]:
    """Every message this replica rejected, with its stream sequence, in stream order."""
    found = []
    cursor = view.txn.cursor(db=view.store.meta)
    if cursor.set_range(REJECTED_PREFIX):
        for key, value in cursor:
            if not key.startswith(REJECTED_PREFIX):
                break
            found.append({"seq": decode_u64(key[len(REJECTED_PREFIX) :]), **json.loads(value)})
    return found
