"""Applies feed events to the store: the one place where write transactions live.

Events are applied in batches, one write transaction per batch: an event's writes
(record, indexes, exemptions, counters, dedupe row, journal entry) commit together with
its batch or not at all. Each event is first checked against the store (`_plan`: reads
only; every rejection is raised there) and only then written (`_write`: raises no
rejection), so a rejected event leaves nothing behind without a nested transaction of its
own (a prepared LIST, the hot path, lets its first two writes do the checks, and takes
its dedupe row back if the second refuses: same transaction, same end state); anything
else that goes wrong aborts the whole batch. The dedupe row is written in the same
transaction as the effects, which is what makes a re-run after a crash idempotent: an
event is either fully applied and known, or neither. Lines are applied as they arrive,
in their batch's open transaction; their outcomes are yielded once it committed.

Per batch, the journal sequence, its chain, the last event time and the counters are read
once, kept in a `_Tally` while the batch runs and written once before the commit: the
same values the event-by-event writes would leave. `ledger_reference.ReferenceLedger` is
the former one-nested-transaction-per-event code, kept for the tests to compare with.

A Ledger writes only while it holds the store's writer lock (taken for the whole of
`apply` unless the caller already holds it for longer, as a whole-feed load does).
There is no growth of the map at run time: a full map or disk aborts the batch and
raises StoreFull, which names the cause.

`apply` takes an optional `meta_updates(batch, outcomes)`: meta keys the caller wants
written in each batch's own transaction (a replica records the stream position it has
applied up to), so they commit with the batch's events or not at all.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import lmdb
import msgspec

from . import lifecycle
from .bulkprep import prepare_event
from .events import Event, EventRejected, EventType, parse_event
from .identity import KEY_SIZE, Document, DocumentKeys
from .settings import MAX_FEED_LINE_BYTES, TEST_BATCH_PAUSE
from .store import (
    GENESIS_CHAIN,
    Store,
    StoreCorrupt,
    decode_u64,
    delete_binding,
    dumps,
    encode_u64,
    exemption_key,
    exemption_prefix,
    loads,
    next_chain,
    persons_of,
    put_binding,
)

log = logging.getLogger(__name__)

APPLIED = "APPLIED"
DUPLICATE = "DUPLICATE"
REJECTED = "REJECTED"


class Outcome(NamedTuple):
    """What became of one line (a named tuple: one is made per event, millions per load)."""

    line: int
    status: str
    event_id: str = ""
    reason: str = ""
    field: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class FeedLine:
    """One line of a feed: the decoded JSON (or the event already parsed from it, when a
    worker process did that), or why it could not be decoded or parsed."""

    line: int
    raw: object = None
    error: EventRejected | None = None
    event: Event | None = None
    event_id: str = ""


MetaUpdates = Callable[[list[FeedLine], list[Outcome]], Mapping[bytes, bytes]]


def raw_event_id(raw: object) -> str:
    """The event id of a line that may not parse, for reporting it."""
    event_id = raw.get("event_id", "") if isinstance(raw, dict) else ""
    return event_id if isinstance(event_id, str) else ""


# What a parse worker (or the serial reader) makes of a feed line, for the writer:
# A prepared LIST: (line, PREPARED, event_id, listing_id, digest, occurred_at, list_type,
# record, index log records (key + listing id + kind + "+" each), bindings (document key + person key,
# 32 bytes each), journal entry without its chain). A line to decode again: (line, TEXT,
# raw bytes). A rejection by the parser: (line, REJECT, event_id, field, reason).
# A DELIST, PERFORM or EXTEND, parsed: (line, FOLLOW, type, event_id, listing_id, digest,
# occurred_at, reason or None, the date as YYYY-MM-DD).
PREPARED, TEXT, REJECT, FOLLOW = 0, 1, 2, 3
_ADD, _REMOVE = b"+", b"-"


class _Followup:
    """What lifecycle.lifted / extended and `_count` read of a DELIST, PERFORM or EXTEND."""

    __slots__ = ("type", "reason", "effective_on", "expires_on")

    def __init__(self, type_: str, reason, day):
        self.type = EventType(type_)
        self.reason, self.effective_on, self.expires_on = reason, day, day


_PRIMARY_KIND = lifecycle.PRIMARY_PERSON
_outcome = tuple.__new__  # Outcome(...) without the named tuple's Python-level __new__
_pack_u64 = struct.Struct(">Q").pack
_blake2b = hashlib.blake2b


def prepare_line(number: int, raw: bytes, key_of) -> tuple | None:
    """What the writer is handed for one feed line (see PREPARED, FOLLOW, TEXT, REJECT);
    None for a blank line. Rejections are the reference parser's."""
    from sanction_service.loaders.feed import decode_line  # (sanction_service.loaders.feed imports this module)

    fast = prepare_event(raw, key_of)
    if fast is not None:
        return (number, PREPARED if fast[0] else FOLLOW, *fast[1])
    if len(raw) <= MAX_FEED_LINE_BYTES and _writer_decodes(raw):
        # The writer decodes a CORRECT or EXEMPT again whatever this finds (an Event is
        # no cheaper to pass than to decode): decoding it here too was ~15 us for nothing.
        # The writer's decoding rejects it, if it must, for the same reason.
        return (number, TEXT, raw)
    line = decode_line(number, raw)
    if line is None:
        return None
    if line.error is not None:
        return (number, REJECT, line.event_id, line.error.field, line.error.reason)
    event = line.event
    if event.type in (EventType.DELIST, EventType.PERFORM, EventType.EXTEND):
        return _follow(number, event)
    if event.type is not EventType.LIST:
        return (number, TEXT, raw)
    try:
        record = lifecycle.with_event(lifecycle.new_listing(event, key_of), event.event_id)
    except EventRejected:
        return (number, TEXT, raw)  # the writer rejects it, after the checks that come first
    entries = lifecycle.index_entries(record)
    bindings = lifecycle.declared_bindings(record)
    added = sorted(entries.keys() | {document for document, _ in bindings})
    journal = dumps(
        {"event_id": event.event_id, "type": "LIST", "listing_id": event.listing_id, "added": [k.hex() for k in added]}
    )
    lid = event.listing_id.encode()
    return (
        number,
        PREPARED,
        event.event_id,
        event.listing_id,
        event.digest,
        event.occurred_at,
        event.list_type.value,
        dumps(record),
        b"".join(k + lid + kind + _ADD for k, kind in entries.items()),
        b"".join(d + p for d, p in sorted(bindings)),
        journal,
    )


