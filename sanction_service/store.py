"""The LMDB store: layout, opening (fail closed), read views and write transactions.

Layout (named databases; no plain document number is ever a key or a value):
  meta            schema, pepper fingerprint, store id, journal sequence, last event time
  listings        listing_id -> listing record (JSON, masked documents, keyed hashes)
  persons_active  person key (16 B) + listing_id -> entry kind: listings in force
  persons_all     person key (16 B) + listing_id -> entry kind: every listing ever naming it
  bindings        document key (16 B) + document key (16 B) + listing_id -> direction: the listing
                  binds a subject's extra document to the subject's document. Written both ways
                  round: bound document + person -> b">" ("is bound to"), person + bound
                  document -> b"<" ("holds")
  exemptions      person key + listing_id length (2 B) + listing_id + reference -> exemption (JSON)
  events          event_id -> content digest (16 B) + journal sequence (8 B): dedupe
  journal         sequence (8 B big-endian) -> {event_id, type, listing_id, added keys, chain}
  counters        name -> 8 B big-endian count (stats that are not cheap to derive)

Composite keys never join variable parts with a separator that data could contain: the
person key is fixed-width and a listing id inside a key carries its length.

Each journal entry's `chain` digests the chain before it and the entry itself, so the
chain at sequence N stands for the whole history up to N (the prefilter file anchors on
it: another history with the same length is told apart).

Readers never block: LMDB gives each read transaction a snapshot, so a check that reads
the sequence and the records in one transaction sees one data version. Writers hold the
store's writer lock (`writing`). This module knows nothing of events' meaning; `ledger`
decides what to write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb
import msgspec

from .identity import KEY_SIZE
from .records import ExemptionRecord, ListingRecord, RecordUnreadable, decode_exemption, decode_listing
from .writer_lock import writer_lock_for

SCHEMA_VERSION = b"2"
DB_NAMES = ("meta", "listings", "persons_active", "persons_all", "bindings", "exemptions", "events", "journal", "counters")
BOUND_TO = b">"  # a bindings row from a bound document to its person
HOLDS = b"<"  # the same binding from the person to the document
# Set by a bulk load in its first transaction and cleared in its last: until then the
# person indexes are not written and the store must not answer anyone.
INCOMPLETE = b"bulk_load_incomplete"
GENESIS_CHAIN = bytes(16)
_U64 = struct.Struct(">Q")
_LID_LENGTH = struct.Struct(">H")


class StoreError(Exception):
    """The store cannot answer; callers must fail closed (UNAVAILABLE), never ALLOW."""


class StoreMissing(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class PepperMismatch(StoreError):
    def __init__(self, message: str, store_fingerprint: str = ""):
        super().__init__(message)
        self.store_fingerprint = store_fingerprint


class StoreIncomplete(StoreError):
    """A bulk load started and did not finish: the indexes are partial."""


class StoreOutdated(StoreError):
    """Written by an older schema; `sanction migrate` upgrades it."""


class StoreFull(StoreError):
    """The disk or the LMDB map has no room for the write; nothing of it was committed."""


def encode_u64(value: int) -> bytes:
    return _U64.pack(value)


def decode_u64(raw: bytes) -> int:
    return _U64.unpack(raw)[0]


_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder().decode


def dumps(value) -> bytes:
    """A record as stored: the bytes of json.dumps(value, ensure_ascii=False,
    separators=(",", ":")) in UTF-8, keys in insertion order (msgspec writes the same
    bytes for the strings, None, lists and dicts records hold, several times faster;
    tests/test_ledger_fast.py holds the two to each other)."""
    return _ENCODE(value)


def loads(raw: bytes):
    return _DECODE(raw)


def listing_part(listing_id: str) -> bytes:
    """A listing id as one part of a composite key: its length first, so no id is a prefix of another's part."""
    raw = listing_id.encode()
    return _LID_LENGTH.pack(len(raw)) + raw


