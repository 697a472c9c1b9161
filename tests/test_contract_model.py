"""The service against a second model of its contract (tests/contract_model.py).

Random feeds of colliding events (seeded) go to the real service and to the model; every
event's outcome (applied / duplicate / rejected, the rejected field where the contract
names it, the sequence number) and, after every chunk of events, thousands of checks
(documents of the pool in several spellings x travel dates around the listings' and
exemptions' edges x trips of every mode, plus caller errors) are compared: the decision,
`restricted`, the set of listings that caused a DENY with their role, organisation name and
case number, and the masked document. Where the contract is silent the model accepts either
answer (contract_model.SILENT).

Driven two ways: the Ledger and the Checker in process on a real LMDB store (now and then a
fresh Checker, its prefilter read back from file or rebuilt), and a real gRPC server fed
through ApplyEvents and asked with BatchCheckRestriction.

One service bug was found by it and fixed (the regression tests at the end): the service did
not treat the documents bound to a person as one person when a listing named the person by a
bound document, nor cover every entry of that person with one exemption.

Standalone, for a long run:
    .venv/bin/python tests/test_contract_model.py --seeds 20 --events 20000 [--grpc] [--first-seed 100]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contract_model as cm  # noqa: E402
from conftest import PEPPER, apply, doc, event, iso, list_org, list_person  # noqa: E402  (and the package path)

from sanction_service.checker import Checker, CheckQuery, today_in_shanghai  # noqa: E402
from sanction_service.feedline import parse_text  # noqa: E402
from sanction_service.identity import pepper_fingerprint  # noqa: E402
from sanction_service.ledger import FeedLine, Ledger  # noqa: E402
from sanction_service.policy import RailClass, ShipClass, TravelMode, Trip  # noqa: E402
from sanction_service.store import Store  # noqa: E402

CHUNK = 250  # events between two rounds of checks
TRIPS_PER_DAY = 6  # besides "no trip" and FLIGHT, for each document and day


# --------------------------------------------------------------------------- the run


@dataclass
class Report:
    events: int = 0
    outcomes_either: int = 0
    decisions: int = 0
    decisions_either: int = 0  # ALLOW or DENY left open
    sets_either: int = 0  # the decision settled, but whether some listing denies (or `restricted`) left open
    errors: int = 0
    disagreements: list = field(default_factory=list)
    hits: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, other: Report) -> None:
        for name in ("events", "outcomes_either", "decisions", "decisions_either", "sets_either", "errors", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.disagreements += other.disagreements
        self.hits.update(other.hits)

    def summary(self) -> str:
        return (
            f"{self.events} events ({self.outcomes_either} with either outcome), {self.decisions} decisions "
            f"compared ({self.decisions_either} either, {self.sets_either} with a listing or `restricted` either, "
            f"{self.errors} caller errors), "
            f"{len(self.disagreements)} disagreements, "
            f"{self.seconds:.1f} s"
        )


def check_plan(model: cm.Model, rnd: random.Random) -> list[tuple[dict, tuple | None, date]]:
    """Documents x days x trips: every document of the pool; yesterday, today, +366 and days
    at the edges of listings, liftings and exemptions; no trip, FLIGHT and a sample of the rest."""
    today = model.today
    low, high = today - timedelta(days=1), today + timedelta(days=366)

    def near(days):
        return sorted({day for day in days if low <= day <= high})

    listing_edges = near(
        edge
        for listing in model.listings.values()
        for day in (listing.listed_on, listing.expires_on, listing.lifted_on)
        if day is not None
        for edge in (day - timedelta(days=1), day)
    )
    recent = [ex for exemptions in model.exemptions.values() for ex in exemptions][-40:]
    exemption_edges = near(
        edge
        for ex in recent
        for edge in (ex.valid_from - timedelta(days=1), ex.valid_from, ex.valid_to, ex.valid_to + timedelta(days=1))
    )
    days = sorted(
        {low, today, high}
        | set(rnd.sample(listing_edges, min(3, len(listing_edges))))
        | set(rnd.sample(exemption_edges, min(3, len(exemption_edges))))
    )
    plan = []
    for document in cm.CHECK_DOCUMENTS:
        for day in days:
            for trip in [None, cm.TRIPS[1]] + rnd.sample(cm.TRIPS[2:], TRIPS_PER_DAY):
                plan.append((document, trip, day))
    for document in cm.CHECK_DOCUMENTS:  # no travel date: today
        plan.append((document, rnd.choice(cm.TRIPS), None))
    for document in rnd.sample(cm.CHECK_DOCUMENTS, 3):  # caller errors: outside the window, malformed trips
        plan += [(document, cm.TRIPS[1], low - timedelta(days=1)), (document, None, high + timedelta(days=1))]
        plan += [(document, trip, today) for trip in cm.BAD_TRIPS]
    plan += [(document, cm.TRIPS[1], today) for document in cm.BAD_DOCUMENTS]
    return plan


def run(system, seed: int, n_events: int, today: date, *, chunk: int = CHUNK, log=None) -> Report:
    """Feed `n_events` random events to `system` and to the model in chunks, comparing every
    outcome, then check the plan after every chunk."""
    report = Report()
    started = time.perf_counter()
    model = cm.Model(today)
    feed = cm.FeedGenerator(seed, today).feed(n_events)
    rnd = random.Random(seed * 7919)
    for start in range(0, n_events, chunk):
        events = feed[start : start + chunk]
        for (i, ev), (status, field_, seq) in zip(enumerate(events, start), system.apply(events)):
            expectation = model.expect_event(ev)
            report.events += 1
            if len(expectation.outcomes) > 1:
                report.outcomes_either += 1
            problem = cm.compare_event(expectation, status, field_, seq, model.seq)
            if problem:
                report.disagreements.append(f"seed {seed} event #{i} {ev}: {problem}")
            if status == cm.APPLIED and expectation.apply is None:
                listing = model.listings.get((cm.decode(ev) or {}).get("listing_id"))
                if listing is not None:
                    listing.murky = True  # the model cannot follow: keep it out of later comparisons
            model.follow(ev, expectation, status)
        version = system.data_version()
        if version is not None and version != model.seq:
            report.disagreements.append(
                f"seed {seed} after event #{start + len(events) - 1}: data version {version}, model {model.seq}"
            )
        plan = check_plan(model, rnd)
        for check, actual in zip(plan, system.check(plan)):
            expectation = model.expect_check(*check)
            report.decisions += 1
            report.errors += expectation.error
            if expectation.decision == "either":
                report.decisions_either += 1
                report.hits.update(expectation.tags)
            elif any(v == cm.MAYBE for v in expectation.deny.values()) or expectation.restricted == cm.MAYBE:
                report.sets_either += 1
            problem = cm.compare_check(expectation, actual)
            if problem:
                doc, trip, day = check
                report.disagreements.append(
                    f"seed {seed} after event #{start + len(events) - 1}: check {doc} trip={trip} "
                    f"day={day} (today {today.isoformat()}): service {actual}, model "
                    f"{expectation.decision} deny={expectation.deny} restricted={expectation.restricted}: {problem}"
                )
        if log:
            log(
                f"seed {seed}: {start + len(events)} events, {report.decisions} decisions, "
                f"{len(report.disagreements)} disagreements"
            )
    report.hits.update(model.hits)
    assert set(report.hits) <= cm.SILENT_NAMES, set(report.hits) - cm.SILENT_NAMES
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------- the two ways in


def _policy_trip(trip: tuple | None) -> Trip | None:
    if trip is None:
        return None
    mode, train, rail_class, ship_class = trip
    return Trip(
        TravelMode(mode),
        train_number=train,
        rail_class=RailClass(rail_class) if rail_class else None,
        ship_class=ShipClass(ship_class) if ship_class else None,
    )


class InProcess:
    """The Ledger and the Checker (the server's pipeline, with its prefilter) on a real LMDB store."""

    def __init__(self, store: Store, prefilter_path: Path, today: date):
        self.store = store
        self.ledger = Ledger(store, PEPPER)
        self.prefilter_path = prefilter_path
        self.today = today
        self.rounds = 0
        self.checker = self._checker()

    def _checker(self) -> Checker:
        checker = Checker(self.store, PEPPER, prefilter_path=self.prefilter_path, error_rate=0.001)
        checker.clock = lambda: self.today
        checker.warm_up()
        return checker

    def apply(self, events: list) -> list[tuple[str, str, int | None]]:
        # An event given as text is a line as a feed file holds it: decoded by the loader's own code.
        lines = [FeedLine(n, ev) if isinstance(ev, dict) else parse_text(n, ev) for n, ev in enumerate(events, 1)]
        return [(o.status, o.field, o.seq) for o in self.ledger.apply(lines)]

    def data_version(self) -> int:
        with self.store.read() as view:
            return view.seq()

    def check(self, plan) -> list:
        # Now and then a checker as after a restart: its prefilter read from the file the last
        # one saved, or rebuilt from the store.
        self.rounds += 1
        if self.rounds % 3 == 0:
            self.checker.save_prefilter()
            if self.rounds % 2 == 0:
                self.prefilter_path.unlink(missing_ok=True)
            self.checker = self._checker()
        queries = [
            CheckQuery(d["type"], d["number"], d.get("country", ""), "", _policy_trip(trip), day) for d, trip, day in plan
        ]
        out = []
        for result in self.checker.check_many(queries):
            if isinstance(result, Exception):
                out.append(cm.ERROR)
            else:
                denying = [o for o in result.decision.matches if o.caused_denial]
                reasons = frozenset(
                    (
                        o.found.listing["listing_id"],
                        o.found.person["role"],
                        (o.found.listing.get("organization_name") or "") if o.found.person["role"] != "SUBJECT" else "",
                        o.found.listing["case_number"],
                    )
                    for o in denying
                )
                out.append(
                    (
                        result.decision.decision,
                        result.decision.restricted,
                        frozenset(o.found.listing["listing_id"] for o in denying),
                        result.masked_document,
                        reasons,
                    )
                )
        return out


class OverGrpc:
    """A real gRPC server: events through ApplyEvents, checks through BatchCheckRestriction.
    An event whose event_id was sent before goes alone, so that the response's counts say
    whether it was applied or a duplicate; runs of new ids go together."""

    def __init__(self, client, service, today: date):
        self.client = client
        self.service = service
        service.checker.clock = lambda: today
        self.sent_ids: set = set()
        self.version = 0

    def apply(self, events: list[dict]) -> list[tuple[str, str, int | None]]:
        out, run = [], []
        for ev in events:
            event_id = (cm.decode(ev) or {}).get("event_id")
            resent = isinstance(event_id, str) and event_id.strip() in self.sent_ids
            if resent:
                out += self._send(run)
                out += self._send([ev])
                run = []
            else:
                run.append(ev)
            if isinstance(event_id, str):
                self.sent_ids.add(event_id.strip())
        return out + self._send(run)

    def _send(self, events: list[dict]) -> list[tuple[str, str, int | None]]:
        if not events:
            return []
        response = self.client.apply_events(events)
        self.version = response.data_version
        rejects = {r.line: r.field for r in response.rejects}
        if len(events) == 1 and not rejects:
            status = cm.APPLIED if response.applied == 1 else cm.DUPLICATE
            return [(status, "", None)]
        assert response.duplicates == 0 and response.applied + response.rejected == len(events), response
        return [(cm.REJECTED, rejects[n], None) if n in rejects else (cm.APPLIED, "", None) for n in range(1, len(events) + 1)]

    def data_version(self) -> int:
        return self.version

    def check(self, plan) -> list:
        from sanction.v1 import restriction_pb2 as pb
        from sanction_service.clients.sanction_client import Passenger, check_request
        from sanction_service.clients.sanction_client import Trip as ClientTrip

        requests = []
        for document, trip, day in plan:
            client_trip = None if trip is None else ClientTrip(trip[0], trip[1], trip[2], "", trip[3])
            passenger = Passenger(document["type"], document["number"], document.get("country", ""))
            requests.append(check_request(passenger, client_trip, day))
        out = []
        for start in range(0, len(requests), 1000):
            response = self.client._checks.BatchCheckRestriction(
                pb.BatchCheckRequest(checks=requests[start : start + 1000]), timeout=30
            )
            for item in response.items:
                if item.HasField("error"):
                    assert item.error.code == 3, item.error  # INVALID_ARGUMENT
                    out.append(cm.ERROR)
                else:
                    r = item.result
                    denying = [m for m in r.matches if m.caused_denial]
                    reasons = frozenset(
                        (m.listing_id, pb.Role.Name(m.role), m.organization_name, m.case_number) for m in denying
                    )
                    out.append(
                        (
                            pb.Decision.Name(r.decision),
                            r.restricted,
                            frozenset(m.listing_id for m in denying),
                            r.masked_document,
                            reasons,
                        )
                    )
        return out


# --------------------------------------------------------------------------- tests


def _assert_clean(report: Report, today: date) -> None:
    if today_in_shanghai() != today:
        pytest.skip("the day changed in Asia/Shanghai during the run")
    print(report.summary())
    assert not report.disagreements, "\n".join(report.disagreements[:20])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_ledger_and_checker_agree_with_the_contract_model(store, tmp_path, seed):
    today = today_in_shanghai()
    report = run(InProcess(store, tmp_path / "prefilter.bloom", today), seed, 2500, today)
    _assert_clean(report, today)
    assert report.decisions > 10_000 and report.events == 2500


def test_a_grpc_server_agrees_with_the_contract_model(service, client):
    today = today_in_shanghai()
    report = run(OverGrpc(client, service, today), 11, 2000, today)
    _assert_clean(report, today)
    assert report.decisions > 5_000


def test_every_silent_place_is_named_once():
    names = [name for name, _ in cm.SILENT]
    assert len(names) == len(set(names)) and all(reason.strip() for _, reason in cm.SILENT)


# --------------------------------------------------------------------------- the service bug it found, fixed
#
# A listing that names a person by a document bound to them (their passport or permit, which a
# listing of theirs put in its extra_documents) restricted only that document: the person's
# resident ID and other bound documents were answered as if it did not exist, an EXEMPT naming the
# person by their resident ID was rejected, and an exemption covered only the entry under the
# document it named. The contract: binding is a fact about the person; a PERSON debtor is
# restricted "under every document bound to them", a bound document "belongs to that person for
# every listing that names the person, as subject or in an organisation role", and an EXEMPT is
# rejected only when its document "does not belong to a person that the listing restricts (under
# any of their bound documents)"; an exemption covers "one person (under every document bound to
# them)".

PERSON = cm.RESIDENTS[3]["number"]
PASSPORT = doc("E87654321", "PASSPORT", "CHN")
PERMIT = doc("C76543210", "HK_MACAO_PERMIT")
USCC = cm.ORGS[0]["number"]
FLIGHT = Trip(TravelMode.FLIGHT)


def _check(checker, document: dict):
    decision = checker.check(
        CheckQuery(document["type"], document["number"], document.get("country", ""), "", FLIGHT, today_in_shanghai())
    ).decision
    return decision.decision, sorted(o.found.listing["listing_id"] for o in decision.matches if o.caused_denial)


def _org_naming(*persons: tuple[str, dict]) -> dict:
    """Organisation O (listed ten days ago) with these (role, document) as its restricted persons."""
    listing = list_org("O", USCC, [], event_id="o", listed_on=iso(-10))
    listing["restricted_persons"] = [{"role": role, "name": "张伟", "document": document} for role, document in persons]
    return listing


def _person_with_bound_documents():
    """Listing A binds the passport and the permit to the person's resident ID; the person then
    performs it, so that A restricts no more (the bindings stay)."""
    return [
        list_person("A", PERSON, extra=[PASSPORT, PERMIT], event_id="a", listed_on=iso(-30)),
        event("PERFORM", "A", event_id="a-performed", performed_on=iso(-1)),
    ]


def test_a_listing_naming_the_bound_passport_restricts_the_resident_id(ledger, checker):
    apply(ledger, *_person_with_bound_documents(), _org_naming(("LEGAL_REPRESENTATIVE", PASSPORT)))
    assert _check(checker, PASSPORT) == ("DENY", ["O"])  # holds
    assert _check(checker, doc(PERSON)) == ("DENY", ["O"])  # the service: ("ALLOW", [])


def test_a_listing_naming_the_bound_passport_restricts_the_other_bound_documents(ledger, checker):
    apply(
        ledger,
        *_person_with_bound_documents(),
        event(
            "LIST",
            "B",
            event_id="b",
            list_type="DISHONEST",
            case_number="(2026)京0105执2号",
            court="北京市朝阳区人民法院",
            listed_on=iso(-10),
            expires_on=None,
            subject={"kind": "PERSON", "name": "张伟", "document": PASSPORT},
        ),
    )
    assert _check(checker, PASSPORT) == ("DENY", ["B"])  # holds
    assert _check(checker, PERMIT) == ("DENY", ["B"])  # the service: ("ALLOW", [])


def test_an_exempt_may_name_the_person_by_resident_id_when_the_listing_names_the_bound_passport(ledger, checker):
    apply(ledger, *_person_with_bound_documents(), _org_naming(("LEGAL_REPRESENTATIVE", PASSPORT)))
    [outcome] = apply(
        ledger,
        event(
            "EXEMPT",
            "O",
            event_id="x",
            document=doc(PERSON),
            modes=["FLIGHT"],
            valid_from=iso(-1),
            valid_to=iso(30),
            reference="(2026)沪0115执567号之一",
        ),
    )
    # The service: REJECTED, field "document", "is not a person restricted by this listing".
    assert (outcome.status, outcome.field) == ("APPLIED", "")
    assert _check(checker, PASSPORT) == ("ALLOW", [])


def test_an_exemption_covers_the_person_named_twice_on_one_listing(ledger, checker):
    apply(
        ledger,
        *_person_with_bound_documents(),
        _org_naming(("LEGAL_REPRESENTATIVE", doc(PERSON)), ("PRINCIPAL", PASSPORT)),
        event(
            "EXEMPT",
            "O",
            event_id="x",
            document=PASSPORT,
            modes=["FLIGHT"],
            valid_from=iso(-1),
            valid_to=iso(30),
            reference="(2026)沪0115执567号之一",
        ),
    )
    assert _check(checker, doc(PERSON)) == ("ALLOW", [])  # the service: ("DENY", ["O"])
    assert _check(checker, PASSPORT) == ("ALLOW", [])  # the service: ("DENY", ["O"]) as well


def test_the_model_expects_what_the_regression_tests_assert():
    """The regression tests above, through the model: it answers what they assert."""

    def model_after(*events) -> cm.Model:
        model = cm.Model(today_in_shanghai())
        for ev in events:
            expectation = model.expect_event(ev)
            status = cm.APPLIED if cm.APPLIED in expectation.outcomes else cm.REJECTED
            model.follow(ev, expectation, status)
        return model

    def answer(model, document):
        expectation = model.expect_check(document, cm.TRIPS[1], None)
        return expectation.decision, sorted(expectation.deny)

    base = _person_with_bound_documents()
    model = model_after(*base, _org_naming(("LEGAL_REPRESENTATIVE", PASSPORT)))
    assert answer(model, PASSPORT) == answer(model, doc(PERSON)) == ("DENY", ["O"])
    exempt = event(
        "EXEMPT",
        "O",
        event_id="x",
        document=doc(PERSON),
        modes=["FLIGHT"],
        valid_from=iso(-1),
        valid_to=iso(30),
        reference="(2026)沪0115执567号之一",
    )
    assert model.expect_event(exempt).outcomes == {cm.APPLIED}
    model.follow(exempt, model.expect_event(exempt), cm.APPLIED)
    assert answer(model, PASSPORT) == ("ALLOW", [])

    lb = event(
        "LIST",
        "B",
        event_id="b",
        list_type="DISHONEST",
        case_number="(2026)京0105执2号",
        court="北京市朝阳区人民法院",
        listed_on=iso(-10),
        expires_on=None,
        subject={"kind": "PERSON", "name": "张伟", "document": PASSPORT},
    )
    assert answer(model_after(*base, lb), PERMIT) == ("DENY", ["B"])

    model = model_after(
        *base,
        _org_naming(("LEGAL_REPRESENTATIVE", doc(PERSON)), ("PRINCIPAL", PASSPORT)),
        event(
            "EXEMPT",
            "O",
            event_id="x",
            document=PASSPORT,
            modes=["FLIGHT"],
            valid_from=iso(-1),
            valid_to=iso(30),
            reference="(2026)沪0115执567号之一",
        ),
    )
    assert answer(model, doc(PERSON)) == answer(model, PASSPORT) == ("ALLOW", [])
    # And the comparison has teeth: the resident ID flying on listing A in force is a disagreement.
    model = model_after(list_person("A", PERSON, extra=[PASSPORT], event_id="a", listed_on=iso(-30)))
    assert cm.compare_check(
        model.expect_check(doc(PERSON), cm.TRIPS[1], None),
        ("ALLOW", True, frozenset(), cm.mask(cm.norm(doc(PERSON))), frozenset()),
    )


# --------------------------------------------------------------------------- standalone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--chunk", type=int, default=CHUNK)
    parser.add_argument("--grpc", action="store_true", help="through a real gRPC server instead of in process")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    total = Report()
    log = None if args.quiet else lambda line: print(line, flush=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        today = today_in_shanghai()
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store", pepper_fingerprint(PEPPER), create=True, map_size=1 << 30)
            try:
                if args.grpc:
                    report = _run_grpc(store, seed, args, today, log)
                else:
                    report = run(
                        InProcess(store, Path(tmp) / "prefilter.bloom", today),
                        seed,
                        args.events,
                        today,
                        chunk=args.chunk,
                        log=log,
                    )
            finally:
                store.close()
        print(f"seed {seed}: {report.summary()}", flush=True)
        for line in report.disagreements[:10]:
            print("  " + line)
        total.add(report)
    print(f"total: {total.summary()}")
    print("answers left open by the contract: " + ", ".join(f"{k} {v}" for k, v in total.hits.most_common()))
    return 1 if total.disagreements else 0


def _run_grpc(store, seed, args, today, log) -> Report:
    from sanction_service.clients.sanction_client import RestrictionClient

    from sanction_service.grpc_api.server import build_service
    from sanction_service.settings import Settings

    settings = Settings(data_dir=str(store.path), listen="127.0.0.1:0", metrics_port=0)
    svc = build_service(settings, store=store, pepper=PEPPER)
    svc.server.start()
    try:
        svc.warm_up()
        with RestrictionClient(f"127.0.0.1:{svc.port}", timeout=5) as client:
            return run(OverGrpc(client, svc, today), seed, args.events, today, chunk=args.chunk, log=log)
    finally:
        svc.server.stop(0).wait()


if __name__ == "__main__":
    sys.exit(main())