class _TypeOnly(msgspec.Struct):
    type: object = None


_decode_type = msgspec.json.Decoder(_TypeOnly).decode
_WRITER_DECODES = frozenset(("CORRECT", "EXEMPT"))


def _writer_decodes(raw: bytes) -> bool:
    """Whether the line is a JSON object whose type is one the writer decodes itself
    (TEXT); anything else, or anything odd, is for `decode_line`."""
    try:
        return _decode_type(raw).type in _WRITER_DECODES
    except (msgspec.DecodeError, TypeError, ValueError, RecursionError):
        return False


def prepare_text(number: int, text: str, key_of):
    """`prepare_line` for an event given as text (ApplyEvents): the prepared tuple, or the
    FeedLine of feedline.parse_text (the fast decoder, then the reference parser)."""
    from .feedline import parse_text

    fast = prepare_event(text, key_of)
    if fast is not None:
        return (number, PREPARED if fast[0] else FOLLOW, *fast[1])
    line = parse_text(number, text)
    event = line.event
    if event is not None and event.type in (EventType.DELIST, EventType.PERFORM, EventType.EXTEND):
        return _follow(number, event)
    return line


def _follow(number: int, event) -> tuple:
    """The FOLLOW tuple of a DELIST, PERFORM or EXTEND the reference parser decoded."""
    day = event.expires_on if event.type is EventType.EXTEND else event.effective_on
    return (
        number,
        FOLLOW,
        event.type.value,
        event.event_id,
        event.listing_id,
        event.digest,
        event.occurred_at,
        event.reason,
        day.isoformat(),
    )