def exemption_key(person_key: bytes, listing_id: str, reference: str) -> bytes:
    return person_key + listing_part(listing_id) + reference.encode()


def exemption_prefix(person_key: bytes, listing_id: str) -> bytes:
    return person_key + listing_part(listing_id)


def put_binding(txn: lmdb.Transaction[bytes], bindings, document: bytes, person: bytes, listing_id: bytes) -> None:
    """Record that the listing binds `document` to `person`, both ways round."""
    txn.put(document + person + listing_id, BOUND_TO, db=bindings)
    txn.put(person + document + listing_id, HOLDS, db=bindings)


def delete_binding(txn: lmdb.Transaction[bytes], bindings, document: bytes, person: bytes, listing_id: bytes) -> None:
    txn.delete(document + person + listing_id, db=bindings)
    txn.delete(person + document + listing_id, db=bindings)


def persons_of(txn: lmdb.Transaction[bytes], bindings, key: bytes) -> list[bytes]:
    """The documents under which a listing names the person(s) `key` stands for, in a
    stable order: the persons are `key` itself and every person it is bound to; each
    person's documents are their own and every document bound to them. So a resident ID
    reaches a listing that names the person by a bound passport, and a passport bound to
    two persons reaches both persons' listings; but two persons who share a bound
    document stay two persons (one's listings never restrict the other's resident ID)."""
    persons = [key]
    for composite, direction in _items_with_prefix(txn, bindings, key):
        if direction == BOUND_TO and composite[KEY_SIZE : 2 * KEY_SIZE] not in persons:
            persons.append(composite[KEY_SIZE : 2 * KEY_SIZE])
    documents = list(persons)
    for person in persons:
        for composite, direction in _items_with_prefix(txn, bindings, person):
            if direction == HOLDS and composite[KEY_SIZE : 2 * KEY_SIZE] not in documents:
                documents.append(composite[KEY_SIZE : 2 * KEY_SIZE])
    return documents


