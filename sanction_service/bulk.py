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
digests). Crash-safety is coarser: the indexes are written after the last event, so a
bulk load killed midway leaves a store to delete and load again; `sanction load --bulk`
refuses a store that is not empty.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import lmdb

from . import lifecycle
from .ledger import FeedLine, Ledger, Outcome, _delete_prefix
from .prefilter import MIN_CAPACITY, Prefilter
from .store import KEY_SIZE, Store, add_counter

log = logging.getLogger(__name__)


class StoreNotEmpty(Exception):
    pass


class BulkLedger(Ledger):
    def __init__(self, store: Store, pepper: bytes):
        super().__init__(store, pepper)
        with store.read() as view:
            if view.seq() != 0 or view.count("listings") != 0:
                raise StoreNotEmpty(f"bulk loading needs an empty store; {store.path} is at data version {view.seq()}")
        self._index: dict[bytes, bytes] = {}
        self._lifted: set[bytes] = set()
        self._max_key: dict[str, bytes] = {}
        self._since_remap = 0

    REMAP_EVERY = 200_000

    def apply(self, lines: Iterable[FeedLine], *, batch_size: int = 20_000) -> Iterator[Outcome]:
        yield from super().apply(lines, batch_size=batch_size)

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
            txn.put(key, value, db=db, append=True)
            self._max_key[name] = key
        else:
            txn.put(key, value, db=db)

    def _reindex(self, txn: lmdb.Transaction, old: dict | None, new: dict) -> list[bytes]:
        lid = new["listing_id"].encode()
        before = lifecycle.index_entries(old) if old and old["status"] == lifecycle.ACTIVE else {}
        after = lifecycle.index_entries(new) if new["status"] == lifecycle.ACTIVE else {}
        named_before = lifecycle.index_entries(old) if old else {}
        named_after = lifecycle.index_entries(new)
        for key in named_before.keys() - named_after.keys():
            self._index.pop(key + lid, None)
            _delete_prefix(txn, self.store.exemptions, key + lid + b"\x00")
        for key, kind in named_after.items():
            self._index[key + lid] = kind
        if new["status"] != lifecycle.ACTIVE:
            self._lifted.add(lid)
        return sorted(after.keys() - before.keys())

    def finish(self, *, error_rate: float, prefilter_path=None, progress=None) -> Prefilter:
        """Write the indexes and the persons counter; build (and save) the prefilter."""
        s = self.store
        composites = sorted(self._index)
        active_keys = 0
        persons = 0
        bloom_capacity = max(MIN_CAPACITY, 2 * len(composites))
        prefilter = Prefilter.empty(capacity=bloom_capacity, error_rate=error_rate, store_id=s.store_id)
        while True:
            try:
                with s.begin_write() as txn:
                    all_cursor = txn.cursor(db=s.persons_all)
                    active_cursor = txn.cursor(db=s.persons_active)
                    last_key, counted = None, False
                    for n, composite in enumerate(composites, 1):
                        kind = self._index[composite]
                        all_cursor.put(composite, kind, append=True)
                        if composite[KEY_SIZE:] in self._lifted:
                            continue
                        active_cursor.put(composite, kind, append=True)
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
                break
            except lmdb.MapFullError:
                s.grow()
                active_keys = persons = 0
                prefilter = Prefilter.empty(capacity=bloom_capacity, error_rate=error_rate, store_id=s.store_id)
        log.info("bulk index: %d entries, %d active keys, %d persons", len(composites), active_keys, persons)
        self._index.clear()
        if prefilter_path is not None:
            with s.read() as view:
                prefilter.save(prefilter_path, view)
        return prefilter
