"""The synthetic feed through the real ledger and checker: zero rejects, and every probe
answered as the generator expects (listed and organisation persons DENY, lifted,
corrected-away and never-listed documents not restricted)."""

from datetime import date

import pytest
from conftest import PEPPER
from sanction_service.loaders import synth

from sanction_service.checker import Checker, CheckQuery
from sanction_service.digest import store_digest
from sanction_service.ledger import APPLIED, FeedLine, Ledger

LISTINGS = 3000


@pytest.fixture
def loaded(store, tmp_path):
    outcomes = list(Ledger(store, PEPPER).apply(FeedLine(i, e) for i, e in enumerate(synth.generate_events(7, LISTINGS), 1)))
    checker = Checker(store, PEPPER, prefilter_path=tmp_path / "p.bloom", error_rate=0.001)
    checker.warm_up()
    return outcomes, checker


def test_synthetic_feed_applies_without_rejects(loaded):
    outcomes, _ = loaded
    assert {o.status for o in outcomes} == {APPLIED}
    assert sum(1 for o in outcomes) > LISTINGS


def test_every_probe_gets_the_expected_answer(loaded):
    _, checker = loaded
    counts = {}
    for probe in synth.generate_probes(7, LISTINGS):
        d = probe["document"]
        day = date.fromisoformat(probe["as_of"]) if probe.get("as_of") else date(2026, 1, 1)
        # The feed's dates are years back and a check may only ask about yesterday to a
        # year ahead, so the check is made as of that day, for travel that day.
        checker.clock = lambda day=day: day
        result = checker.check(CheckQuery(d["type"], d["number"], d.get("country", ""), travel_date=day))
        restricted = probe["expect"] in ("LISTED", "ORG_PERSON")
        assert result.decision.restricted is restricted, probe["expect"]
        assert (result.decision.decision == "DENY") is restricted
        counts[probe["expect"]] = counts.get(probe["expect"], 0) + 1
    assert set(counts) >= {"LISTED", "ORG_PERSON", "LIFTED", "NEVER_LISTED"}


def test_feed_is_idempotent_when_applied_twice(store, loaded):
    with store.read() as view:
        before = store_digest(view)
    again = list(Ledger(store, PEPPER).apply(FeedLine(i, e) for i, e in enumerate(synth.generate_events(7, LISTINGS), 1)))
    assert {o.status for o in again} == {"DUPLICATE"}
    with store.read() as view:
        assert store_digest(view) == before
