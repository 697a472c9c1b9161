"""The fast paths against their references, on large random inputs, byte for byte:
BatchCheckRestriction's columnar answer vs item by item, the batch resident-ID check vs
`normalize`, and the prepared keyed hash vs `document_key`."""

import random
from datetime import timedelta

import numpy as np
import pytest
from conftest import PEPPER, make_ric
from sanction.v1 import restriction_pb2 as pb
from sanction_service.loaders import synth

from sanction_service.checker import Checker, today_in_shanghai
from sanction_service.grpc_api import batch_fast
from sanction_service.grpc_api.restriction import RestrictionServicer
from sanction_service.identity import (
    DocumentType,
    InvalidDocument,
    Keyer,
    canonical_resident_ids,
    document_key,
    normalize,
)
from sanction_service.ledger import FeedLine, Ledger


def random_ric(rnd: random.Random) -> str:
    region = rnd.choice(["110105", "310115", "440305", "510107", "999999"])
    birth = f"{rnd.randint(1930, 2010)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"
    return make_ric(region, birth, rnd.randint(0, 999))


def mutate(number: str, rnd: random.Random) -> str:
    """A valid number, or one of the ways a number is not canonical or not valid."""
    kind = rnd.randrange(12)
    if kind == 0:
        return number[:6] + number[8:17]  # the legacy 15-digit form (often invalid: its own check)
    if kind == 1:
        return number[:17] + number[17].lower()
    if kind == 2:
        return number[:6] + "-" + number[6:14] + " " + number[14:]
    if kind == 3:
        digit = rnd.randrange(17)
        return number[:digit] + str((int(number[digit]) + 1) % 10) + number[digit + 1 :]
    if kind == 4:
        return number[:10] + "13" + number[12:]  # month 13 (check char then wrong too, mostly)
    if kind == 5:
        return number[:17]
    if kind == 6:
        return number + "1"
    if kind == 7:
        return "１" + number[1:]  # a full-width digit: not ASCII
    if kind == 8:
        return ""
    return number


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.store import Store

    path = tmp_path_factory.mktemp("fast")
    store = Store(path / "store", pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)
    today = today_in_shanghai()
    ledger = Ledger(store, PEPPER)
    list(ledger.apply(FeedLine(i, e) for i, e in enumerate(synth.generate_events(4, 3000, start=today), 1)))
    probes = list(synth.generate_probes(4, 3000, start=today))
    listed = [p["document"] for p in probes if p["expect"] in ("LISTED", "ORG_PERSON")]
    checker = Checker(store, PEPPER, prefilter_path=path / "prefilter.bloom", error_rate=0.001)
    checker.warm_up()
    unfiltered = Checker(store, PEPPER, prefilter_path=path / "unused.bloom", error_rate=0.001, use_prefilter=False)
    yield {"checker": checker, "unfiltered": unfiltered, "listed": listed, "today": today}
    store.close()


def random_batch(rnd: random.Random, world: dict, size: int, uniform: bool = False) -> pb.BatchCheckRequest:
    """A batch of every kind of item; `uniform`: the common case of a ticketing system's
    batch, resident IDs only (some listed, some not canonical), one trip, one date, one
    name or none (the fast path's table reading)."""
    if uniform:
        return _uniform_batch(rnd, world, size)
    today = world["today"]
    trips = [
        None,
        pb.Trip(mode=pb.FLIGHT),
        pb.Trip(mode=pb.RAIL, train_number="G1", rail_class=pb.SECOND),
        pb.Trip(mode=pb.RAIL, train_number="D301", rail_class=pb.SECOND),
        pb.Trip(mode=pb.SHIP, ship_class=pb.SHIP_FIRST),
        pb.Trip(mode=pb.RAIL, train_number="K12"),  # a caller error: no class on a non-G train
        pb.Trip(mode=pb.RAIL, train_number="XX"),
        pb.Trip(mode=pb.TRAVEL_MODE_UNSPECIFIED),
    ]
    dates = [
        None,
        today,
        today - timedelta(days=1),
        today - timedelta(days=2),
        today + timedelta(days=366),
        today + timedelta(days=367),
    ]
    common_trip, common_date = rnd.choice(trips), rnd.choice(dates)
    checks = []
    for _ in range(size):
        check = pb.CheckRequest()
        roll = rnd.random()
        if roll < 0.1 and world["listed"]:
            d = rnd.choice(world["listed"])
            check.document.type = pb.DocumentType.Value(d["type"])
            check.document.number = d["number"]
            if d.get("country") and rnd.random() < 0.5:
                check.document.country = d["country"]
        elif roll < 0.8:
            check.document.type = pb.RESIDENT_ID
            check.document.number = mutate(random_ric(rnd), rnd) if rnd.random() < 0.3 else random_ric(rnd)
            if rnd.random() < 0.05:
                check.document.country = rnd.choice(["CHN", "chn", "USA"])
        elif roll < 0.9:
            check.document.type = rnd.choice([pb.PASSPORT, pb.USCC, pb.HK_MACAO_PERMIT])
            check.document.number = rnd.choice(["E12345678", "G1234", "91110000600037341X", "x"])
        elif roll < 0.95:
            if rnd.random() < 0.5:
                check.document.type = 77  # an unknown enum number
                check.document.number = random_ric(rnd)
        else:
            check.document.type = pb.RESIDENT_ID
            check.document.number = random_ric(rnd) * rnd.choice([1, 4])
        name_roll = rnd.random()
        if name_roll < 0.3:
            check.name = rnd.choice(["张伟", "王芳", "ZHANG WEI", "李娜 ", "x" * 127, "x" * 128])
        elif name_roll < 0.33:
            check.name = rnd.choice(["x" * 201, "bad\x07name", "\u2028"])
        trip, day = (common_trip, common_date) if rnd.random() < 0.9 else (rnd.choice(trips), rnd.choice(dates))
        if trip is not None:
            check.trip.CopyFrom(trip)
        if day is not None:
            check.travel_date.CopyFrom(pb.Date(year=day.year, month=day.month, day=day.day))
        checks.append(check)
    # Through the wire format, as the server receives them.
    return pb.BatchCheckRequest.FromString(pb.BatchCheckRequest(checks=checks).SerializeToString())


