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
        fast, *_ = batch_fast.answer_batch(world[which], request.SerializeToString())
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


# ---------------------------------------------------------------- the client's own bytes
#
# BatchCheckRestriction and CheckRestriction take the request as the client sent it: the
# fast readings must answer exactly as a parse of those bytes would, whatever a client
# writes, or leave the request to the reference. Protobuf accepts bytes that no library
# writes: fields repeated (a parse keeps the last, or merges messages), out of order,
# unknown fields; and refuses some that look alike (invalid UTF-8 in a string).

_TRIP_FIELD = pb.CheckRequest(trip=pb.Trip(mode=pb.RAIL, train_number="G1", rail_class=pb.SECOND)).SerializeToString()
_DOCUMENT_FIELD = pb.CheckRequest(document=pb.Document(type=pb.PASSPORT, number="E12345678")).SerializeToString()
_NAME_FIELD = pb.CheckRequest(name="王芳").SerializeToString()
_UNKNOWN_FIELD = b"\xf8\x07\x01"  # field 127, varint 1: unknown to CheckRequest


def hostile_item(raw: bytes, rnd: random.Random) -> bytes:
    """One serialized CheckRequest, left alone or changed the ways a hand-written client
    or an attacker could: a later field overriding an earlier one, unknown fields, bad
    UTF-8, truncation."""
    kind = rnd.randrange(9)
    if kind == 0:
        return raw + _TRIP_FIELD  # a second trip: merged into the first by a parse
    if kind == 1:
        return raw + _DOCUMENT_FIELD  # a second document: its fields replace the first's
    if kind == 2:
        return raw + _NAME_FIELD  # a second name: the last one wins
    if kind == 3:
        return raw + _UNKNOWN_FIELD
    if kind == 4 and b"\x12" in raw:
        at = raw.index(b"\x12")  # the name's tag, when there is one
        return raw[: at + 2] + b"\xff" + raw[at + 3 :] if len(raw) > at + 2 and raw[at + 1] else raw
    if kind == 5:
        return raw[: rnd.randrange(len(raw) + 1)]
    if kind == 6:
        return _TRIP_FIELD + raw  # the trip written before the document
    return raw


def _item_bytes(item: bytes) -> bytes:
    """`item` as one element of BatchCheckRequest.checks (field 1, length-delimited)."""
    from google.protobuf.internal.encoder import _VarintBytes

    return b"\x0a" + _VarintBytes(len(item)) + item


def _parsed_or_none(message_class, raw: bytes):
    from google.protobuf.message import DecodeError

    try:
        return message_class.FromString(raw)
    except DecodeError:
        return None


@pytest.mark.parametrize("which", ["checker", "unfiltered"])
def test_batches_read_from_the_clients_bytes_answer_as_a_parse_of_them(world, which):
    rnd = random.Random(f"client-bytes-{which}")
    fast_tables = 0
    for round_ in range(80):
        base = _uniform_batch(rnd, world, rnd.choice([1, 5, 100]))
        items = [c.SerializeToString() for c in base.checks]
        if round_ % 2:  # the same change to every item: still one table
            changed = hostile_item(items[0], rnd)
            suffix = changed[len(items[0]) :] if changed.startswith(items[0]) else b""
            items = [i + suffix for i in items]
        else:
            items = [hostile_item(i, rnd) if rnd.random() < 0.2 else i for i in items]
        raw = b"".join(_item_bytes(i) for i in items)
        fast_tables += batch_fast._client_table(raw) is not None
        _check_batch_bytes(world, which, raw, f"round {round_}")
    assert fast_tables > 20  # the unchanged and harmless ones were read as tables


@pytest.mark.parametrize("which", ["checker", "unfiltered"])
def test_unary_checks_read_from_the_clients_bytes_answer_as_the_reference(world, which):
    rnd = random.Random(f"unary-{which}")
    answered_fast = 0
    for i in range(3000):
        check = rnd.choice([random_batch(rnd, world, 1), _uniform_batch(rnd, world, 1)]).checks[0]
        raw = hostile_item(check.SerializeToString(), rnd) if rnd.random() < 0.3 else check.SerializeToString()
        answered_fast += _check_unary_bytes(world, which, raw, f"check {i}")
    assert answered_fast > 800


def _varint(value: int, width: int | None = None) -> bytes:
    """`value` as a varint, padded to `width` bytes (an over-long but valid encoding)."""
    from google.protobuf.internal.encoder import _VarintBytes

    minimal = _VarintBytes(value)
    if width is None or width <= len(minimal):
        return minimal
    groups = [(value >> (7 * i)) & 0x7F for i in range(width)]
    return bytes(g | 0x80 for g in groups[:-1]) + bytes(groups[-1:])