class _Tally:
    """What a batch changes in meta and counters, written once at its end (`flush`).
    Counters keep add_counter's rule (never below 0) at every step. The LIST path's
    increments (`persons`: persons_restricted, `listed`: list type -> active:<type>) are
    kept apart and folded in before any other change of those counters and whenever
    `counters` is read: adding only, they cannot meet the rule's floor."""

    __slots__ = ("seq", "chain", "last_event_time", "_counters", "persons", "listed", "_txn", "_db")

    def __init__(self, txn: lmdb.Transaction[bytes], store: Store):
        seq = txn.get(b"seq", db=store.meta)
        if seq is None:
            raise StoreCorrupt(f"{store.path} has no journal sequence")
        self.seq = decode_u64(seq)
        self.chain = txn.get(b"journal_chain", db=store.meta) or GENESIS_CHAIN
        self.last_event_time: str | None = None
        self._counters: dict[str, int] = {}
        self.persons = 0
        self.listed: dict[str, int] = {}
        self._txn = txn
        self._db = store.counters

    @property
    def counters(self) -> dict[str, int]:
        """Every counter this tally changed, by name: its value now."""
        self._fold()
        return self._counters

    def _fold(self) -> None:
        if self.persons:
            persons, self.persons = self.persons, 0
            self._add(self._txn, "persons_restricted", persons)
        if self.listed:
            listed, self.listed = self.listed, {}
            for list_type, n in listed.items():
                self._add(self._txn, "active:" + list_type, n)

    def add(self, txn: lmdb.Transaction[bytes], name: str, delta: int) -> None:
        self._fold()
        self._add(txn, name, delta)

    def _add(self, txn: lmdb.Transaction[bytes], name: str, delta: int) -> None:
        value = self._counters.get(name)
        if value is None:
            raw = txn.get(name.encode(), db=self._db)
            value = decode_u64(raw) if raw else 0
        self._counters[name] = max(value + delta, 0)

    def flush(self, txn: lmdb.Transaction[bytes], store: Store, *, meta: bool = True) -> None:
        for name, value in self.counters.items():
            txn.put(name.encode(), encode_u64(value), db=store.counters)
        if meta and self.last_event_time is not None:
            txn.put(b"journal_chain", self.chain, db=store.meta)
            txn.put(b"seq", encode_u64(self.seq), db=store.meta)
            txn.put(b"last_event_time", self.last_event_time.encode(), db=store.meta)


class _Plan:
    """An event checked against the store: what `_write` needs."""

    __slots__ = ("event", "old", "new", "exemption", "exempt_persons")

    def __init__(self, event, old, new, exemption=None, exempt_persons=()):
        self.event, self.old, self.new = event, old, new
        self.exemption, self.exempt_persons = exemption, exempt_persons


