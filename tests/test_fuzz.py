"""Fuzz the gRPC request path with random and mutated messages, and with hypothesis-built
messages whose every field takes arbitrary values: the server never crashes, never
answers anything but a decision or INVALID_ARGUMENT naming a field, and never answers
ALLOW to a request that, decoded, asks about the listed person for a restricted purchase."""

import random
from datetime import date, timedelta

import grpc
from conftest import apply, day, list_person, make_ric
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, Trip, check_request, error_from_rpc

from sanction_service.identity import DocumentType, InvalidDocument, normalize
from sanction_service.policy import InvalidTrip, RailClass, ShipClass, TravelMode, purchase_is_restricted
from sanction_service.policy import Trip as DomainTrip

LISTED = make_ric("110105", "19800101", 123)
ACCEPTED_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK}


def seeds():
    yield check_request(Passenger("RESIDENT_ID", LISTED), Trip("FLIGHT"), day())
    yield check_request(Passenger("RESIDENT_ID", LISTED), Trip("RAIL", "G12", "SECOND"), day(30))
    yield check_request(Passenger("RESIDENT_ID", LISTED), Trip("SHIP", ship_class="FIRST"))
    yield check_request(Passenger("RESIDENT_ID", LISTED[:6] + LISTED[8:17]))  # legacy 15-digit form
    yield check_request(Passenger("PASSPORT", "E12345678", "CHN", "张伟"), Trip("RAIL", "D1", "FIRST"))


def mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        if op < 0.4 and buf:
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
        elif op < 0.6 and buf:
            del buf[rnd.randrange(len(buf))]
        elif op < 0.8:
            buf.insert(rnd.randrange(len(buf) + 1), rnd.randrange(256))
        else:
            i = rnd.randrange(len(buf) + 1)
            buf[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
    return bytes(buf)


def random_request(rnd: random.Random) -> bytes:
    """A structurally valid message with random, often hostile, field values."""
    numbers = [
        LISTED,
        LISTED.lower(),
        f" {LISTED[:6]}-{LISTED[6:]} ",
        LISTED[:6] + LISTED[8:17],
        LISTED[:17],
        "".join(rnd.choice("0123456789X") for _ in range(rnd.randint(0, 20))),
        "",
        "\u0000" * 3,
    ]
    # Names over the 200-character bound are refused (tests/test_bad_input.py): this fuzz
    # wants requests that reach a decision, so it stays at the bound.
    request = pb.CheckRequest(name=rnd.choice(["", "张伟", "x" * 200]))
    request.document.type = pb.RESIDENT_ID if rnd.random() < 0.7 else rnd.randint(0, 8)
    request.document.number = rnd.choice(numbers)
    request.document.country = rnd.choice(["", "CHN", "USA", "??"])
    if rnd.random() < 0.8:
        request.trip.mode = rnd.choice([1, 1, 1, 2, 2, 2, 3, 3, 0, 4])
        request.trip.train_number = rnd.choice(["G1", "g12", "D301", "C5", "K1", "1461", "X9", "", "G12345"])
        request.trip.rail_class = rnd.choice([rnd.randint(1, 10)] * 8 + [0, 12])
        request.trip.ship_class = rnd.choice([rnd.randint(1, 6)] * 8 + [0, 9])
        request.trip.cabin = rnd.choice(["", "Y", "F"])
    if rnd.random() < 0.3:
        # Around the window a check may ask about (yesterday .. today + 366) and its edges.
        travel = day(rnd.choice([-2, -1, -1, 0, 0, 1, 7, 365, 366, 366, 367, rnd.randint(-10, 400)]))
        request.travel_date.year, request.travel_date.month, request.travel_date.day = (travel.year, travel.month, travel.day)
    elif rnd.random() < 0.3:
        today = day()
        request.travel_date.year = rnd.choice([0, 1, 1970, today.year - 1, today.year, today.year + 1, 9999, 10000])
        request.travel_date.month = rnd.choice([rnd.randint(1, 12)] * 8 + [0, 13])
        request.travel_date.day = rnd.choice([rnd.randint(1, 28)] * 8 + [0, 32])
    return request.SerializeToString()


def travel_date_out_of_window(request: pb.CheckRequest) -> bool:
    """True when the request names a real date before yesterday or over 366 days ahead."""
    if not request.HasField("travel_date"):
        return False
    try:
        travel = date(request.travel_date.year, request.travel_date.month, request.travel_date.day)
    except ValueError:
        return False
    today = day()
    return not today - timedelta(days=1) <= travel <= today + timedelta(days=366)


def must_deny(request: pb.CheckRequest) -> bool:
    """True when the decoded request asks about the listed person for a restricted purchase."""
    if request.document.type != pb.RESIDENT_ID:
        return False
    try:
        if normalize(DocumentType.RESIDENT_ID, request.document.number).number != LISTED:
            return False
    except InvalidDocument:
        return False
    if request.HasField("travel_date"):
        try:
            date(request.travel_date.year, request.travel_date.month, request.travel_date.day)
        except ValueError:
            return False
        if travel_date_out_of_window(request):
            return False
    if not request.HasField("trip"):
        return True
    t = request.trip
    try:
        trip = DomainTrip(
            TravelMode(pb.TravelMode.Name(t.mode)),
            t.train_number,
            RailClass(pb.RailClass.Name(t.rail_class)) if t.rail_class else None,
            t.cabin,
            ShipClass(pb.ShipClass.Name(t.ship_class).removeprefix("SHIP_")) if t.ship_class else None,
        )
        return purchase_is_restricted(trip)
    except (ValueError, InvalidTrip):
        return False


def _decoded(data: bytes) -> pb.CheckRequest | None:
    try:
        return pb.CheckRequest.FromString(data)
    except Exception:
        return None


def test_fuzzed_requests_never_crash_the_server_or_allow_the_listed_person(ledger, client, service):
    apply(ledger, list_person("L1", LISTED, listed_on="2024-01-01"))
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    call = channel.unary_unary(
        "/sanction.v1.RestrictionService/CheckRestriction",
        request_serializer=lambda b: b,
        response_deserializer=pb.CheckResponse.FromString,
    )
    rnd = random.Random(20261124)
    corpus = [s.SerializeToString() for s in seeds()]
    corpus += [bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 64))) for _ in range(50)]
    answered = denied_listed = out_of_window = 0
    for i in range(2000):
        if i < len(corpus):
            data = corpus[i]
        elif i % 2:
            data = random_request(rnd)
        else:
            data = mutate(rnd.choice(corpus), rnd)
        try:
            response, rpc = call.with_call(data, timeout=5)
            code = rpc.code()
        except grpc.RpcError as exc:
            code, response = exc.code(), None
        assert code in ACCEPTED_CODES, code
        decoded = _decoded(data)
        if decoded is None:
            # Bytes that are no CheckRequest: a caller error naming the request, never an answer.
            assert code == grpc.StatusCode.INVALID_ARGUMENT and response is None
            continue
        if travel_date_out_of_window(decoded):
            assert response is None and code == grpc.StatusCode.INVALID_ARGUMENT, "answered for an implausible date"
            out_of_window += 1
        if response is None:
            continue
        answered += 1
        assert response.decision in (pb.ALLOW, pb.DENY)
        if must_deny(decoded):
            assert response.decision == pb.DENY, "ALLOW for the listed person"
            denied_listed += 1
    assert answered > 100 and denied_listed > 20 and out_of_window > 20  # the fuzz really exercised each path
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


CHECK_EXAMPLES = 300
REQUEST_FIELDS = {
    "document",
    "document.type",
    "document.number",
    "document.country",
    "name",
    "trip.mode",
    "trip.train_number",
    "trip.rail_class",
    "trip.ship_class",
    "travel_date",
}
texts = st.one_of(
    st.text(max_size=24),  # control characters included
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "张伟",
            "x" * 200,
            "x" * 201,
            "CHN",
            "USA",
            "chn",
            "??",
            "G1",
            "D301",
            "K1",
            "Y",
            "\u2028",
            "\U0001f600" * 70,
        ]
    ),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "1", "字", "\t"]), st.integers(60, 100_000)),
)


