"""A canonical digest of a store's contents, to prove two stores hold the same state
(bulk load vs event-by-event, a crashed-and-resumed load vs a clean one, a backup vs its
source). Covers every database except the store's random id; map size, page layout and
free pages do not enter it.

A replica's bookkeeping (meta keys under `replication:`: the stream it follows, the
stream sequence it has applied, the messages it rejected) is not the list's content: a
replica and a local `sanction load` of the same feed have the same `all`. When a store
has such keys they get their own entry, `replication`, outside `all`, so two replicas
at the same stream position also compare equal on it.
"""

from __future__ import annotations

import hashlib

from .store import DB_NAMES, ReadView

EXCLUDED_META = frozenset({b"store_id"})
REPLICATION_PREFIX = b"replication:"


def store_digest(view: ReadView) -> dict[str, str]:
    """Per-database digests plus `all`, over keys and values in key order."""
    digests = {}
    total = hashlib.blake2b(digest_size=32)
    replication = hashlib.blake2b(digest_size=32)
    replicated = False
    for name in DB_NAMES:
        h = hashlib.blake2b(digest_size=32)
        for key, value in view.txn.cursor(db=view.store.dbs[name]):
            if name == "meta" and key in EXCLUDED_META:
                continue
            record = len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value
            if name == "meta" and key.startswith(REPLICATION_PREFIX):
                replication.update(record)
                replicated = True
                continue
            h.update(record)
        digests[name] = h.hexdigest()
        total.update(name.encode() + bytes.fromhex(digests[name]))
    digests["all"] = total.hexdigest()
    if replicated:
        digests["replication"] = replication.hexdigest()
    return digests