class Ledger:
    def __init__(self, store: Store, pepper: bytes, *, writer: str = "applying events"):
        self.store = store
        self._pepper = pepper
        self._keys = DocumentKeys(pepper)
        self.writer = writer

    def key_of(self, doc: Document) -> bytes:
        return self._keys(doc)

    def apply(
        self,
        lines: Iterable[FeedLine],
        *,
        batch_size: int = 1000,
        wait: bool | float = True,
        meta_updates: MetaUpdates | None = None,
    ) -> Iterator[Outcome]:
        """Apply lines in order; yields one Outcome per line once its batch is committed.
        Waits for another writer of the store first (`wait` as in Store.writing).
        `meta_updates(batch, outcomes)` returns meta keys to write in the batch's transaction."""
        with self.store.writing(self.writer, wait=wait):
            self._require_writable()
            if type(self)._apply_batch is not Ledger._apply_batch:
                # A subclass that wraps `_apply_batch` (BulkLedger) is handed whole batches.
                batch: list[FeedLine] = []
                for line in lines:
                    batch.append(line)
                    if len(batch) >= batch_size:
                        yield from self._apply_batch(batch, meta_updates)
                        batch = []
                if batch:
                    yield from self._apply_batch(batch, meta_updates)
                return
            # Each line is applied as it arrives, in the batch's open transaction: a writer
            # fed by parse workers writes while they parse, instead of waiting for a whole
            # batch and then writing it while they wait (the last batch of a feed was all
            # written after its last line had arrived).
            source = iter(lines)
            while outcomes := self._apply_lines(source, batch_size, meta_updates):
                yield from outcomes

    def data_version(self) -> int:
        """The store's journal sequence after what this ledger applied."""
        with self.store.read() as view:
            return view.seq()

    def _require_writable(self) -> None:
        # A process that opened the store before a bulk load began (a server) must not add
        # events to what that load, interrupted, left behind.
        with self.store.read() as view:
            view.require_complete()

    def _apply_batch(self, batch: list[FeedLine], meta_updates: MetaUpdates | None = None) -> list[Outcome]:
        """Apply the lines of `batch` in one write transaction; their outcomes once it committed."""
        return self._apply_lines(iter(batch), len(batch), meta_updates)

    def _apply_lines(self, source: Iterator, limit: int, meta_updates: MetaUpdates | None = None) -> list[Outcome]:
        """Apply up to `limit` lines taken from `source`, each as it is taken, in one write
        transaction; their outcomes once it committed ([] when `source` had no line left:
        nothing written)."""
        txn = self.store.begin_write()
        try:
            tally = self._tally(txn)
            self._active_cursor = txn.cursor(db=self.store.persons_active)
            # The dispatch of `_apply_line` inlined for the two kinds a parse worker
            # prepares (nine lines in ten of a daily feed): one method call per line fewer.
            prepared, follow, other = self._apply_prepared, self._apply_follow, self._apply_line
            outcomes: list[Outcome] = []
            append = outcomes.append
            batch: list = []
            for line in itertools.islice(source, limit):
                batch.append(line)
                if type(line) is tuple:
                    kind = line[1]
                    if kind == PREPARED:
                        append(prepared(txn, tally, line))
                        continue
                    if kind == FOLLOW:
                        append(follow(txn, tally, line))
                        continue
                append(other(txn, tally, line))
            if not batch:
                txn.abort()
                return outcomes
            self._end_batch(txn, tally)
            if meta_updates is not None:
                for key, value in meta_updates(batch, outcomes).items():
                    txn.put(key, value, db=self.store.meta)
            txn.commit()
            if TEST_BATCH_PAUSE:
                time.sleep(TEST_BATCH_PAUSE)
        except lmdb.Error as exc:
            txn.abort()
            full = self.store.out_of_room(exc)
            if full is not None:
                raise full from None
            raise
        except BaseException:
            txn.abort()
            raise
        return outcomes

    def _tally(self, txn: lmdb.Transaction[bytes]) -> _Tally:
        return _Tally(txn, self.store)

    def _end_batch(self, txn: lmdb.Transaction[bytes], tally: _Tally) -> None:
        tally.flush(txn, self.store)

    # Bytes of the feed per parse worker task (one blob back per range). Small enough that
    # the writer starts soon and the last range's wait is short (the event path's feeds
    # are daily ones); the bulk loader takes bigger ranges.
    RANGE_BYTES = 1 << 20

    def read_feed(self, path, workers: int = 0, progress=None) -> Iterator:
        """A feed file's lines as `prepare_line` makes them for this ledger's writer: by
        `workers` processes that each read their own byte ranges of the file, or here."""
        if workers:
            from sanction_service.loaders.feed import read_feed_ranges

            return read_feed_ranges(path, workers, self._pepper, progress, chunk_bytes=self.RANGE_BYTES)
        return self._read_here(path, progress)

    def prepare_text(self, number: int, text: str):
        return prepare_text(number, text, self._keys)

    def _read_here(self, path, progress) -> Iterator:
        key_of = self._keys
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if progress is not None:
                    progress.update(len(raw))
                item = prepare_line(number, raw, key_of)
                if item is not None:
                    yield item

    def _apply_line(self, txn: lmdb.Transaction[bytes], tally: _Tally, line) -> Outcome:
        if type(line) is tuple:
            kind = line[1]
            if kind == PREPARED:
                return self._apply_prepared(txn, tally, line)
            if kind == FOLLOW:
                return self._apply_follow(txn, tally, line)
            if kind == REJECT:
                return Outcome(line[0], REJECTED, line[2], line[4], line[3])
            from sanction_service.loaders.feed import decode_line

            line = decode_line(line[0], line[2])
            if line.error is not None:  # (as prepare_line's REJECT of it would be reported)
                return _outcome(Outcome, (line.line, REJECTED, line.event_id, line.error.reason, line.error.field, 0))
        if line.error is not None:
            return Outcome(line.line, REJECTED, line.event_id or raw_event_id(line.raw), line.error.reason, line.error.field)
        event = line.event
        if event is None:
            try:
                event = parse_event(line.raw)
            except EventRejected as exc:
                return Outcome(line.line, REJECTED, line.event_id or raw_event_id(line.raw), exc.reason, exc.field)
        try:
            plan = self._plan(txn, event)
        except EventRejected as exc:
            log.debug("line %d: rejected %s: %s %s", line.line, event.event_id, exc.field, exc.reason)
            return Outcome(line.line, REJECTED, event.event_id, exc.reason, exc.field)
        if isinstance(plan, int):
            return Outcome(line.line, DUPLICATE, event.event_id, seq=plan)
        seq = self._write(txn, tally, plan)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "line %d: applied %s %s listing %s (seq %d)", line.line, event.type.value, event.event_id, event.listing_id, seq
            )
        return Outcome(line.line, APPLIED, event.event_id, seq=seq)

    def _known(self, txn: lmdb.Transaction[bytes], number: int, event_id: str, eid: bytes, digest: bytes) -> Outcome | None:
        """The outcome of an event id already applied (duplicate or conflict), else None."""
        known = self._get(txn, self.store.events, eid)
        return None if known is None else self._known_outcome(number, event_id, known, digest)

    def _apply_prepared(self, txn: lmdb.Transaction[bytes], tally: _Tally, p: tuple) -> Outcome:
        """A LIST prepared in full (`prepare_line`): the checks of `_plan`, then the writes
        of `_write` and `_reindex` for a new listing, from the prepared bytes. The hot
        loop of a daily feed: LMDB calls with positional arguments (py-lmdb parses
        keywords slowly), one cursor per batch for the persons counter, the counters
        kept in the batch's tally without a call per event."""
        s = self.store
        number, _, event_id, listing_id, digest, occurred_at, list_type, record, records, bindings, journal = p
        eid = event_id.encode()
        put = txn.put
        seq = tally.seq + 1
        key = _pack_u64(seq)
        # The checks of `_plan` answered by the writes themselves: the dedupe row and the
        # record are put only if their keys are new (MDB_NOOVERWRITE: False, nothing
        # written, when they are not), which spares a B-tree lookup each. The rare losers
        # look again (a duplicate or conflict), or take the dedupe row back (a listing id
        # already used): the batch's transaction never shows either half-done.
        if not put(eid, digest + key, True, False, False, s.events):
            known = txn.get(eid, None, s.events)
            assert known is not None  # the put above found it there
            return self._known_outcome(number, event_id, known, digest)
        lid = listing_id.encode()
        if not put(lid, record, True, False, False, s.listings):
            txn.delete(eid, b"", s.events)
            return _outcome(Outcome, (number, REJECTED, event_id, "already used by another listing", "listing_id", 0))
        tally.seq = seq
        active, named, cursor = s.persons_active, s.persons_all, self._active_cursor
        width = KEY_SIZE + len(lid) + 2
        # A new listing only adds entries: a key is counted after it if it was before or
        # if this listing names it as a primary person (what _counted_as_person would
        # find). A listing's keys are distinct, so checking each before its own put is
        # checking all before any.
        for i in range(0, len(records), width):
            end = i + width - 2
            kind = records[end : end + 1]
            if kind == _PRIMARY_KIND:
                person = records[i : i + KEY_SIZE]
                # (_counted_with, its common case inline: no entry of that key at all)
                if not cursor.set_range(person) or not cursor.key().startswith(person) or not _counted_with(cursor, person):
                    tally.persons += 1
            composite = records[i:end]
            put(composite, kind, True, True, False, active)
            put(composite, kind, True, True, False, named)
        if bindings:
            for i in range(0, len(bindings), 2 * KEY_SIZE):
                put_binding(txn, s.bindings, bindings[i : i + KEY_SIZE], bindings[i + KEY_SIZE : i + 2 * KEY_SIZE], lid)
        listed = tally.listed
        listed[list_type] = listed.get(list_type, 0) + 1
        tally.chain = chain = _blake2b(tally.chain + journal, digest_size=16).digest()
        # The journal's keys rise with the sequence: MDB_APPEND skips the B-tree search.
        # It refuses (False) a key not above the last one, which would be a sequence
        # written twice: never silently.
        if not put(key, journal[:-1] + b',"chain":"' + chain.hex().encode() + b'"}', True, True, True, s.journal):
            raise RuntimeError(f"journal sequence {seq} is not above the journal's last entry")
        tally.last_event_time = occurred_at
        return _outcome(Outcome, (number, APPLIED, event_id, "", "", seq))

    @staticmethod
    def _known_outcome(number: int, event_id: str, known: bytes, digest: bytes) -> Outcome:
        if known[:16] == digest:
            return Outcome(number, DUPLICATE, event_id, seq=decode_u64(known[16:]))
        return Outcome(number, REJECTED, event_id, "already applied with different content (conflict)", "event_id")

    def _apply_follow(self, txn: lmdb.Transaction[bytes], tally: _Tally, p: tuple) -> Outcome:
        """A DELIST, PERFORM or EXTEND already parsed (`prepare_line`): `_plan` and
        `_write` of these types, with the same lifecycle functions; LMDB calls with
        positional arguments (BulkLedger has its own)."""
        s = self.store
        number, _, type_, event_id, listing_id, digest, occurred_at, reason, day = p
        eid = event_id.encode()
        get, put = txn.get, txn.put
        known = get(eid, None, s.events)
        if known is not None:
            return self._known_outcome(number, event_id, known, digest)
        lid = listing_id.encode()
        raw_old = get(lid, None, s.listings)
        old = None if raw_old is None else loads(raw_old)
        event = _Followup(type_, reason, date.fromisoformat(day))
        try:
            old = lifecycle.require_active(old)
            new = lifecycle.extended(old, event) if type_ == "EXTEND" else lifecycle.lifted(old, event)
        except EventRejected as exc:
            return _outcome(Outcome, (number, REJECTED, event_id, exc.reason, exc.field, 0))
        tally.seq = seq = tally.seq + 1
        new = lifecycle.with_event(new, event_id)
        if type_ != "EXTEND":
            self._unindex(txn, tally, old, lid)
            # `_count` of a lifting (the listing was active: require_active).
            tally.add(txn, f"active:{new['list_type']}", -1)
            tally.add(txn, f"delisted:{new['lifted_reason']}", 1)
            if type_ == "PERFORM":
                tally.add(txn, "voluntary_performances", 1)
        # What `_reindex` does for these types: who the listing names does not change, so
        # nothing is added and the bindings stay; an EXTEND leaves the indexes alone.
        put(lid, dumps(new), True, True, False, s.listings)
        entry, tally.chain = journal_entry(tally.chain, event_id, type_, listing_id, [])
        key = _pack_u64(seq)
        if not put(key, entry, True, True, True, s.journal):
            raise RuntimeError(f"journal sequence {seq} is not above the journal's last entry")
        put(eid, digest + key, True, True, False, s.events)
        tally.last_event_time = occurred_at
        return _outcome(Outcome, (number, APPLIED, event_id, "", "", seq))

    def _unindex(self, txn: lmdb.Transaction[bytes], tally: _Tally, old: dict, lid: bytes) -> None:
        """`_reindex` of an active listing that is lifted: its entries leave persons_active
        (persons_all keeps them), and the persons counter loses those no other listing
        in force counts."""
        active, cursor, delete = self.store.persons_active, self._active_cursor, txn.delete
        entries = lifecycle.index_entries(old)
        counted_before = [k for k in entries if _counted_with(cursor, k)]
        for key in entries:
            delete(key + lid, b"", active)
        delta = sum(1 for k in counted_before if not _counted_with(cursor, k))
        if delta:
            tally.add(txn, "persons_restricted", -delta)

    def _plan(self, txn: lmdb.Transaction[bytes], event: Event) -> _Plan | int:
        """Check the event against the store (reads only): the sequence of its first
        application if it is a duplicate, else what to write. Every rejection is raised here."""
        s = self.store
        known = self._get(txn, s.events, event.event_id.encode())
        if known is not None:
            if known[:16] == event.digest:
                return decode_u64(known[16:])
            raise EventRejected("event_id", "already applied with different content (conflict)")

        raw_old = self._get(txn, s.listings, event.listing_id.encode())
        old = None if raw_old is None else loads(raw_old)
        if event.type is EventType.LIST:
            if old is not None:
                raise EventRejected("listing_id", "already used by another listing")
            return _Plan(event, None, lifecycle.new_listing(event, self.key_of))
        old = lifecycle.require_active(old)
        if event.type in (EventType.DELIST, EventType.PERFORM):
            return _Plan(event, old, lifecycle.lifted(old, event))
        if event.type is EventType.EXTEND:
            return _Plan(event, old, lifecycle.extended(old, event))
        if event.type is EventType.CORRECT:
            return _Plan(event, old, lifecycle.corrected(old, event, self.key_of))
        exempt = event.exempt_document
        assert exempt is not None  # the parser requires it of an EXEMPT
        exemption, exempt_persons = lifecycle.exemption(old, event, persons_of(txn, s.bindings, self.key_of(exempt)))
        return _Plan(event, old, old, exemption, exempt_persons)

    def _write(self, txn: lmdb.Transaction[bytes], tally: _Tally, plan: _Plan) -> int:
        """Write a checked event; raises no rejection. Returns its sequence."""
        s = self.store
        event, old = plan.event, plan.old
        tally.seq = seq = tally.seq + 1
        new = lifecycle.with_event(plan.new, event.event_id)
        added = self._reindex(txn, tally, old, new)
        if plan.exemption is not None:
            for person_key in plan.exempt_persons:
                txn.put(exemption_key(person_key, event.listing_id, event.reference), dumps(plan.exemption), db=s.exemptions)
        self._put(txn, s.listings, event.listing_id.encode(), dumps(new))
        self._count(txn, tally, event, old, new)
        entry, tally.chain = journal_entry(
            tally.chain, event.event_id, event.type.value, event.listing_id, [k.hex() for k in added]
        )
        self._put(txn, s.journal, encode_u64(seq), entry)
        self._put(txn, s.events, event.event_id.encode(), event.digest + encode_u64(seq))
        tally.last_event_time = event.occurred_at
        return seq

    def _get(self, txn: lmdb.Transaction[bytes], db, key: bytes) -> bytes | None:
        return txn.get(key, db=db)

    def _put(self, txn: lmdb.Transaction[bytes], db, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=db)

    def _reindex(self, txn: lmdb.Transaction[bytes], tally: _Tally, old: dict | None, new: dict) -> list[bytes]:
        """Bring the person indexes in line with `new`; return keys newly in force."""
        s = self.store
        lid = new["listing_id"].encode()
        named_before = lifecycle.index_entries(old) if old else {}
        named_after = lifecycle.index_entries(new)
        before = named_before if old and old["status"] == lifecycle.ACTIVE else {}
        after = named_after if new["status"] == lifecycle.ACTIVE else {}
        if before == after and named_before == named_after:
            # Nothing of the indexes changes (an EXTEND, an EXEMPT, a CORRECT of texts).
            return sorted(self._rebind(txn, old, new))
        affected = before.keys() | after.keys()
        counted_before = {k for k in affected if _counted_with(self._active_cursor, k)}
        for key in before.keys() - after.keys():
            txn.delete(key + lid, db=s.persons_active)
        for key, kind in after.items():
            if before.get(key) != kind:
                txn.put(key + lid, kind, db=s.persons_active)
        for key in named_before.keys() - named_after.keys():
            # A correction that drops a document: this listing never named it after all.
            txn.delete(key + lid, db=s.persons_all)
            _delete_prefix(txn, s.exemptions, exemption_prefix(key, new["listing_id"]))
        for key, kind in named_after.items():
            if named_before.get(key) != kind:
                txn.put(key + lid, kind, db=s.persons_all)
        counted_after = {k for k in affected if _counted_with(self._active_cursor, k)}
        delta = len(counted_after - counted_before) - len(counted_before - counted_after)
        if delta:
            tally.add(txn, "persons_restricted", delta)
        return sorted((after.keys() - before.keys()) | self._rebind(txn, old, new))

    def _rebind(self, txn: lmdb.Transaction[bytes], old: dict | None, new: dict) -> set[bytes]:
        """Bring the bindings in line with what `new` declares; return the documents of the
        bindings it newly declares (the prefilter must hold them: each restricts under every
        listing of the person from now on, whichever of their documents it names)."""
        lid = new["listing_id"]
        before = lifecycle.declared_bindings(old) if old else set()
        after = lifecycle.declared_bindings(new)
        for document, person in before - after:
            delete_binding(txn, self.store.bindings, document, person, lid.encode())
        for document, person in after - before:
            put_binding(txn, self.store.bindings, document, person, lid.encode())
        # Both ends: either may now reach a listing that names only the other.
        return {key for pair in after - before for key in pair}

    def _count(self, txn: lmdb.Transaction[bytes], tally: _Tally, event: Event, old: dict | None, new: dict) -> None:
        was_active = old is not None and old["status"] == lifecycle.ACTIVE
        is_active = new["status"] == lifecycle.ACTIVE
        if is_active and not was_active:
            tally.add(txn, f"active:{new['list_type']}", 1)
        elif was_active and not is_active:
            tally.add(txn, f"active:{new['list_type']}", -1)
            tally.add(txn, f"delisted:{new['lifted_reason']}", 1)
            if event.type is EventType.PERFORM:
                tally.add(txn, "voluntary_performances", 1)


