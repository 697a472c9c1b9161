"""Upgrades a store written by an older schema in place, in one write transaction: a
crash or a full disk leaves the old store untouched, and running it again is safe.

Schema 1 -> 2:
- exemption keys were `person key + listing_id + NUL + reference`, which a listing id
  containing NUL could make ambiguous; they become `person key + length-prefixed
  listing_id + reference`, rebuilt from each stored exemption (it names its listing and
  reference, so no key has to be split);
- each journal entry gains `chain`, the running digest of the history up to it, and meta
  `journal_chain` holds the newest one;
- a subject's extra documents stop being index entries of their listing and become
  bindings to the person (database `bindings`, from every listing record, lifted ones
  included); an exemption granted under an extra document moves to its person.
Journal entries keep the `added` keys they were written with: they are history.
A persisted prefilter of schema 1 has format 1 and is rebuilt at the next start.
"""

from __future__ import annotations

import json
import logging

import lmdb

from . import lifecycle
from .store import (
    GENESIS_CHAIN,
    SCHEMA_VERSION,
    Store,
    StoreCorrupt,
    decode_u64,
    dumps,
    encode_u64,
    exemption_key,
    next_chain,
    put_binding,
)

log = logging.getLogger(__name__)

_CHUNK = 10_000


def migrate(store: Store) -> str:
    """Bring the store to SCHEMA_VERSION; returns what was done. The caller holds the writer lock."""
    with store.read() as view:
        schema = view.meta(b"schema")
    if schema == SCHEMA_VERSION:
        return f"already at schema {SCHEMA_VERSION.decode()}: nothing to do"
    if schema != b"1":
        raise ValueError(f"cannot migrate from schema {schema!r}")
    try:
        with store.begin_write() as txn:
            bindings = _bind_extra_documents(txn, store)
            exemptions = _rekey_exemptions(txn, store)
            entries = _chain_journal(txn, store)
            txn.put(b"schema", SCHEMA_VERSION, db=store.meta)
    except lmdb.Error as exc:
        full = store.out_of_room(exc)
        if full is not None:
            raise full from None
        raise
    return (
        f"schema 1 -> {SCHEMA_VERSION.decode()}: {bindings} extra documents made bindings, "
        f"{exemptions} exemption keys rewritten, {entries} journal entries chained"
    )


def _bind_extra_documents(txn: lmdb.Transaction[bytes], store: Store) -> int:
    count = 0
    for _, value in txn.cursor(db=store.listings):
        record = json.loads(value)
        lid = record["listing_id"]
        for person in record["persons"]:
            if person["slot"] == "extra":
                key = bytes.fromhex(person["key"])
                txn.delete(key + lid.encode(), db=store.persons_active)
                txn.delete(key + lid.encode(), db=store.persons_all)
        # The remaining entries (the subject, restricted persons) keep their rows; a key
        # that was both is indexed under its stronger kind, as the ledger writes it.
        for key, kind in lifecycle.index_entries(record).items():
            txn.put(key + lid.encode(), kind, db=store.persons_all)
            if record["status"] == lifecycle.ACTIVE:
                txn.put(key + lid.encode(), kind, db=store.persons_active)
        for document, person_key in lifecycle.declared_bindings(record):
            put_binding(txn, store.bindings, document, person_key, lid.encode())
            count += 1
    return count


def _rekey_exemptions(txn: lmdb.Transaction[bytes], store: Store) -> int:
    old = list(txn.cursor(db=store.exemptions))
    for key, _ in old:
        txn.delete(key, db=store.exemptions)
    for key, value in old:
        exemption = json.loads(value)
        raw = txn.get(exemption["listing_id"].encode(), db=store.listings)
        if raw is None:  # an exemption of a listing the store does not hold: not a store to migrate
            raise StoreCorrupt(f"{store.path}: an exemption names listing {exemption['listing_id']}, which is missing")
        record = json.loads(raw)
        person_key = key[:16]
        # Granted under an extra document: it covers the person the document is bound to.
        if any(p["key"] == person_key.hex() and p["slot"] == "extra" for p in record["persons"]):
            person_key = bytes.fromhex(next(p["key"] for p in record["persons"] if p["slot"] == "subject"))
        txn.put(exemption_key(person_key, exemption["listing_id"], exemption["reference"]), value, db=store.exemptions)
    return len(old)


def _chain_journal(txn: lmdb.Transaction[bytes], store: Store) -> int:
    chain = GENESIS_CHAIN
    count = 0
    next_key = encode_u64(1)
    while True:
        cursor = txn.cursor(db=store.journal)
        if not cursor.set_range(next_key):
            break
        chunk = []
        for key, value in cursor:
            chunk.append((key, value))
            if len(chunk) >= _CHUNK:
                break
        for key, value in chunk:
            entry = json.loads(value)
            entry.pop("chain", None)
            chain = next_chain(chain, dumps(entry))
            entry["chain"] = chain.hex()
            txn.put(key, dumps(entry), db=store.journal)
        count += len(chunk)
        next_key = encode_u64(decode_u64(chunk[-1][0]) + 1)
        if count // 1_000_000 != (count - len(chunk)) // 1_000_000:
            log.info("migrate: %d journal entries chained", count)
    txn.put(b"journal_chain", chain, db=store.meta)
    return count
