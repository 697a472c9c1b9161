"""The event path (ledger.Ledger: one transaction per batch, no nested transaction per
event, meta and counters written once per batch, records through msgspec, fast line
decoding) against the reference (ledger_reference.ReferenceLedger: a nested transaction
per event, json records, meta and counters per event, reference line decoding), on a
random feed of every event type with hostile lines: the same outcome for every line
(status, event id, field, reason, sequence) and the same store, digest for digest."""

from __future__ import annotations

import json

import pytest
from conftest import PEPPER
from feedgen import hostile_feed
from sanction_service.loaders.feed import decode_line, decode_line_reference

from sanction_service.digest import store_digest
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import Ledger
from sanction_service.ledger_reference import ReferenceLedger
from sanction_service.store import Store, dumps


def outcomes(ledger, lines, batch_size):
    return [(o.line, o.status, o.event_id, o.field, o.reason, o.seq) for o in ledger.apply(lines, batch_size=batch_size)]


def decoded(lines, decode):
    return [line for n, text in enumerate(lines, 1) if (line := decode(n, text.encode("utf-8", "surrogatepass"))) is not None]


def fast_lines(mode, lines, ledger, tmp_path):
    """The event path's input, as each of its callers makes it."""
    if mode == "feedlines":  # decode_line (fast decoder, reference fallback) into FeedLines
        return decoded(lines, decode_line)
    if mode == "apply_events":  # ApplyEvents: prepare_text of each event's text
        return [ledger.prepare_text(n, text) for n, text in enumerate(lines, 1)]
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(text.encode("utf-8", "surrogatepass") + b"\n" for text in lines))
    # `sanction load`: prepared lines (LISTs in full, DELIST/PERFORM/EXTEND parsed), here or by workers
    return list(ledger.read_feed(feed, 2 if mode == "workers" else 0))


@pytest.mark.parametrize(
    "seed,batch_size,mode", [(3, 1000, "feedlines"), (4, 37, "prepared"), (5, 400, "workers"), (6, 300, "apply_events")]
)
def test_event_path_and_reference_ledger_reach_the_same_outcomes_and_digest(tmp_path, seed, batch_size, mode):
    from sanction_service.feedline import parse_text_reference

    lines = hostile_feed(seed, 1500)
    ref = Store(tmp_path / "ref", pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)
    fast = Store(tmp_path / "fast", pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)
    if mode == "apply_events":
        reference_lines = [parse_text_reference(n, text) for n, text in enumerate(lines, 1)]
    else:
        reference_lines = decoded(lines, decode_line_reference)
    expected = outcomes(ReferenceLedger(ref, PEPPER), reference_lines, batch_size)
    ledger = Ledger(fast, PEPPER)
    got = outcomes(ledger, fast_lines(mode, lines, ledger, tmp_path), batch_size)
    assert got == expected
    statuses = {o[1] for o in expected}
    assert statuses == {"APPLIED", "DUPLICATE", "REJECTED"}
    assert sum(o[1] == "REJECTED" and o[3] == "listing_id" for o in expected) > 10
    with ref.read() as a, fast.read() as b:
        assert store_digest(a) == store_digest(b)
        # Every record, exemption and journal entry: msgspec's bytes are json's.
        for name in ("listings", "exemptions", "journal"):
            for _, value in b.txn.cursor(db=fast.dbs[name]):
                assert (
                    dumps(json.loads(value))
                    == json.dumps(json.loads(value), ensure_ascii=False, separators=(",", ":")).encode()
                )
    ref.close()
    fast.close()


def test_a_rejected_event_leaves_nothing_and_its_batch_still_commits(store):
    from conftest import event, feed_lines, list_person, make_ric

    a = make_ric("110105", "19800101", 1)
    lines = feed_lines(
        [
            list_person("L1", a, event_id="1"),
            event("EXTEND", "L1", event_id="2", expires_on="2020-01-01"),  # no fixed end: rejected
            list_person("L1", a, event_id="3"),  # reused listing id: rejected
            event("DELIST", "L1", event_id="4", reason="SETTLED", effective_on="2025-01-01"),
        ]
    )
    got = [(o.status, o.seq) for o in Ledger(store, PEPPER).apply(lines)]
    assert got == [("APPLIED", 1), ("REJECTED", 0), ("REJECTED", 0), ("APPLIED", 2)]
    with store.read() as view:
        assert view.seq() == 2 and view.count("events") == 2 and view.count("journal") == 2
        assert view.counters() == {"active:DISHONEST": 0, "delisted:SETTLED": 1, "persons_restricted": 0}