def _nested_groups(depth: int, field: int = 15) -> bytes:
    return _varint(field << 3 | 3) * depth + _varint(field << 3 | 4) * depth


def _crafted_items(world) -> list[tuple[str, list[bytes]]]:
    """(what, the items' bytes): each a table of the common shape, changed in one way."""
    listed = next(d["number"] for d in world["listed"] if d["type"] == "RESIDENT_ID" and len(d["number"]) == 18)
    numbers = [listed, make_ric("110105", "19800101", 1), make_ric("310115", "19900202", 2)]
    doc = {c: batch_fast._document_shape(c) for c in ("", "CHN")}
    flight = pb.CheckRequest(trip=pb.Trip(mode=pb.FLIGHT)).SerializeToString()
    date = pb.CheckRequest(travel_date=pb.Date(year=2026, month=1, day=2)).SerializeToString()

    def items(rest: bytes = flight, country: str = "", head=None) -> list[bytes]:
        before, after = doc[country]
        return [(head or before) + n.encode() + after + rest for n in numbers]

    name = lambda text, length=None: b"\x12" + (length or _varint(len(text.encode()))) + text.encode()  # noqa: E731
    cases = [
        ("plain", items()),
        ("CHN", items(country="CHN")),
        ("name 127 bytes", items(name("x" * 127) + flight)),
        ("name 128 bytes", items(name("x" * 128) + flight)),
        ("name of 3-byte chars, 129 bytes", items(name("张" * 43) + flight)),
        ("name length over-long", items(name("ZHANG", _varint(5, 2)) + flight)),
        ("name tag over-long", items(b"\x92\x00\x05ZHANG" + flight)),
        ("empty name written", items(b"\x12\x00" + flight)),
        ("empty name after the trip", items(flight + b"\x12\x00")),
        ("name then empty name", items(name("ZHANG") + flight + b"\x12\x00")),
        ("name surrogate", items(b"\x12\x03\xed\xa0\x80" + flight)),
        ("name over-long NUL", items(b"\x12\x02\xc0\x80" + flight)),
        ("name beyond U+10FFFF", items(b"\x12\x04\xf4\x90\x80\x80" + flight)),
        ("name U+FFFF", items(b"\x12\x03\xef\xbf\xbf" + flight)),
        ("name NUL", items(b"\x12\x01\x00" + flight)),
        ("trip mode 0 written", items(b"\x1a\x02\x08\x00")),
        ("empty trip", items(b"\x1a\x00")),
        ("empty date", items(b"\x22\x00")),
        ("trip mode out of range", items(b"\x1a\x02\x08\x63")),
        ("rail class out of range", items(b"\x1a\x06\x08\x02\x12\x02G1\x18\x63")),
        ("trip length over-long", items(b"\x1a\x82\x00\x08\x01")),
        ("trip tag over-long", items(b"\x9a\x00\x02\x08\x01")),
        ("trip mode 10-byte varint", items(b"\x1a\x0b\x08" + _varint(1, 10))),
        ("date year negative", items(pb.CheckRequest(travel_date=pb.Date(year=-1, month=1, day=1)).SerializeToString())),
        ("date year 5-byte negative", items(b"\x22\x0a\x08\xff\xff\xff\xff\x0f\x10\x01\x18\x01")),
        ("date then trip", items(date + flight)),
        ("trip then date", items(flight + date)),
        ("document field as varint", items(flight + b"\x08\x01")),
        ("name field as varint", items(flight + b"\x10\x01")),
        ("trip field as varint", items(b"\x18\x01")),
        ("document again, empty", items(flight + b"\x0a\x00")),
        ("document tag over-long", items(flight + b"\x8a\x00\x00")),
        ("document again, type 0", items(flight + b"\x0a\x02\x08\x00")),
        ("unknown group", items(flight + b"\x7b\x08\x01\x7c")),
        ("unknown groups 90 deep", items(flight + _nested_groups(90))),
        ("unknown groups 99 deep", items(flight + _nested_groups(99))),
        ("unknown groups 100 deep", items(flight + _nested_groups(100))),
        ("unknown groups in the trip 98 deep", items(b"\x1a" + _varint(2 + 2 * 98) + b"\x08\x01" + _nested_groups(98))),
        ("unknown groups in the trip 99 deep", items(b"\x1a" + _varint(2 + 2 * 99) + b"\x08\x01" + _nested_groups(99))),
        ("unmatched end group", items(flight + b"\x7c")),
        ("field number 0", items(flight + b"\x00\x01")),
        ("field number 2^29", items(flight + _varint((1 << 29) << 3) + b"\x01")),
        ("unknown fixed64", items(flight + b"\x79" + bytes(8))),
        ("unknown fixed32 cut short", items(flight + b"\x7d\x01")),
        ("wire type 6", items(flight + b"\x7e")),
        ("unknown field 3 bytes", items(flight + b"\xf8\x07\x01")),
        ("document type over-long", items(head=b"\x0a\x17\x08\x81\x00\x12\x12")),
        ("document with unknown field", [b"\x0a\x18\x08\x01\x12\x12" + n.encode() + b"\x78\x01" + flight for n in numbers]),
        ("number before type", [b"\x0a\x16\x12\x12" + n.encode() + b"\x08\x01" + flight for n in numbers]),
        ("country chn", [i.replace(b"CHN", b"chn") for i in items(country="CHN")]),
        ("country written empty", [b"\x0a\x18\x08\x01\x12\x12" + n.encode() + b"\x1a\x00" + flight for n in numbers]),
        ("number with a newline", [i.replace(numbers[0].encode()[:6], b"\n\x12\x12\x0a\x16\x08") for i in items()]),
        ("number with byte 0xff", [i.replace(numbers[1].encode()[:2], b"\xff\xfe") for i in items()]),
        ("number of full-width digits cut", [i.replace(numbers[2].encode()[:3], "１".encode()) for i in items()]),
    ]
    return cases


