"""The LMDB store: layout, opening (fail closed), read views and write transactions.

Layout (named databases; no plain document number is ever a key or a value):
  meta            schema, pepper fingerprint, store id, journal sequence, last event time
  listings        listing_id -> listing record (JSON, masked documents, keyed hashes)
  persons_active  person key (16 B) + listing_id -> entry kind: listings in force
  persons_all     person key (16 B) + listing_id -> entry kind: every listing ever naming it
  exemptions      person key + listing_id + NUL + reference -> exemption (JSON)
  events          event_id -> content digest (16 B) + journal sequence (8 B): dedupe
  journal         sequence (8 B big-endian) -> {event_id, type, listing_id, added keys}
  counters        name -> 8 B big-endian count (stats that are not cheap to derive)

Readers never block: LMDB gives each read transaction a snapshot, so a check that reads
the sequence and the records in one transaction sees one data version. This module knows
nothing of events' meaning; `ledger` decides what to write.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from .identity import KEY_SIZE

SCHEMA_VERSION = b"1"
DB_NAMES = ("meta", "listings", "persons_active", "persons_all", "exemptions", "events", "journal", "counters")
_U64 = struct.Struct(">Q")


class StoreError(Exception):
    """The store cannot answer; callers must fail closed (UNAVAILABLE), never ALLOW."""


class StoreMissing(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class PepperMismatch(StoreError):
    pass


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Store:
    def __init__(self, path: str | os.PathLike, pepper_fingerprint: str, *, create: bool = False, map_size: int):
        self.path = Path(path)
        self._pepper_fingerprint = pepper_fingerprint
        if not (self.path / "data.mdb").is_file():
            if not create:
                raise StoreMissing(f"no store at {self.path} (run `sanction load` to create one)")
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(DB_NAMES) + 2,
                max_readers=1024,
                # Checks read a handful of random pages; readahead would only evict hot ones.
                readahead=False,
                create=create,
            )
            with self.env.begin(write=True) as txn:
                self.dbs = {name: self.env.open_db(name.encode(), txn=txn, create=create) for name in DB_NAMES}
                if create and txn.get(b"schema", db=self.dbs["meta"]) is None:
                    self._initialise(txn, pepper_fingerprint)
        except lmdb.NotFoundError:
            raise StoreCorrupt(f"{self.path} is not a sanction store (missing databases)") from None
        except lmdb.Error as exc:
            raise StoreCorrupt(f"cannot open store at {self.path}: {exc}") from None
        for name, db in self.dbs.items():
            setattr(self, name, db)
        self._verify(pepper_fingerprint)

    def _initialise(self, txn: lmdb.Transaction, pepper_fingerprint: str) -> None:
        meta = self.dbs["meta"]
        txn.put(b"schema", SCHEMA_VERSION, db=meta)
        txn.put(b"pepper_fingerprint", pepper_fingerprint.encode(), db=meta)
        txn.put(b"store_id", uuid.uuid4().hex.encode(), db=meta)
        txn.put(b"seq", encode_u64(0), db=meta)

    def _verify(self, pepper_fingerprint: str) -> None:
        with self.read() as view:
            schema = view.meta(b"schema")
            if schema is None:
                raise StoreCorrupt(f"{self.path} has no schema marker: not a sanction store")
            if schema != SCHEMA_VERSION:
                raise StoreCorrupt(f"{self.path} has schema {schema!r}, this build reads {SCHEMA_VERSION!r}")
            if view.meta(b"pepper_fingerprint") != pepper_fingerprint.encode():
                # With another pepper every key differs: the store would answer ALLOW for everyone.
                raise PepperMismatch(f"{self.path} was built with another pepper; refusing to open it")
            self.store_id = view.meta(b"store_id").decode()

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        txn = self._begin(write=False)
        try:
            yield ReadView(self, txn)
        finally:
            txn.abort()

    def begin_write(self, parent: lmdb.Transaction | None = None) -> lmdb.Transaction:
        return self._begin(write=True, parent=parent)

    def _begin(self, **kwargs) -> lmdb.Transaction:
        try:
            return self.env.begin(**kwargs)
        except lmdb.MapResizedError:
            # Another process grew the map; adopt its size and go on.
            self.env.set_mapsize(0)
            return self.env.begin(**kwargs)

    def remap(self) -> None:
        """Close and reopen the environment. Lookups map pages of the data file into this
        process; on a multi-GB bulk load they would count towards its RSS until unmapped."""
        map_size = self.env.info()["map_size"]
        self.env.close()
        self.__init__(self.path, self._pepper_fingerprint, map_size=map_size)

    def grow(self) -> int:
        new_size = self.env.info()["map_size"] * 2
        self.env.set_mapsize(new_size)
        return new_size

    def add_counters(self, deltas: dict[str, int]) -> None:
        with self.begin_write() as txn:
            for name, delta in deltas.items():
                add_counter(txn, self.counters, name, delta)

    def close(self) -> None:
        self.env.close()


class ReadView:
    """One snapshot. Every read of one check goes through the same view."""

    __slots__ = ("txn", "store")

    def __init__(self, store: Store, txn: lmdb.Transaction):
        self.store = store
        self.txn = txn

    def meta(self, name: bytes) -> bytes | None:
        return self.txn.get(name, db=self.store.meta)

    def seq(self) -> int:
        return decode_u64(self.txn.get(b"seq", db=self.store.meta))

    def listing(self, listing_id: str) -> dict | None:
        raw = self.txn.get(listing_id.encode(), db=self.store.listings)
        return None if raw is None else json.loads(raw)

    def listing_ids(self, key: bytes, *, active_only: bool = True) -> list[str]:
        db = self.store.persons_active if active_only else self.store.persons_all
        return [lid.decode() for lid in _suffixes(self.txn, db, key)]

    def exemptions(self, key: bytes, listing_id: str) -> tuple[dict, ...]:
        prefix = key + listing_id.encode() + b"\x00"
        cursor = self.txn.cursor(db=self.store.exemptions)
        found = []
        if cursor.set_range(prefix):
            for k, v in cursor:
                if not k.startswith(prefix):
                    break
                found.append(json.loads(v))
        return tuple(found)

    def journal_since(self, after_seq: int) -> Iterator[tuple[int, dict]]:
        cursor = self.txn.cursor(db=self.store.journal)
        if cursor.set_range(encode_u64(after_seq + 1)):
            for k, v in cursor:
                yield decode_u64(k), json.loads(v)

    def journal_entry(self, seq: int) -> bytes | None:
        return self.txn.get(encode_u64(seq), db=self.store.journal)

    def counters(self) -> dict[str, int]:
        cursor = self.txn.cursor(db=self.store.counters)
        return {k.decode(): decode_u64(v) for k, v in cursor}

    def active_keys(self) -> Iterator[bytes]:
        """Distinct person keys with a listing in force (what the prefilter holds)."""
        last = None
        for composite in self.txn.cursor(db=self.store.persons_active).iternext(keys=True, values=False):
            key = composite[:KEY_SIZE]
            if key != last:
                last = key
                yield key

    def count(self, db_name: str) -> int:
        return self.txn.stat(self.store.dbs[db_name])["entries"]


def _suffixes(txn: lmdb.Transaction, db, prefix: bytes) -> Iterator[bytes]:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    for composite in cursor.iternext(keys=True, values=False):
        if not composite.startswith(prefix):
            return
        yield composite[len(prefix):]


def add_counter(txn: lmdb.Transaction, db, name: str, delta: int) -> None:
    raw = txn.get(name.encode(), db=db)
    value = (decode_u64(raw) if raw else 0) + delta
    txn.put(name.encode(), encode_u64(max(value, 0)), db=db)
