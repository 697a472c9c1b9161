"""The reference event-by-event Ledger, as it was before the fast path (ledger.Ledger):
each event in its own nested transaction, records and journal entries through the
standard json module, meta and counters written per event. Kept beside the fast path so
tests compare the two on large random feeds (tests/test_ledger_fast.py); not used by
the service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator

import lmdb

from . import lifecycle
from .events import Event, EventRejected, EventType, parse_event
from .identity import Document, document_key
from .ledger import APPLIED, DUPLICATE, REJECTED, FeedLine, Outcome, _counted_as_person, _delete_prefix, raw_event_id
from .store import (
    GENESIS_CHAIN,
    Store,
    StoreCorrupt,
    add_counter,
    decode_u64,
    delete_binding,
    encode_u64,
    exemption_key,
    exemption_prefix,
    next_chain,
    persons_of,
    put_binding,
)

log = logging.getLogger(__name__)


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class ReferenceLedger:
    def __init__(self, store: Store, pepper: bytes, *, writer: str = "applying events"):
        self.store = store
        self._pepper = pepper
        self.writer = writer

    def key_of(self, doc: Document) -> bytes:
        return document_key(self._pepper, doc)

    def apply(self, lines: Iterable[FeedLine], *, batch_size: int = 1000, wait: bool | float = True) -> Iterator[Outcome]:
        """Apply lines in order; yields one Outcome per line once its batch is committed.
        Waits for another writer of the store first (`wait` as in Store.writing)."""
        with self.store.writing(self.writer, wait=wait):
            self._require_writable()
            batch: list[FeedLine] = []
            for line in lines:
                batch.append(line)
                if len(batch) >= batch_size:
                    yield from self._apply_batch(batch)
                    batch = []
            if batch:
                yield from self._apply_batch(batch)

    def _require_writable(self) -> None:
        # A process that opened the store before a bulk load began (a server) must not add
        # events to what that load, interrupted, left behind.
        with self.store.read() as view:
            view.require_complete()

    def _apply_batch(self, batch: list[FeedLine]) -> list[Outcome]:
        outcomes = []
        txn = self.store.begin_write()
        try:
            for line in batch:
                outcomes.append(self._apply_line(txn, line))
            txn.commit()
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

    def _apply_line(self, parent: lmdb.Transaction[bytes], line: FeedLine) -> Outcome:
        event_id = line.event_id or raw_event_id(line.raw)
        if line.error is not None:
            return Outcome(line.line, REJECTED, event_id, line.error.reason, line.error.field)
        event = line.event
        if event is None:
            try:
                event = parse_event(line.raw)
            except EventRejected as exc:
                return Outcome(line.line, REJECTED, event_id, exc.reason, exc.field)
        child = self.store.begin_write(parent=parent)
        try:
            status, seq = self._apply_event(child, event)
        except EventRejected as exc:
            child.abort()
            log.debug("line %d: rejected %s: %s %s", line.line, event.event_id, exc.field, exc.reason)
            return Outcome(line.line, REJECTED, event.event_id, exc.reason, exc.field)
        except BaseException:
            child.abort()
            raise
        child.commit()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "line %d: %s %s %s listing %s (seq %d)",
                line.line,
                status.lower(),
                event.type.value,
                event.event_id,
                event.listing_id,
                seq,
            )
        return Outcome(line.line, status, event.event_id, seq=seq)

    def _apply_event(self, txn: lmdb.Transaction[bytes], event: Event) -> tuple[str, int]:
        s = self.store
        known = self._get(txn, s.events, event.event_id.encode())
        if known is not None:
            if known[:16] == event.digest:
                return DUPLICATE, decode_u64(known[16:])
            raise EventRejected("event_id", "already applied with different content (conflict)")

        raw_old = self._get(txn, s.listings, event.listing_id.encode())
        old = None if raw_old is None else json.loads(raw_old)
        exemption = None
        if event.type is EventType.LIST:
            if old is not None:
                raise EventRejected("listing_id", "already used by another listing")
            new = lifecycle.new_listing(event, self.key_of)
        else:
            active = lifecycle.require_active(old)
            if event.type in (EventType.DELIST, EventType.PERFORM):
                new = lifecycle.lifted(active, event)
            elif event.type is EventType.EXTEND:
                new = lifecycle.extended(active, event)
            elif event.type is EventType.CORRECT:
                new = lifecycle.corrected(active, event, self.key_of)
            else:
                if event.exempt_document is None or event.reference is None:
                    raise EventRejected("document", "an EXEMPT names a document and a reference")
                new, reference = active, event.reference
                exemption, exempt_persons = lifecycle.exemption(
                    active, event, persons_of(txn, s.bindings, self.key_of(event.exempt_document))
                )

        raw_seq = txn.get(b"seq", db=s.meta)
        if raw_seq is None:
            raise StoreCorrupt(f"{s.path} has no journal sequence")
        seq = decode_u64(raw_seq) + 1
        new = lifecycle.with_event(new, event.event_id)
        added = self._reindex(txn, old, new)
        if exemption is not None:
            for person_key in exempt_persons:
                txn.put(exemption_key(person_key, event.listing_id, reference), dumps(exemption), db=s.exemptions)
        self._put(txn, s.listings, event.listing_id.encode(), dumps(new))
        self._count(txn, event, old, new)
        journal = {
            "event_id": event.event_id,
            "type": event.type.value,
            "listing_id": event.listing_id,
            "added": [k.hex() for k in added],
        }
        chain = next_chain(txn.get(b"journal_chain", db=s.meta) or GENESIS_CHAIN, dumps(journal))
        journal["chain"] = chain.hex()
        self._put(txn, s.journal, encode_u64(seq), dumps(journal))
        txn.put(b"journal_chain", chain, db=s.meta)
        self._put(txn, s.events, event.event_id.encode(), event.digest + encode_u64(seq))
        txn.put(b"seq", encode_u64(seq), db=s.meta)
        txn.put(b"last_event_time", event.occurred_at.encode(), db=s.meta)
        return APPLIED, seq

    def _get(self, txn: lmdb.Transaction[bytes], db, key: bytes) -> bytes | None:
        return txn.get(key, db=db)

    def _put(self, txn: lmdb.Transaction[bytes], db, key: bytes, value: bytes) -> None:
        txn.put(key, value, db=db)

    def _reindex(self, txn: lmdb.Transaction[bytes], old: dict | None, new: dict) -> list[bytes]:
        """Bring the person indexes in line with `new`; return keys newly in force."""
        s = self.store
        lid = new["listing_id"].encode()
        before = lifecycle.index_entries(old) if old and old["status"] == lifecycle.ACTIVE else {}
        after = lifecycle.index_entries(new) if new["status"] == lifecycle.ACTIVE else {}
        named_before = lifecycle.index_entries(old) if old else {}
        named_after = lifecycle.index_entries(new)
        affected = before.keys() | after.keys()
        counted_before = {k for k in affected if _counted_as_person(txn, s.persons_active, k)}
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
            txn.put(key + lid, kind, db=s.persons_all)
        counted_after = {k for k in affected if _counted_as_person(txn, s.persons_active, k)}
        delta = len(counted_after - counted_before) - len(counted_before - counted_after)
        if delta:
            add_counter(txn, s.counters, "persons_restricted", delta)
        return sorted((after.keys() - before.keys()) | self._rebind(txn, old, new))

    def _rebind(self, txn: lmdb.Transaction[bytes], old: dict | None, new: dict) -> set[bytes]:
        """Bring the bindings in line with what `new` declares; return the documents it
        newly declares (the prefilter must hold them: they restrict under every listing
        of their person from now on)."""
        lid = new["listing_id"]
        before = lifecycle.declared_bindings(old) if old else set()
        after = lifecycle.declared_bindings(new)
        for document, person in before - after:
            delete_binding(txn, self.store.bindings, document, person, lid.encode())
        for document, person in after - before:
            put_binding(txn, self.store.bindings, document, person, lid.encode())
        return {key for pair in after - before for key in pair}

    def _count(self, txn: lmdb.Transaction[bytes], event: Event, old: dict | None, new: dict) -> None:
        db = self.store.counters
        was_active = old is not None and old["status"] == lifecycle.ACTIVE
        is_active = new["status"] == lifecycle.ACTIVE
        if is_active and not was_active:
            add_counter(txn, db, f"active:{new['list_type']}", 1)
        elif was_active and not is_active:
            add_counter(txn, db, f"active:{new['list_type']}", -1)
            add_counter(txn, db, f"delisted:{new['lifted_reason']}", 1)
            if event.type is EventType.PERFORM:
                add_counter(txn, db, "voluntary_performances", 1)