def _frames(items: list[bytes], length_width: int | None = None, tag: bytes = b"\x0a") -> bytes:
    return b"".join(tag + _varint(len(i), length_width) + i for i in items)


def _check_batch_bytes(world, which, raw: bytes, what: str) -> None:
    from google.protobuf.message import DecodeError

    parsed = _parsed_or_none(pb.BatchCheckRequest, raw)
    if parsed is None:
        with pytest.raises(DecodeError):
            batch_fast.answer_batch(world[which], raw)
        return
    reference = RestrictionServicer(world[which]).reference_batch(parsed.checks).SerializeToString()
    fast = batch_fast.answer_batch(world[which], raw)
    if len(parsed.checks) > batch_fast.MAX_BATCH:
        assert fast == batch_fast.too_many_checks(), what
    else:
        assert fast[0] == reference, what


def _check_unary_bytes(world, which, raw: bytes, what: str) -> bool:
    """Whether CheckRestriction's fast reading answered `raw`; when it did, as the
    reference answers a parse of it."""
    from google.rpc import status_pb2

    from sanction_service.grpc_api import unary_fast

    fast = unary_fast.answer_check(world[which], raw)
    if fast is None:
        return False  # the reference answers it (CheckRestriction parses it then)
    parsed = _parsed_or_none(pb.CheckRequest, raw)
    assert parsed is not None, f"{what}: answered bytes that are no CheckRequest"
    outcome = RestrictionServicer(world[which])._answer([parsed])
    reference = outcome if isinstance(outcome, status_pb2.Status) else outcome[0][0]
    if isinstance(fast, status_pb2.Status):
        assert fast == reference, what
    else:
        assert fast[0] == reference.SerializeToString(), what
    return True


@pytest.mark.parametrize("which", ["checker", "unfiltered"])
def test_crafted_batches_answer_as_a_parse_of_them(world, which):
    for what, items in _crafted_items(world):
        for framing, raw in [
            ("", _frames(items)),
            ("; item lengths over-long", _frames(items, 2)),
            ("; item lengths 3 bytes", _frames(items, 3)),
            ("; item tags over-long", _frames(items, tag=b"\x8a\x00")),
            ("; one row framed otherwise", _frames(items[:1], 2) + _frames(items[1:])),
            ("; one row twice", _frames(items + items[:1])),
            ("; a row cut short", _frames(items) + _frames(items[:1])[:-3]),
            ("; a row's length says one byte more", _frames(items) + b"\x0a" + _varint(len(items[0]) + 1) + items[0]),
            ("; trailing byte", _frames(items) + b"\x00"),
            ("; 1001 rows", _frames(items * 334)[: -len(_frames(items[:1]))]),
            ("; 3000 rows", _frames(items * 1000)),
        ]:
            _check_batch_bytes(world, which, raw, what + framing)
    for raw in [b"", b"\x0a", b"\x0a\x00", b"\x0a\x80\x00", b"\x0a\x00" * 5]:
        _check_batch_bytes(world, which, raw, repr(raw))