def mostly(valid, hostile):
    """`valid` four times in five, else `hostile`: each field of a request is hostile on
    its own often enough, and a fifth of the requests still reach a decision."""
    return st.integers(0, 4).flatmap(lambda k: hostile if k == 0 else valid)


any_int32 = st.integers(-(2**31), 2**31 - 1)
listed_forms = st.sampled_from([LISTED, LISTED.lower(), f" {LISTED[:6]}-{LISTED[6:]} ", LISTED[:6] + LISTED[8:17]])
documents = mostly(
    st.one_of(
        st.tuples(st.just(pb.RESIDENT_ID), listed_forms, st.sampled_from(["", "CHN", "chn"])),
        st.tuples(st.just(pb.RESIDENT_ID), st.just(make_ric("440305", "19900909", 88)), st.just("")),
        st.tuples(st.just(pb.PASSPORT), st.just("E12345678"), st.sampled_from(["", "USA"])),
    ),
    st.tuples(
        st.integers(0, 7) | any_int32,
        st.one_of(listed_forms, texts, st.sampled_from([LISTED[:17], LISTED + "0"])),
        st.sampled_from(["", "CHN"]) | texts,
    ),
)
names = mostly(st.sampled_from(["", "张伟", "李四", "x" * 200]), texts)
trips = mostly(
    st.one_of(
        st.none(),
        st.just(pb.Trip(mode=pb.FLIGHT)),
        st.builds(
            lambda train, cls: pb.Trip(mode=pb.RAIL, train_number=train, rail_class=cls),
            st.sampled_from(["G1", "g12", "D301", "C5", "K1", "Z9", "1461"]),
            st.integers(1, 10),
        ),
        st.builds(lambda cls: pb.Trip(mode=pb.SHIP, ship_class=cls), st.integers(1, 6)),
    ),
    st.builds(
        pb.Trip,
        mode=st.integers(0, 5) | any_int32,
        rail_class=st.integers(0, 12) | any_int32,
        ship_class=st.integers(0, 8) | any_int32,
        cabin=texts,
        train_number=st.sampled_from(["G1", "D301", "K1", "X9", "G12345"]) | texts,
    ),
)


def in_days(offset: int) -> pb.Date:
    travel = day(offset)
    return pb.Date(year=travel.year, month=travel.month, day=travel.day)


travel_dates = mostly(
    st.none() | st.builds(in_days, st.sampled_from([-1, 0, 366]) | st.integers(-1, 366)),
    st.builds(in_days, st.sampled_from([-2, 367]) | st.integers(-800, 800))
    | st.builds(pb.Date, year=st.integers(0, 10_001), month=st.integers(0, 13), day=st.integers(0, 32)),
)
check_requests = st.builds(
    lambda document, name, trip, travel: pb.CheckRequest(
        document=pb.Document(type=document[0], number=document[1], country=document[2]),
        name=name,
        trip=trip,
        travel_date=travel,
    ),
    documents,
    names,
    trips,
    travel_dates,
)


@settings(
    max_examples=CHECK_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=check_requests)
def test_any_check_request_is_a_decision_or_invalid_argument_naming_a_field(ledger, client, request):
    # The server and store (fixtures) are shared by the examples on purpose; the listing is
    # a duplicate after the first example.
    apply(ledger, list_person("L1", LISTED, listed_on="2024-01-01"))
    stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
    try:
        response = stub.CheckRestriction(request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
        fields = [f for f, _ in error_from_rpc(exc).field_violations]
        assert fields and set(fields) <= REQUEST_FIELDS, fields
        assert len(exc.details()) < 200  # no value echoed
        event(f"INVALID_ARGUMENT {fields[0]}")
        return
    assert response.decision in (pb.ALLOW, pb.DENY)
    assert not travel_date_out_of_window(request), "answered for an implausible travel date"
    if must_deny(request):
        assert response.decision == pb.DENY, "ALLOW for the listed person"
        event("DENY for the listed person")
    else:
        event(pb.Decision.Name(response.decision))