def journal_entry(chain: bytes, event_id: str, type_: str, listing_id: str, added: list[str]) -> tuple[bytes, bytes]:
    """A journal entry as stored, and the chain after it: the chain digests the entry
    without its own `chain` field, which is then appended as the last field."""
    entry = dumps({"event_id": event_id, "type": type_, "listing_id": listing_id, "added": added})
    chain = next_chain(chain, entry)
    return entry[:-1] + b',"chain":"' + chain.hex().encode() + b'"}', chain


def _counted_with(cursor: lmdb.Cursor[bytes], key: bytes) -> bool:
    """`_counted_as_person` with a cursor of persons_active that the caller keeps."""
    if not cursor.set_range(key):
        return False
    while cursor.key().startswith(key):
        if cursor.value() == lifecycle.PRIMARY_PERSON:
            return True
        if not cursor.next():
            return False
    return False


def _counted_as_person(txn: lmdb.Transaction[bytes], db, key: bytes) -> bool:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(key):
        return False
    for composite, kind in cursor:
        if not composite.startswith(key):
            return False
        if kind == lifecycle.PRIMARY_PERSON:
            return True
    return False


def _delete_prefix(txn: lmdb.Transaction[bytes], db, prefix: bytes) -> None:
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        while cursor.key().startswith(prefix):
            if not cursor.delete():
                break
