"""The typed record decoding of the check path (records.py) against the reference
(json.loads into dicts): every listing and exemption record of stores built from random
feeds of every event type decodes to the same fields, in the same order, and encodes back
to the stored bytes; a record of another shape is never answered from."""

from __future__ import annotations

import json

import pytest
from conftest import PEPPER, feed_lines, list_person, make_ric
from feedgen import hostile_feed
from sanction_service.loaders.feed import decode_line

from sanction_service.checker import Checker, CheckQuery
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import Ledger
from sanction_service.records import RecordUnreadable, decode_exemption, decode_listing, to_builtins
from sanction_service.store import Store, StoreCorrupt, StoreError, dumps


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_typed_records_are_the_reference_records_field_for_field(tmp_path, seed):
    store = Store(tmp_path / "s", pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)
    lines = [
        line
        for n, text in enumerate(hostile_feed(seed, 1500), 1)
        if (line := decode_line(n, text.encode("utf-8", "surrogatepass"))) is not None
    ]
    for _ in Ledger(store, PEPPER).apply(lines):
        pass
    seen = {"listings": 0, "exemptions": 0, "lifted": 0, "corrected": 0, "organizations": 0}
    with store.read() as view:
        for name, decode in (("listings", decode_listing), ("exemptions", decode_exemption)):
            for _, raw in view.txn.cursor(db=store.dbs[name]):
                reference = json.loads(raw)
                typed = decode(raw)
                assert list(to_builtins(typed).items()) == list(reference.items())
                assert dumps(to_builtins(typed)) == raw
                for field, value in reference.items():
                    if field == "persons":
                        assert [list(to_builtins(p).items()) for p in typed.persons] == [list(p.items()) for p in value]
                        assert all(p[k] == v for p, ref in zip(typed.persons, value) for k, v in ref.items())
                    else:
                        assert typed[field] == value and typed.get(field) == value == getattr(typed, field)
                seen[name] += 1
                if name == "listings":
                    seen["lifted"] += typed.status == "LIFTED"
                    seen["corrected"] += len(typed.event_ids) > 1 and typed.status == "ACTIVE"
                    seen["organizations"] += typed.subject_kind == "ORGANIZATION"
        # The typed view reads what the dict view reads.
        lid = next(iter(view.txn.cursor(db=store.listings)))[0].decode()
        assert to_builtins(view.listing_record(lid)) == view.listing(lid)
    store.close()
    assert min(seen.values()) > 10, seen


def test_item_access_is_that_of_the_dicts():
    record = decode_exemption(
        b'{"listing_id":"L","reference":"R","masked":"m","modes":["FLIGHT"],"valid_from":"2025-01-01","valid_to":"2025-02-01"}'
    )
    assert record["reference"] == "R" and record.get("nothing", 7) == 7
    with pytest.raises(KeyError):
        record["nothing"]


@pytest.mark.parametrize("raw", [b'{"listing_id":"L"}', b"not json", b'{"listing_id":1}', b"[]"])
def test_a_record_of_another_shape_is_unreadable(raw):
    with pytest.raises(RecordUnreadable):
        decode_listing(raw)
    with pytest.raises(RecordUnreadable):
        decode_exemption(raw)


def test_a_check_that_finds_an_unreadable_record_fails_closed(tmp_path, store, ledger):
    number = make_ric("110105", "19800101", 7)
    for _ in ledger.apply(feed_lines([list_person("L1", number)])):
        pass
    checker = Checker(store, PEPPER, prefilter_path=tmp_path / "pf", error_rate=0.001)
    checker.warm_up()
    assert checker.check(CheckQuery("RESIDENT_ID", number)).decision.decision == "DENY"
    with store.writing("test"), store.begin_write() as txn:
        record = json.loads(txn.get(b"L1", db=store.listings))
        del record["persons"][0]["kind"]
        txn.put(b"L1", dumps(record), db=store.listings)
    with pytest.raises(StoreCorrupt) as raised:
        checker.check(CheckQuery("RESIDENT_ID", number))
    assert isinstance(raised.value, StoreError) and number not in str(raised.value)
