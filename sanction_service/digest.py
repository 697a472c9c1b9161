"""A canonical digest of a store's contents, to prove two stores hold the same state
(bulk load vs event-by-event, a crashed-and-resumed load vs a clean one, a backup vs its
source). Covers every database except the store's random id; map size, page layout and
free pages do not enter it.
"""

from __future__ import annotations

import hashlib

from .store import DB_NAMES, ReadView

EXCLUDED_META = frozenset({b"store_id"})


def store_digest(view: ReadView) -> dict[str, str]:
    """Per-database digests plus `all`, over keys and values in key order."""
    digests = {}
    total = hashlib.blake2b(digest_size=32)
    for name in DB_NAMES:
        h = hashlib.blake2b(digest_size=32)
        for key, value in view.txn.cursor(db=view.store.dbs[name]):
            if name == "meta" and key in EXCLUDED_META:
                continue
            h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
        digests[name] = h.hexdigest()
        total.update(name.encode() + bytes.fromhex(digests[name]))
    digests["all"] = total.hexdigest()
    return digests
