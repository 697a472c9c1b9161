"""Upgrades a store written by an older schema in place, in one write transaction: a
crash or a full disk leaves the old store untouched, and running it again is safe.

Schema 1 -> 2:
- exemption keys were `person key + listing_id + NUL + reference`, which a listing id
  containing NUL could make ambiguous; they become `person key + length-prefixed
  listing_id + reference`, rebuilt from each stored exemption (it names its listing and
  reference, so no key has to be split);
- each journal entry gains `chain`, the running digest of the history up to it, and meta
  `journal_chain` holds the newest one.
A persisted prefilter of schema 1 has format 1 and is rebuilt at the next start.
"""

from __future__ import annotations

import json
import logging

import lmdb

from .store import (
    GENESIS_CHAIN,
    SCHEMA_VERSION,
    Store,
    decode_u64,
    dumps,
    encode_u64,
    exemption_key,
    next_chain,
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
            exemptions = _rekey_exemptions(txn, store)
            entries = _chain_journal(txn, store)
            txn.put(b"schema", SCHEMA_VERSION, db=store.meta)
    except lmdb.Error as exc:
        full = store.out_of_room(exc)
        if full is not None:
            raise full from None
        raise
    return (f"schema 1 -> {SCHEMA_VERSION.decode()}: {exemptions} exemption keys rewritten, "
            f"{entries} journal entries chained")


def _rekey_exemptions(txn: lmdb.Transaction, store: Store) -> int:
    old = list(txn.cursor(db=store.exemptions))
    for key, _ in old:
        txn.delete(key, db=store.exemptions)
    for key, value in old:
        exemption = json.loads(value)
        txn.put(exemption_key(key[:16], exemption["listing_id"], exemption["reference"]), value, db=store.exemptions)
    return len(old)


def _chain_journal(txn: lmdb.Transaction, store: Store) -> int:
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