def mostly_uniform_batch(rnd: random.Random, world: dict, size: int) -> pb.BatchCheckRequest:
    """A uniform batch with a few items of any other kind, some of them plain resident IDs
    with another name (or none): the table is read as a column and the rest item by item."""
    checks = list(_uniform_batch(rnd, world, size).checks)
    for position in range(size):
        if rnd.random() < 0.04:
            checks[position] = random_batch(rnd, world, 1).checks[0]
        elif rnd.random() < 0.02:
            checks[position].name = rnd.choice(["", "王芳", "ZHANG WEI"])
    return pb.BatchCheckRequest.FromString(pb.BatchCheckRequest(checks=checks).SerializeToString())


def _uniform_batch(rnd: random.Random, world: dict, size: int) -> pb.BatchCheckRequest:
    today = world["today"]
    listed = [d["number"] for d in world["listed"] if d["type"] == "RESIDENT_ID"]
    trip = rnd.choice([None, pb.Trip(mode=pb.FLIGHT), pb.Trip(mode=pb.RAIL, train_number="K1")])
    day = rnd.choice([None, today + timedelta(days=rnd.choice([-2, 0, 30]))])
    country, name = rnd.choice(["", "CHN"]), rnd.choice(["", "张伟"])
    checks = []
    for _ in range(size):
        roll = rnd.random()
        number = rnd.choice(listed) if roll < 0.05 else (mutate(random_ric(rnd), rnd) if roll < 0.1 else random_ric(rnd))
        if len(number.encode()) != 18:
            number = random_ric(rnd)
        check = pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=number, country=country), name=name)
        if trip is not None:
            check.trip.CopyFrom(trip)
        if day is not None:
            check.travel_date.CopyFrom(pb.Date(year=day.year, month=day.month, day=day.day))
        checks.append(check)
    return pb.BatchCheckRequest.FromString(pb.BatchCheckRequest(checks=checks).SerializeToString())


@pytest.mark.parametrize("which", ["checker", "unfiltered"])
def test_fast_batch_answers_equal_the_reference_byte_for_byte(world, which):
    servicer = RestrictionServicer(world[which])
    rnd = random.Random(f"fast-{which}")
    items = 0
    never_listed_seen = 0
    for round_ in range(60):
        size = rnd.choice([1, 7, 100, 1000])
        if round_ % 3 == 1:
            request = mostly_uniform_batch(rnd, world, size)
        else:
            request = random_batch(rnd, world, size, uniform=round_ % 3 == 0)
        reference = servicer.reference_batch(request.checks).SerializeToString()
        fast, *_ = batch_fast.answer_batch(world[which], request)
        assert fast == reference, f"round {round_}"
        items += len(request.checks)
        never_listed_seen += sum(
            i.result.decision == pb.ALLOW and not i.result.restricted and not i.result.matches
            for i in pb.BatchCheckResponse.FromString(fast).items
        )
    assert items > 10_000 and never_listed_seen > 3_000


def test_canonical_resident_ids_are_exactly_what_normalize_leaves_unchanged():
    rnd = random.Random(3)
    numbers = [mutate(random_ric(rnd), rnd) for _ in range(30_000)]
    fast = canonical_resident_ids(numbers)
    unchanged = []
    for number in numbers:
        try:
            unchanged.append(normalize(DocumentType.RESIDENT_ID, number).number == number)
        except InvalidDocument:
            unchanged.append(False)
    # Never claims a number normalize would change or refuse; and misses none of the
    # canonical ones (which is what makes the fast path fast).
    assert fast.tolist() == unchanged
    assert 5_000 < int(fast.sum()) < len(numbers)


def test_the_prepared_keyed_hash_equals_document_key():
    rnd = random.Random(5)
    numbers = [random_ric(rnd) for _ in range(5_000)]
    joined = Keyer(PEPPER, DocumentType.RESIDENT_ID).keys([n.encode() for n in numbers])
    keys = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 16)
    assert [bytes(k) for k in keys] == [document_key(PEPPER, normalize(DocumentType.RESIDENT_ID, n)) for n in numbers]
