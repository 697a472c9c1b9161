"""Bulk loading into an empty store: the event-by-event Ledger's semantics, faster.

Same events, same checks, same records, same journal: only the person indexes are
written differently. Random 16-byte keys inserted one by one into a B-tree that does not
fit in cache make py-lmdb's insert rate collapse after a few million rows, so the bulk
path keeps the person index in memory (person key + listing id -> entry kind, for every
listing: exactly what `persons_all` holds), sorts it once at the end and writes both
indexes with MDB_APPEND; `persons_active` is the same minus lifted listings, and
"persons restricted" is counted from it. Keys that only grow (journal sequence, the
feed's listing and event ids when in order) are appended as they come.

The end state equals the event-by-event path's (tests/test_bulk.py compares canonical
digests). Crash-safety is coarser, and fails closed: the first transaction marks the
store incomplete and the last one (which writes the indexes) clears the mark, so a bulk
load killed midway leaves a store that refuses to serve or take other writers. Running
the bulk load again starts it over: it empties a marked store in its first transaction.
A store that holds data and no mark is refused.

The shortcuts below (skipping lookups of keys above the highest written, MDB_APPEND)
are sound only because the whole load holds the store's writer lock and began on an
empty store; every append's result is still checked, so a broken assumption stops the
load instead of dropping rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import lmdb

from . import lifecycle
from .ledger import FeedLine, Ledger, Outcome, _delete_prefix
from .prefilter import MIN_CAPACITY, Prefilter
from .store import DB_NAMES, INCOMPLETE, KEY_SIZE, Store, StoreError, add_counter, exemption_prefix

log = logging.getLogger(__name__)


class StoreNotEmpty(StoreError):
    pass


class AppendOutOfOrder(StoreError):
    """MDB_APPEND refused a key: something else wrote the store. The load stops, marked incomplete."""


class BulkLedger(Ledger):
    def __init__(self, store: Store, pepper: bytes, *, writer: str = "bulk load"):
        super().__init__(store, pepper, writer=writer)
        self._index: dict[bytes, bytes] = {}
        self._lifted: set[bytes] = set()
        self._max_key: dict[str, bytes] = {}
        self._since_remap = 0

    REMAP_EVERY = 200_000

    @contextmanager
    def session(self, note: str, *, wait: bool | float = True, on_wait=None) -> Iterator[bool]:
        """Hold the store's writer lock from `begin` to the end of the block, where the
        caller has applied the feed and called `finish`. Yields whether an interrupted
        load was started over."""
        with self.store.writing(self.writer, wait=wait, on_wait=on_wait):
            yield self.begin(note)

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
        if interrupted is not None:
            log.warning("%s held an interrupted bulk load (%s); emptied it to start over", s.path, interrupted.decode())
        return interrupted is not None

    def apply(self, lines: Iterable[FeedLine], *, batch_size: int = 20_000) -> Iterator[Outcome]:
        yield from super().apply(lines, batch_size=batch_size)

    def _require_writable(self) -> None:
        pass  # the mark is this load's own (begin() set it)

    def _apply_batch(self, batch: list[FeedLine]) -> list[Outcome]:
        outcomes = super()._apply_batch(batch)
        self._since_remap += len(batch)
        if self._since_remap >= self.REMAP_EVERY:
            self.store.remap()
            self._since_remap = 0
        return outcomes

    def _db_name(self, db) -> str:
        return next(name for name, handle in self.store.dbs.items() if handle is db)

    def _get(self, txn: lmdb.Transaction, db, key: bytes) -> bytes | None:
        # A key above every key written so far cannot exist: skipping the lookup spares
        # the B-tree walk and keeps old pages of the map out of this process's RSS.
        if key > self._max_key.get(self._db_name(db), b""):
            return None
        return txn.get(key, db=db)

    def _put(self, txn: lmdb.Transaction, db, key: bytes, value: bytes) -> None:
        # MDB_APPEND skips the B-tree search and fills pages completely; only valid for
        # a key above every key already in the database.
        name = self._db_name(db)
        if key > self._max_key.get(name, b""):
            _append(txn.put(key, value, db=db, append=True), name)
            self._max_key[name] = key
        else:
            txn.put(key, value, db=db)

    def _reindex(self, txn: lmdb.Transaction, tally, old: dict | None, new: dict) -> list[bytes]:
        lid = new["listing_id"].encode()
        before = lifecycle.index_entries(old) if old and old["status"] == lifecycle.ACTIVE else {}
        after = lifecycle.index_entries(new) if new["status"] == lifecycle.ACTIVE else {}
        named_before = lifecycle.index_entries(old) if old else {}
        named_after = lifecycle.index_entries(new)
        for key in named_before.keys() - named_after.keys():
            self._index.pop(key + lid, None)
            _delete_prefix(txn, self.store.exemptions, exemption_prefix(key, new["listing_id"]))
        for key, kind in named_after.items():
            self._index[key + lid] = kind
        if new["status"] != lifecycle.ACTIVE:
            self._lifted.add(lid)
        return sorted((after.keys() - before.keys()) | self._rebind(txn, old, new))

    def finish(self, *, error_rate: float, min_capacity: int = MIN_CAPACITY, prefilter_path=None,
               progress=None) -> Prefilter:
        """The last transaction: write the indexes and the persons counter and clear the
        incomplete mark together; then build (and save) the prefilter."""
        s = self.store
        composites = sorted(self._index)
        active_keys = 0
        persons = 0
        with s.read() as view:
            bound = view.count("bindings")
        prefilter = Prefilter.empty(capacity=max(min_capacity, 2 * (len(composites) + bound)), error_rate=error_rate,
                                    store_id=s.store_id)
        try:
            with s.begin_write() as txn:
                all_cursor = txn.cursor(db=s.persons_all)
                active_cursor = txn.cursor(db=s.persons_active)
                last_key, counted = None, False
                for n, composite in enumerate(composites, 1):
                    kind = self._index[composite]
                    _append(all_cursor.put(composite, kind, append=True), "persons_all")
                    if composite[KEY_SIZE:] in self._lifted:
                        continue
                    _append(active_cursor.put(composite, kind, append=True), "persons_active")
                    key = composite[:KEY_SIZE]
                    if key != last_key:
                        last_key, counted = key, False
                        active_keys += 1
                        prefilter.add(key)
                    if kind == lifecycle.PRIMARY_PERSON and not counted:
                        counted = True
                        persons += 1
                    if progress and n % 500_000 == 0:
                        progress(n, len(composites))
                add_counter(txn, s.counters, "persons_restricted", persons)
                prefilter.covered_seq = int.from_bytes(txn.get(b"seq", db=s.meta), "big")
                txn.delete(INCOMPLETE, db=s.meta)
        except lmdb.Error as exc:
            full = s.out_of_room(exc)
            if full is not None:
                raise full from None
            raise
        log.info("bulk index: %d entries, %d active keys, %d persons", len(composites), active_keys, persons)
        self._index.clear()
        with s.read() as view:
            # Bound documents restrict under every listing of their person: the filter
            # holds them as a rebuild from the store would (`Prefilter.build`).
            for key in view.bound_keys():
                prefilter.add(key)
            if prefilter_path is not None:
                prefilter.save_or_warn(prefilter_path, view)
        return prefilter


def _append(appended: bool, db_name: str) -> None:
    if not appended:
        raise AppendOutOfOrder(f"bulk load: a key in {db_name} was not above every key already there "
                               "(has something else written the store?); the load stops and the store stays "
                               "marked incomplete")