def _items_with_prefix(txn: lmdb.Transaction[bytes], db, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    for composite, value in cursor:
        if not composite.startswith(prefix):
            return
        yield composite, value


def _keys_with_prefix(txn: lmdb.Transaction[bytes], db, prefix: bytes) -> Iterator[bytes]:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    for composite in cursor.iternext(keys=True, values=False):
        if not composite.startswith(prefix):
            return
        yield composite


def next_chain(previous: bytes, entry: bytes) -> bytes:
    """The journal chain after `entry`: commits to every entry before it, in order."""
    return hashlib.blake2b(previous + entry, digest_size=16).digest()


class Store:
    # The named databases (DB_NAMES), one attribute each, set by `_open`. An outdated store
    # opened without allow_outdated lacks the later ones (and is refused by `_verify`).
    meta: lmdb._Database
    listings: lmdb._Database
    persons_active: lmdb._Database
    persons_all: lmdb._Database
    bindings: lmdb._Database
    exemptions: lmdb._Database
    events: lmdb._Database
    journal: lmdb._Database
    counters: lmdb._Database

    def __init__(
        self,
        path: str | os.PathLike,
        pepper_fingerprint: str,
        *,
        create: bool = False,
        map_size: int,
        allow_incomplete: bool = False,
        allow_outdated: bool = False,
    ):
        self.path = Path(path)
        self._pepper_fingerprint = pepper_fingerprint
        self._map_size = map_size
        if not (self.path / "data.mdb").is_file():
            if not create:
                raise StoreMissing(f"no store at {self.path} (run `sanction init` or `sanction load --create`)")
            self.path.mkdir(parents=True, exist_ok=True)
        self.writer = writer_lock_for(self.path)
        self._open(create, allow_outdated)
        try:
            self._verify(pepper_fingerprint, allow_incomplete, allow_outdated)
        except StoreError:
            self.env.close()
            raise

    def _open(self, create: bool, allow_outdated: bool = False) -> None:
        try:
            self.env = lmdb.open(
                str(self.path),
                map_size=self._map_size,
                max_dbs=len(DB_NAMES) + 2,
                max_readers=1024,
                # Checks read a handful of random pages; readahead would only evict hot ones.
                readahead=False,
                create=create,
            )
            self._check_file_size()
            # py-lmdb keeps named-database handles only from a committed write transaction.
            # Opening existing databases dirties no page, so the commit writes nothing and
            # a store on a full disk still opens.
            with self.env.begin(write=True) as txn:
                self.dbs = {"meta": self.env.open_db(b"meta", txn=txn, create=create)}
                schema = txn.get(b"schema", db=self.dbs["meta"])
                outdated = schema is not None and schema != SCHEMA_VERSION
                # An older store may lack databases a newer schema added: they are made
                # only when it is opened to be migrated; otherwise `_verify` says what to do.
                if not outdated or allow_outdated:
                    for name in DB_NAMES[1:]:
                        self.dbs[name] = self.env.open_db(name.encode(), txn=txn, create=create or outdated)
                if create and schema is None:
                    self.initialise(txn)
        except lmdb.NotFoundError:
            raise StoreCorrupt(f"{self.path} is not a sanction store (missing databases)") from None
        except lmdb.Error as exc:
            raise StoreCorrupt(f"cannot open store at {self.path}: {exc}") from None
        for name, db in self.dbs.items():
            setattr(self, name, db)

    def _check_file_size(self) -> None:
        """A data file shorter than its last page would fault (SIGBUS) on the first read there."""
        needed = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        actual = os.path.getsize(self.path / "data.mdb")
        if actual < needed:
            self.env.close()
            raise StoreCorrupt(
                f"{self.path / 'data.mdb'} is truncated ({actual} bytes, its pages need {needed}); restore it from a backup"
            )

    def initialise(self, txn: lmdb.Transaction[bytes]) -> None:
        """Meta of an empty store, with a new store id (a prefilter file of any earlier
        contents then no longer matches)."""
        meta = self.dbs["meta"]
        self.store_id = uuid.uuid4().hex
        txn.put(b"schema", SCHEMA_VERSION, db=meta)
        txn.put(b"pepper_fingerprint", self._pepper_fingerprint.encode(), db=meta)
        txn.put(b"store_id", self.store_id.encode(), db=meta)
        txn.put(b"seq", encode_u64(0), db=meta)

    def _verify(self, pepper_fingerprint: str, allow_incomplete: bool, allow_outdated: bool) -> None:
        with self.read() as view:
            schema = view.meta(b"schema")
            if schema is None:
                raise StoreCorrupt(f"{self.path} has no schema marker: not a sanction store")
            if schema == b"1" and not allow_outdated:
                raise StoreOutdated(
                    f"{self.path} has schema 1; run `sanction migrate --data-dir {self.path}` "
                    "(stop the writers first) to upgrade it to schema 2"
                )
            if schema not in (SCHEMA_VERSION, b"1"):
                raise StoreCorrupt(f"{self.path} has schema {schema!r}, this build reads {SCHEMA_VERSION!r}")
            recorded = view.meta(b"pepper_fingerprint") or b""
            if recorded != pepper_fingerprint.encode():
                # With another pepper every key differs: the store would answer ALLOW for everyone.
                raise PepperMismatch(
                    f"{self.path} was built with another pepper; refusing to open it", recorded.decode(errors="replace")
                )
            store_id = view.meta(b"store_id")
            if store_id is None:
                raise StoreCorrupt(f"{self.path} has no store id: not a sanction store")
            self.store_id = store_id.decode()
            incomplete = view.meta(INCOMPLETE)
        if incomplete is not None and not allow_incomplete:
            if self.writer.held_elsewhere():
                raise StoreIncomplete(
                    f"{self.path} is being bulk loaded by {self.writer.holder()}: its indexes are "
                    "partial until that load finishes"
                )
            raise StoreIncomplete(
                f"{self.path} holds an unfinished bulk load ({incomplete.decode()}): its indexes are partial, so it "
                "must not serve or take other writes; run the same `sanction load --bulk FEED` again (it starts "
                "over), or delete the directory and load again"
            )

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """One snapshot. LMDB's own errors become StoreError, which callers answer with
        UNAVAILABLE (never with a decision they could not read)."""
        try:
            txn = self._begin(write=False)
        except lmdb.Error as exc:
            raise StoreError(f"cannot read the store at {self.path}: {exc}") from None
        try:
            yield ReadView(self, txn)
        except lmdb.Error as exc:
            raise StoreError(f"cannot read the store at {self.path}: {exc}") from None
        finally:
            txn.abort()

    @contextmanager
    def writing(self, what: str, *, wait: bool | float = True, on_wait=None) -> Iterator[None]:
        """Hold the store's writer lock for the block (re-entrant in one thread). Raises WriterBusy."""
        with self.writer.hold(what, wait=wait, on_wait=on_wait):
            yield

    def begin_write(self, parent: lmdb.Transaction[bytes] | None = None) -> lmdb.Transaction[bytes]:
        if parent is None and not self.writer.held_by_this_thread():
            # A write without the lock could interleave with another loader's batches.
            raise RuntimeError("write transaction without the store's writer lock")
        return self._begin(write=True, parent=parent)

    def _begin(self, **kwargs) -> lmdb.Transaction[bytes]:
        try:
            return self.env.begin(**kwargs)
        except lmdb.MapResizedError:
            # Another process grew the map; adopt its size and go on.
            self.env.set_mapsize(0)
            return self.env.begin(**kwargs)

    def remap(self) -> None:
        """Close and reopen the environment. Lookups map pages of the data file into this
        process; on a multi-GB bulk load they would count towards its RSS until unmapped."""
        self.env.close()
        self._open(create=False)

    def out_of_room(self, exc: lmdb.Error) -> StoreFull | None:
        """A StoreFull naming the cause if a write failed for want of room (map or disk), else None."""
        if isinstance(exc, lmdb.MapFullError):
            return StoreFull(
                f"the store's map ({self.env.info()['map_size'] >> 10} KiB) is full at {self.path}; "
                "raise SANCTION_MAP_SIZE and run again"
            )
        # LMDB reports a write that failed on a full disk as EIO (or ENOSPC), with no errno attribute.
        free = shutil.disk_usage(self.path).free
        text = str(exc)
        if os.strerror(errno.ENOSPC) in text or (os.strerror(errno.EIO) in text and free < (1 << 20)):
            return StoreFull(
                f"no space left on device at {self.path} ({free >> 10} KiB free; {text}); "
                "free some space and run again: the failed batch was not committed"
            )
        return None

    def add_counters(self, deltas: dict[str, int], *, wait: bool | float = True) -> None:
        with self.writing("counter flush", wait=wait), self.begin_write() as txn:
            for name, delta in deltas.items():
                add_counter(txn, self.counters, name, delta)

    def close(self) -> None:
        self.env.close()


class ReadView:
    """One snapshot. Every read of one check goes through the same view."""

    __slots__ = ("txn", "store")

    def __init__(self, store: Store, txn: lmdb.Transaction[bytes]):
        self.store = store
        self.txn = txn

    def meta(self, name: bytes) -> bytes | None:
        return self.txn.get(name, db=self.store.meta)

    def seq(self) -> int:
        raw = self.txn.get(b"seq", db=self.store.meta)
        if raw is None:  # initialise writes it with the schema: only a damaged store lacks it
            raise StoreCorrupt(f"{self.store.path} has no journal sequence")
        return decode_u64(raw)

    def require_complete(self) -> None:
        """A process that opened the store before a bulk load began must not answer from
        its partial indexes either."""
        if self.txn.get(INCOMPLETE, db=self.store.meta) is not None:
            raise StoreIncomplete(f"{self.store.path} is being bulk loaded (or a bulk load was interrupted)")

    def listing(self, listing_id: str) -> dict | None:
        raw = self.txn.get(listing_id.encode(), db=self.store.listings)
        return None if raw is None else json.loads(raw)

    def listing_record(self, listing_id: str) -> ListingRecord | None:
        """`listing` as a typed record (records.py), for the check path."""
        raw = self.txn.get(listing_id.encode(), db=self.store.listings)
        if raw is None:
            return None
        try:
            return decode_listing(raw)
        except RecordUnreadable as exc:
            raise StoreCorrupt(f"{self.store.path}: listing {listing_id!r}: {exc}") from None

    def persons_of(self, key: bytes) -> list[bytes]:
        return persons_of(self.txn, self.store.bindings, key)

    def bound_keys(self) -> Iterator[bytes]:
        """Distinct documents of a binding (either end) that are not themselves a person in
        force (the prefilter holds them besides `active_keys`; each key comes from one of
        the two)."""
        last = None
        active = self.txn.cursor(db=self.store.persons_active)
        for composite in self.txn.cursor(db=self.store.bindings).iternext(keys=True, values=False):
            key = composite[:KEY_SIZE]
            if key != last:
                last = key
                if not (active.set_range(key) and active.key().startswith(key)):
                    yield key

    def listing_ids(self, key: bytes, *, active_only: bool = True) -> list[str]:
        db = self.store.persons_active if active_only else self.store.persons_all
        return [lid.decode() for lid in _suffixes(self.txn, db, key)]

    def exemptions(self, key: bytes, listing_id: str) -> tuple[dict, ...]:
        prefix = exemption_prefix(key, listing_id)
        cursor = self.txn.cursor(db=self.store.exemptions)
        found = []
        if cursor.set_range(prefix):
            for k, v in cursor:
                if not k.startswith(prefix):
                    break
                found.append(json.loads(v))
        return tuple(found)

    def exemption_records(self, key: bytes, listing_id: str) -> tuple[ExemptionRecord, ...]:
        """`exemptions` as typed records (records.py), for the check path."""
        prefix = exemption_prefix(key, listing_id)
        cursor = self.txn.cursor(db=self.store.exemptions)
        if not cursor.set_range(prefix):
            return ()
        found = []
        try:
            for k, v in cursor:
                if not k.startswith(prefix):
                    break
                found.append(decode_exemption(v))
        except RecordUnreadable as exc:
            raise StoreCorrupt(f"{self.store.path}: an exemption of listing {listing_id!r}: {exc}") from None
        return tuple(found)

    def journal_since(self, after_seq: int) -> Iterator[tuple[int, dict]]:
        cursor = self.txn.cursor(db=self.store.journal)
        if cursor.set_range(encode_u64(after_seq + 1)):
            for k, v in cursor:
                yield decode_u64(k), json.loads(v)

    def journal_entry(self, seq: int) -> bytes | None:
        return self.txn.get(encode_u64(seq), db=self.store.journal)

    def chain_at(self, seq: int) -> bytes | None:
        """The journal chain after entry `seq` (None if there is no such entry)."""
        if seq == 0:
            return GENESIS_CHAIN
        entry = self.journal_entry(seq)
        return None if entry is None else bytes.fromhex(json.loads(entry)["chain"])

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


def _suffixes(txn: lmdb.Transaction[bytes], db, prefix: bytes) -> Iterator[bytes]:
    for composite in _keys_with_prefix(txn, db, prefix):
        yield composite[len(prefix) :]


def add_counter(txn: lmdb.Transaction[bytes], db, name: str, delta: int) -> None:
    raw = txn.get(name.encode(), db=db)
    value = (decode_u64(raw) if raw else 0) + delta
    txn.put(name.encode(), encode_u64(max(value, 0)), db=db)
