"""Bulk loading into an empty store: the event-by-event Ledger's semantics, faster.

Same events, same checks, same records, same journal: the end state equals the event
path's (tests/test_bulk.py compares canonical digests on random feeds with hostile lines
and every event type). What differs is how it gets there:

- Parsing runs in worker processes, each reading its own byte range of the feed and
  handing back one marshalled blob per range through a file (`loaders.feed.read_feed_ranges`,
  as for the event path, with bigger ranges; sanction_service.bulkranges: the pool's pipe
  cost the writer a fifth of its CPU). When the range it needs next is not parsed yet,
  the writer parses the next one itself rather than wait. A LIST is prepared there in full
  (`bulkprep.prepare_item`, else `prepare_line`): its record and journal entry serialised
  once, its index entries and bindings as bytes; a DELIST, PERFORM or EXTEND comes back
  parsed. A CORRECT or EXEMPT line comes back as its text (the writer decodes it: fast
  decoder, reference parser as the fallback) and any other rejected line as the
  reference parser's rejection.
- The writer checks a prepared LIST against the store exactly as `Ledger._plan` does
  (duplicate, conflict, listing id used) and then appends its rows; other events go
  through `Ledger._plan` / `_write`. Write transactions hold BATCH (50 000) events.
- Keys that only grow (journal sequence, the feed's listing and event ids when in order)
  are appended (MDB_APPEND, every result checked); a key above every key written cannot
  exist, so its lookup is skipped.
- The person indexes are not written per event: entries go to an in-memory log of
  fixed-width records (person key + listing id + kind + add/remove), sorted once at the
  end (numpy) and written with putmulti(append=True), a million entries per transaction;
  `persons_active` is the same minus lifted listings, and "persons restricted" is
  counted from it. The prefilter's bits are filled by a thread meanwhile (numpy, which
  releases the GIL).
- The journal sequence, its chain, the last event time and the counters are kept in
  memory and written once, in the last transaction.
- The garbage collector is off during the load, and the data file's pages are dropped
  from this process's mappings (madvise DONTNEED) after each batch, so lookups do not
  pile them up in its RSS.

Crash-safety is coarser, and fails closed: the first transaction marks the store
incomplete and the last one (counters and meta, after the transactions that write the
indexes) clears the mark, so a bulk load killed midway leaves a store that refuses to serve or take other
writers. Running the bulk load again starts it over: it empties a marked store in its
first transaction. A store that holds data and no mark is refused.

The shortcuts are sound only because the whole load holds the store's writer lock and
began on an empty store; every append's result is still checked, so a broken assumption
stops the load instead of dropping rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import logging
import mmap
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from itertools import islice

import lmdb
import numpy as np

from . import lifecycle
from .bulkprep import _ENCODE as _encode_journal
from .bulkprep import _Journal
from .events import EventRejected
from .ledger import (
    _ADD,
    APPLIED,
    REJECTED,
    Ledger,
    Outcome,
    _delete_prefix,
    _Followup,
    _Tally,
    prepare_line,  # noqa: F401 - the parse workers' entry point, re-exported
)
from .prefilter import MIN_CAPACITY, Prefilter
from .store import (
    DB_NAMES,
    INCOMPLETE,
    KEY_SIZE,
    Store,
    StoreError,
    dumps,
    encode_u64,
    exemption_prefix,
    loads,
    put_binding,
)

log = logging.getLogger(__name__)
_REMOVE = b"-"
_blake2b = hashlib.blake2b
_pack_u64 = struct.Struct(">Q").pack


class StoreNotEmpty(StoreError):
    pass


class AppendOutOfOrder(StoreError):
    """MDB_APPEND refused a key: something else wrote the store. The load stops, marked incomplete."""


class _IndexLog:
    """Every change to persons_all, in order, as fixed-width records (person key, listing
    id padded with NULs to its width, kind, add or remove), one buffer per listing-id
    width: a composite key's changes all sit in one buffer, in order. Listing ids hold no
    NUL (identifiers are printable), so padding keeps the keys' order."""

    def __init__(self):
        self._buffers: dict[int, bytearray] = {}
        self.lifted: set[bytes] = set()
        self.entries = 0

    def add(self, lid: bytes, key: bytes, kind: bytes, op: bytes = _ADD) -> None:
        buffer = self._buffers.get(len(lid))
        if buffer is None:
            buffer = self._buffers[len(lid)] = bytearray()
        buffer += key + lid + kind + op
        self.entries += 1

    def add_records(self, width: int, records: bytes) -> None:
        """Records of one listing id of `width` bytes, as `add` makes them."""
        buffer = self._buffers.get(width)
        if buffer is None:
            buffer = self._buffers[width] = bytearray()
        buffer += records
        self.entries += len(records) // (KEY_SIZE + width + 2)

    def final(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The entries in force, sorted: composite keys (N x (16 + width) uint8, NUL
        padded), their kinds (N bytes), whether their listing is lifted, and the width.
        Empties the log; one array of the composite keys at a time, for the peak RSS."""
        width = max(self._buffers, default=1)
        n = sum(len(buffer) // (KEY_SIZE + w + 2) for w, buffer in self._buffers.items())
        composite = np.zeros((n, KEY_SIZE + width), dtype=np.uint8)
        tail = np.empty((n, 2), dtype=np.uint8)
        at = 0
        for w in sorted(self._buffers):
            buffer = self._buffers.pop(w)
            rows = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, KEY_SIZE + w + 2)
            composite[at : at + len(rows), : KEY_SIZE + w] = rows[:, : KEY_SIZE + w]
            tail[at : at + len(rows)] = rows[:, KEY_SIZE + w :]
            at += len(rows)
            del rows, buffer
        order = np.argsort(composite.view(f"S{KEY_SIZE + width}").ravel(), kind="stable")
        composite = composite[order]
        tail = tail[order]
        del order
        # The last change of each composite key decides; removed entries go.
        keys = composite.view(f"S{KEY_SIZE + width}").ravel()
        last = np.ones(n, dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]
        del keys
        last &= tail[:, 1] == _ADD[0]
        if not last.all():
            composite = composite[last]
        kinds = tail[last, 0].copy().view("S1")
        del tail, last
        lids = np.ascontiguousarray(composite[:, KEY_SIZE:]).view(f"S{width}").ravel()
        # A set lookup per entry (tolist() gives the ids without their NUL padding):
        # np.isin would sort every listing id again, 3x slower.
        gone = self.lifted
        lifted = np.fromiter(map(gone.__contains__, lids.tolist()), bool, len(lids)) if gone else np.zeros(len(lids), bool)
        self.lifted.clear()
        return composite, kinds, lifted, width


class _PageDropper:
    """madvise(MADV_DONTNEED) over this process's mappings of the store's data file: the
    pages stay in the page cache, only this process stops counting them in its RSS (LMDB
    maps the file read-only; the next read of a page maps it again)."""

    def __init__(self, path):
        self._path = os.path.realpath(os.path.join(path, "data.mdb"))
        libc_name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
        if self._libc is not None:
            self._libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

    def drop(self) -> None:
        if self._libc is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                ranges = [line.split(None, 1)[0] for line in maps if line.rstrip().endswith(self._path)]
        except OSError:
            return
        for span in ranges:
            start, end = (int(x, 16) for x in span.split("-"))
            self._libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


class BulkLedger(Ledger):
    BATCH = 50_000
    RANGE_BYTES = 4 << 20
    # Drop the data file's pages from this process's mappings every this many events (the
    # lookups of follow-up events map a few hundred MB of it per 200 000 events).
    DROP_PAGES_EVERY = 50_000
    # Index entries per transaction in finish().
    INDEX_CHUNK = 1_000_000

    def __init__(self, store: Store, pepper: bytes, *, writer: str = "bulk load"):
        super().__init__(store, pepper, writer=writer)
        self._log = _IndexLog()
        # Keyed by the database handles themselves (hashable): an id() call per put cost
        # a tenth of the writer's time.
        self._max_key: dict = {}
        self._names = {handle: name for name, handle in store.dbs.items()}
        self._whole: _Tally | None = None
        self._since_drop = 0
        self._pages = _PageDropper(store.path)

    @contextmanager
    def session(self, note: str, *, wait: bool | float = True, on_wait=None) -> Iterator[bool]:
        """Hold the store's writer lock from `begin` to the end of the block, where the
        caller has applied the feed and called `finish`. Yields whether an interrupted
        load was started over. The garbage collector is off meanwhile (the load makes
        millions of objects and no cycles)."""
        with self.store.writing(self.writer, wait=wait, on_wait=on_wait):
            enabled = gc.isenabled()
            gc.disable()
            try:
                yield self.begin(note)
            finally:
                if enabled:
                    gc.enable()

    def begin(self, note: str) -> bool:
        """The load's first transaction, under the writer lock: refuse a store with data,
        empty one that an interrupted bulk load left, and mark the store incomplete.
        Returns True when it started an interrupted load over."""
        s = self.store
        if not s.writer.held_by_this_thread():
            raise RuntimeError("a bulk load must hold the store's writer lock from begin() to finish()")
        with s.read() as view:
            interrupted = view.meta(INCOMPLETE)
            if interrupted is None and (view.seq() != 0 or view.count("listings") != 0):
                raise StoreNotEmpty(f"bulk loading needs an empty store; {s.path} is at data version {view.seq()}")
        with s.begin_write() as txn:
            if interrupted is not None:
                for name in DB_NAMES:
                    txn.drop(s.dbs[name], delete=False)
                s.initialise(txn)
            txn.put(INCOMPLETE, note.encode(), db=s.meta)
            self._whole = _Tally(txn, s)
        if interrupted is not None:
            log.warning("%s held an interrupted bulk load (%s); emptied it to start over", s.path, interrupted.decode())
        return interrupted is not None

    def apply(self, lines: Iterable, *, batch_size: int = BATCH, **options) -> Iterator[Outcome]:
        # Ledger.apply's generator itself: one generator layer less per event.
        return super().apply(lines, batch_size=batch_size, **options)

    def data_version(self) -> int:
        # Meta is written by finish(); until then the sequence is the load's own.
        return self._whole.seq if self._whole is not None else super().data_version()

    def _require_writable(self) -> None:
        pass  # the mark is this load's own (begin() set it)

    def _tally(self, txn: lmdb.Transaction[bytes] | None) -> _Tally:
        if self._whole is None:
            raise RuntimeError("a bulk load applies events between begin() and finish()")
        return self._whole

    def _end_batch(self, txn: lmdb.Transaction[bytes], tally: _Tally) -> None:
        pass  # counters and meta are written by finish()

    def _apply_batch(self, batch: list, meta_updates=None) -> list[Outcome]:
        outcomes = super()._apply_batch(batch, meta_updates)
        self._since_drop += len(batch)
        if self._since_drop >= self.DROP_PAGES_EVERY:
            self._pages.drop()
            self._since_drop = 0
        return outcomes

    def _apply_prepared(self, txn: lmdb.Transaction[bytes], tally: _Tally, p: tuple) -> Outcome:
        """A LIST prepared by a parse worker: the checks of `_plan`, then the writes of
        `_write`, the index entries to the log. The writer's hot loop: `_get` and `_put`
        inline, positional LMDB calls (py-lmdb parses keywords slowly), the counter and
        the chain without a call each."""
        number, _, event_id, listing_id, digest, occurred_at, list_type, record, entries, bindings, journal = p
        eid = event_id.encode()
        top = self._max_key
        s = self.store
        events = s.events
        put = txn.put
        top_event = top.get(events, b"")
        known = self._known_below(txn, number, event_id, eid, top_event, digest)
        if known is not None:
            return known
        lid = listing_id.encode()
        listings = s.listings
        top_listing = top.get(listings, b"")
        if lid <= top_listing and txn.get(lid, None, listings) is not None:
            return Outcome(number, REJECTED, event_id, "already used by another listing", "listing_id")
        tally.seq = seq = tally.seq + 1
        self._log.add_records(len(lid), entries)
        if bindings:
            for i in range(0, len(bindings), 2 * KEY_SIZE):
                put_binding(txn, s.bindings, bindings[i : i + KEY_SIZE], bindings[i + KEY_SIZE : i + 2 * KEY_SIZE], lid)
        # As _put: MDB_APPEND above every key written, each result checked.
        if lid > top_listing:
            if not put(lid, record, True, True, True, listings):  # (dupdata, overwrite, append, db)
                _append(False, "listings")
            top[listings] = lid
        else:
            put(lid, record, True, True, False, listings)
        counters = tally.counters
        name = "active:" + list_type
        if name in counters:
            counters[name] += 1  # (only ever counted up from a value at least 0)
        else:
            tally.add(txn, name, 1)
        tally.chain = chain = _blake2b(tally.chain + journal, digest_size=16).digest()
        key = _pack_u64(seq)
        journal_db = s.journal
        if not put(key, journal[:-1] + b',"chain":"' + chain.hex().encode() + b'"}', True, True, True, journal_db):
            _append(False, "journal")  # (the sequence only grows: always appended)
        top[journal_db] = key
        if eid > top_event:
            if not put(eid, digest + key, True, True, True, events):
                _append(False, "events")
            top[events] = eid
        else:
            put(eid, digest + key, True, True, False, events)
        tally.last_event_time = occurred_at
        return Outcome(number, APPLIED, event_id, "", "", seq)

    def _known_below(
        self, txn: lmdb.Transaction[bytes], number: int, event_id: str, eid: bytes, top_event: bytes, digest: bytes
    ) -> Outcome | None:
        """`Ledger._known` for the prepared paths: as `_get`, an event id above every one
        written (`top_event`) cannot be there, so it is not looked up."""
        if eid > top_event:
            return None
        known = txn.get(eid, None, self.store.events)
        return None if known is None else self._known_outcome(number, event_id, known, digest)

    def _apply_follow(self, txn: lmdb.Transaction[bytes], tally: _Tally, p: tuple) -> Outcome:
        """A DELIST, PERFORM or EXTEND parsed by a worker: `_plan` and `_write` of these
        types, without decoding the line again. Neither changes who a listing names, so
        the indexes change only by the lifting. The same checks as lifecycle's
        (require_active, extended); a lifting is lifecycle.lifted + with_event in one
        dict (same keys in the same order), counted and chained as `_apply_prepared`
        does, the journal entry from bulkprep's struct (ledger.journal_entry's bytes)."""
        number, _, type_, event_id, listing_id, digest, occurred_at, reason, day = p
        s = self.store
        top = self._max_key
        events, listings = s.events, s.listings
        eid = event_id.encode()
        top_event = top.get(events, b"")
        known = self._known_below(txn, number, event_id, eid, top_event, digest)
        if known is not None:
            return known
        lid = listing_id.encode()
        top_listing = top.get(listings, b"")
        raw_old = None if lid > top_listing else txn.get(lid, None, listings)
        old = None if raw_old is None else loads(raw_old)
        try:
            old = lifecycle.require_active(old)
            if type_ == "EXTEND":
                new = lifecycle.extended(old, _Followup(type_, reason, date.fromisoformat(day)))
                new = lifecycle.with_event(new, event_id)
            else:
                # lifecycle.lifted then with_event: `day` is the effective date's isoformat().
                new = {
                    **old,
                    "status": lifecycle.LIFTED,
                    "lifted_reason": reason,
                    "lifted_on": day,
                    "event_ids": [*old["event_ids"], event_id],
                }
        except EventRejected as exc:
            return Outcome(number, REJECTED, event_id, exc.reason, exc.field)
        tally.seq = seq = tally.seq + 1
        if type_ != "EXTEND":
            self._log.lifted.add(lid)
            tally.add(txn, "active:" + new["list_type"], -1)
            tally.add(txn, "delisted:" + reason, 1)
            if type_ == "PERFORM":
                tally.add(txn, "voluntary_performances", 1)
        put = txn.put
        record = dumps(new)
        if lid > top_listing:
            if not put(lid, record, True, True, True, listings):  # (dupdata, overwrite, append, db)
                _append(False, "listings")
            top[listings] = lid
        else:
            put(lid, record, True, True, False, listings)
        journal = _encode_journal(_Journal(event_id, type_, listing_id, []))
        tally.chain = chain = _blake2b(tally.chain + journal, digest_size=16).digest()
        key = _pack_u64(seq)
        journal_db = s.journal
        if not put(key, journal[:-1] + b',"chain":"' + chain.hex().encode() + b'"}', True, True, True, journal_db):
            _append(False, "journal")
        top[journal_db] = key
        if eid > top_event:
            if not put(eid, digest + key, True, True, True, events):
                _append(False, "events")
            top[events] = eid
        else:
            put(eid, digest + key, True, True, False, events)
        tally.last_event_time = occurred_at
        return Outcome(number, APPLIED, event_id, "", "", seq)

    def _get(self, txn: lmdb.Transaction[bytes], db, key: bytes) -> bytes | None:
        # A key above every key written so far cannot exist: skipping the lookup spares
        # the B-tree walk and keeps old pages of the map out of this process's RSS.
        if key > self._max_key.get(db, b""):
            return None
        return txn.get(key, None, db)

    def _put(self, txn: lmdb.Transaction[bytes], db, key: bytes, value: bytes) -> None:
        # MDB_APPEND skips the B-tree search and fills pages completely; only valid for
        # a key above every key already in the database.
        top = self._max_key
        if key > top.get(db, b""):
            if not txn.put(key, value, True, True, True, db):  # (dupdata, overwrite, append, db)
                _append(False, self._names[db])
            top[db] = key
        else:
            txn.put(key, value, True, True, False, db)

    def _reindex(self, txn: lmdb.Transaction[bytes], tally: _Tally, old: dict | None, new: dict) -> list[bytes]:
        lid = new["listing_id"].encode()
        named_before = lifecycle.index_entries(old) if old else {}
        named_after = lifecycle.index_entries(new)
        before = named_before if old and old["status"] == lifecycle.ACTIVE else {}
        after = named_after if new["status"] == lifecycle.ACTIVE else {}
        for key in named_before.keys() - named_after.keys():
            self._log.add(lid, key, b"-", _REMOVE)
            _delete_prefix(txn, self.store.exemptions, exemption_prefix(key, new["listing_id"]))
        for key, kind in named_after.items():
            if named_before.get(key) != kind:
                self._log.add(lid, key, kind)
        if new["status"] != lifecycle.ACTIVE:
            self._log.lifted.add(lid)
        return sorted((after.keys() - before.keys()) | self._rebind(txn, old, new))

    def finish(self, *, error_rate: float, min_capacity: int = MIN_CAPACITY, prefilter_path=None, progress=None) -> Prefilter:
        """Write the indexes (sorted appends, in transactions of INDEX_CHUNK entries),
        then the last transaction: the counters and meta, and the incomplete mark cleared;
        then build (and save) the prefilter."""
        s = self.store
        tally = self._tally(None)
        self._pages.drop()
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            composite, kinds, lifted, width = self._log.final()
        finally:
            if gc_enabled:
                gc.enable()
        active = ~lifted
        n_all = len(composite)
        # Distinct keys in force (sorted by composite, so by key) and those with a primary person.
        keys = composite[active, :KEY_SIZE]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]).any(axis=1)
        starts = np.flatnonzero(first)
        primary = kinds[active] == lifecycle.PRIMARY_PERSON
        persons = int(np.maximum.reduceat(primary, starts).sum()) if len(starts) else 0
        with s.read() as view:
            bound = view.count("bindings")
        prefilter = Prefilter.empty(capacity=max(min_capacity, 2 * (n_all + bound)), error_rate=error_rate, store_id=s.store_id)
        distinct = np.ascontiguousarray(keys[starts])
        del keys, first, primary, active
        # The filter's bits are numpy work that releases the GIL: filled by a thread while
        # this one writes the indexes (the other core's share of finish()).
        filler = _Filler(prefilter, distinct)
        del distinct
        tally.counters["persons_restricted"] = persons  # never counted per event on this path
        try:
            # The indexes in transactions of a million entries (a bounded set of dirty
            # pages); the store stays marked until the last transaction below.
            for lo in range(0, n_all, self.INDEX_CHUNK):
                hi = min(n_all, lo + self.INDEX_CHUNK)
                names = composite[lo:hi].view(f"S{KEY_SIZE + width}").ravel().tolist()
                pairs = list(zip(names, kinds[lo:hi].tolist()))
                del names
                with s.begin_write() as txn:
                    _putmulti(txn, s.persons_all, pairs, "persons_all")
                    _putmulti(
                        txn,
                        s.persons_active,
                        [pair for pair, gone in zip(pairs, lifted[lo:hi].tolist()) if not gone],
                        "persons_active",
                    )
                del pairs
                self._pages.drop()
                if progress:
                    progress(hi, n_all)
            del composite, kinds, lifted
            filler.join()
            with s.begin_write() as txn:
                for name, value in tally.counters.items():
                    txn.put(name.encode(), encode_u64(value), db=s.counters)
                if tally.last_event_time is not None:
                    txn.put(b"journal_chain", tally.chain, db=s.meta)
                    txn.put(b"seq", encode_u64(tally.seq), db=s.meta)
                    txn.put(b"last_event_time", tally.last_event_time.encode(), db=s.meta)
                prefilter.covered_seq = tally.seq
                txn.delete(INCOMPLETE, db=s.meta)
        except lmdb.Error as exc:
            full = s.out_of_room(exc)
            if full is not None:
                raise full from None
            raise
        finally:
            filler.join(reraise=False)
        log.info("bulk index: %d entries, %d active keys, %d persons", n_all, len(starts), persons)
        with s.read() as view:
            # Bound documents restrict under every listing of their person: the filter
            # holds them as a rebuild from the store would (`Prefilter.build`).
            bound_keys = view.bound_keys()
            while chunk := b"".join(islice(bound_keys, 100_000)):
                prefilter.add_many(np.frombuffer(chunk, dtype=np.uint8).reshape(-1, KEY_SIZE))
            if prefilter_path is not None:
                prefilter.save_or_warn(prefilter_path, view)
        self._pages.drop()
        return prefilter


class _Filler:
    """Adds keys (an N x 16 uint8 array) to a prefilter in a thread of its own, a million
    at a time; `join` waits for it and raises what it raised."""

    def __init__(self, prefilter: Prefilter, keys: np.ndarray):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, args=(prefilter, keys), name="bulk prefilter", daemon=True)
        self._thread.start()

    def _fill(self, prefilter: Prefilter, keys: np.ndarray) -> None:
        try:
            for i in range(0, len(keys), 1_000_000):
                prefilter.add_many(keys[i : i + 1_000_000])
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self._error = exc

    def join(self, *, reraise: bool = True) -> None:
        self._thread.join()
        if reraise and self._error is not None:
            error, self._error = self._error, None
            raise error


def _putmulti(txn: lmdb.Transaction[bytes], db, pairs: list[tuple[bytes, bytes]], db_name: str) -> None:
    if not pairs:
        return
    with txn.cursor(db=db) as cursor:
        consumed, added = cursor.putmulti(pairs, append=True)
    if consumed != len(pairs) or added != len(pairs):
        raise AppendOutOfOrder(
            f"bulk load: {len(pairs) - added} keys of {db_name} were not above every key "
            "already there (has something else written the store?); the load stops and the "
            "store stays marked incomplete"
        )


def _append(appended: bool, db_name: str) -> None:
    if not appended:
        raise AppendOutOfOrder(
            f"bulk load: a key in {db_name} was not above every key already there "
            "(has something else written the store?); the load stops and the store stays "
            "marked incomplete"
        )