@pytest.mark.parametrize("which", ["checker", "unfiltered"])
def test_crafted_unary_checks_answer_as_a_parse_of_them(world, which):
    answered = 0
    for what, items in _crafted_items(world):
        for raw in items + [items[0][:cut] for cut in range(len(items[0]))]:
            answered += _check_unary_bytes(world, which, raw, what)
    assert answered > 50


def test_the_trip_and_date_cache_holds_no_large_client_bytes():
    # A CheckRestriction may carry megabytes of unknown fields after the name: read, but
    # not kept (a thousand of them kept were gigabytes).
    trip = pb.CheckRequest(trip=pb.Trip(mode=pb.FLIGHT)).SerializeToString()
    large = trip + b"\x7a" + _varint(1 << 20) + bytes(1 << 20)  # field 15, 1 MiB: unknown
    small = trip + b"\x7a\x01\x00"
    assert batch_fast.shared_fields(large).trip.mode == pb.FLIGHT
    assert batch_fast.shared_fields(small).trip.mode == pb.FLIGHT
    assert small in batch_fast._SHARED and large not in batch_fast._SHARED


@pytest.mark.parametrize("which", ["checker"])
def test_client_bytes_with_random_byte_damage_answer_as_a_parse_of_them(world, which):
    # Any byte of a table or a check changed, dropped or doubled: answered as a parse of
    # the result answers it, or refused as that parse refuses it.
    rnd = random.Random("byte-damage")
    cases = _crafted_items(world)
    tables = fast_checks = 0
    for _ in range(2000):
        what, items = rnd.choice(cases)
        raw = bytearray(_frames(items) if rnd.random() < 0.5 else rnd.choice(items))
        for _ in range(rnd.choice([1, 1, 2, 3])):
            at = rnd.randrange(len(raw))
            kind = rnd.randrange(4)
            if kind == 0:
                raw[at] = rnd.randrange(256)
            elif kind == 1:
                raw[at] ^= 1 << rnd.randrange(8)
            elif kind == 2:
                del raw[at]
            else:
                raw[at:at] = raw[at : at + 1]
        raw = bytes(raw)
        tables += batch_fast._client_table(raw) is not None
        _check_batch_bytes(world, which, raw, f"{what}: {raw!r}")
        fast_checks += _check_unary_bytes(world, which, raw, f"{what}: {raw!r}")
    assert tables > 0 and fast_checks > 0


@pytest.mark.parametrize("which", ["checker"])
def test_tables_of_random_fields_answer_as_a_parse_of_them(world, which):
    # Rows of the common document followed by fields drawn from what a client could write
    # (names, trips, dates, repeated, empty, unknown, mistyped, grouped): answered as a
    # parse of the same bytes answers them.
    rnd = random.Random("random-fields")
    listed = next(d["number"] for d in world["listed"] if d["type"] == "RESIDENT_ID" and len(d["number"]) == 18)
    numbers = [listed, make_ric("110105", "19800101", 1)]
    pool = [
        b"\x12\x05ZHANG",
        "\x12\x06王芳".encode(),
        b"\x12\x00",
        b"\x12\x01\x00",
        b"\x92\x00\x01Z",
        b"\x1a\x02\x08\x01",
        b"\x1a\x00",
        b"\x1a\x06\x08\x02\x12\x02K1",
        b"\x1a\x02\x08\x00",
        b"\x1a\x02\x08\x63",
        b"\x1a\x04\x08\x02\x18\x04",
        b"\x22\x06\x08\xea\x0f\x10\x01\x18\x02",
        b"\x22\x00",
        b"\x22\x02\x10\x0d",
        b"\x0a\x00",
        b"\x0a\x02\x08\x03",
        b"\x0a\x03\x1a\x01X",
        b"\x08\x01",
        b"\x10\x02",
        b"\x18\x03",
        b"\x20\x04",
        b"\x7b\x7c",
        b"\x0b\x0c",
        b"\x13\x08\x01\x14",
        b"\x1b\x1c",
        b"\x7a\x00",
        b"\xf8\x07\x01",
        b"\x79" + bytes(8),
        b"\x1d" + bytes(4),
        b"\x25\x01\x02\x03\x04",
    ]
    answered = 0
    for _ in range(2000):
        rest = b"".join(rnd.choice(pool) for _ in range(rnd.choice([0, 1, 1, 2, 2, 3, 4])))
        country = rnd.choice(["", "", "CHN"])
        before, after = batch_fast._document_shape(country)
        items = [before + n.encode() + after + rest for n in numbers]
        raw = _frames(items)
        answered += batch_fast._client_table(raw) is not None
        _check_batch_bytes(world, which, raw, repr(raw))
        answered += _check_unary_bytes(world, which, items[0], repr(items[0]))
    assert answered > 0
