"""The bad-input matrix (docs/RELIABILITY.md): every class answered with a clear error
naming the line or field, and nothing else lost. Feed classes go through the real
`sanction load`; request classes through a real server."""

import json

import grpc
import pytest
from conftest import doc, event, list_person, make_ric, make_uscc
from processes import sanction
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, ServiceError, Trip, error_from_rpc

GOOD = make_ric("110105", "19800101", 123)
OTHER = make_ric("310115", "19750505", 222)
BAD_RIC = GOOD[:17] + ("0" if GOOD[17] != "0" else "1")
BAD_USCC = make_uscc()[:17] + "0" if make_uscc()[17] != "0" else make_uscc()[:17] + "1"

# (class, feed line, expected field, expected words in the reason)
FEED_CASES = [
    ("malformed JSON", '{"event_id": "x", ', "", "not valid JSON"),
    ("non-UTF-8", b'{"event_id": "\xff\xfe"}', "", "not valid UTF-8"),
    ("oversized line", '{"event_id": "big", "pad": "' + "x" * (1024 * 1024 + 10) + '"}', "", "longer than"),
    ("missing required field", {k: v for k, v in list_person("M1", OTHER).items() if k != "court"}, "court", "required"),
    ("unknown event type", event("SUSPEND", "L1"), "type", "unknown event type"),
    (
        "unknown document type",
        list_person("M2", OTHER)
        | {"subject": {"kind": "PERSON", "name": "x", "document": {"type": "DRIVING_LICENCE", "number": "1"}}},
        "subject.document.type",
        "unknown document type",
    ),
    (
        "empty document",
        list_person("M3", OTHER) | {"subject": {"kind": "PERSON", "name": "x", "document": {}}},
        "subject.document",
        "required",
    ),
    ("bad RIC checksum", list_person("M4", BAD_RIC), "subject.document.number", "check character"),
    (
        "bad USCC",
        list_person("M5", OTHER) | {"subject": {"kind": "ORGANIZATION", "name": "x", "document": doc(BAD_USCC, "USCC")}},
        "subject.document.number",
        "USCC",
    ),
    ("date that is not a date", list_person("M6", OTHER, listed_on="2024-02-30"), "listed_on", "date"),
    (
        "expires_on before listed_on",
        list_person("M7", OTHER, listed_on="2024-05-01", expires_on="2024-04-01"),
        "expires_on",
        "after listed_on",
    ),
    ("EXTEND to an earlier date", event("EXTEND", "L2", expires_on="2025-01-01"), "expires_on", "later"),
    (
        "EXEMPT valid_to before valid_from",
        event(
            "EXEMPT", "L1", document=doc(GOOD), modes=["FLIGHT"], valid_from="2025-02-01", valid_to="2025-01-01", reference="R"
        ),
        "valid_to",
        "before valid_from",
    ),
    ("unknown listing", event("DELIST", "NOPE", reason="SETTLED", effective_on="2025-01-01"), "listing_id", "unknown listing"),
    ("reused listing_id", list_person("L1", OTHER), "listing_id", "already used"),
    ("event-id conflict", list_person("L1", GOOD, event_id="list-L1") | {"court": "另一个法院"}, "event_id", "conflict"),
    ("unknown delist reason", event("DELIST", "L1", reason="BORED", effective_on="2025-01-01"), "reason", "one of"),
    (
        "occurred_at without offset",
        event("DELIST", "L1", reason="SETTLED", effective_on="2025-01-01", occurred_at="2025-01-01T10:00:00"),
        "occurred_at",
        "offset",
    ),
    ("not an object", "[1, 2, 3]", "", "JSON object"),
    # docs/INPUT_LIMITS.md: identifiers, names, free text, types, sizes, nesting.
    ("identifier over 128 bytes", list_person("案" * 43, OTHER), "listing_id", "longer than 128 bytes"),
    ("identifier with a control character", list_person("M8", OTHER, event_id="ev\t8"), "event_id", "printable"),
    (
        "EXEMPT reference over 128 bytes",
        event(
            "EXEMPT",
            "L1",
            document=doc(GOOD),
            modes=["FLIGHT"],
            valid_from="2025-01-01",
            valid_to="2025-01-31",
            reference="R" * 129,
        ),
        "reference",
        "longer than 128 bytes",
    ),
    ("name over 200 characters", list_person("M9", OTHER, name="张" * 201), "subject.name", "longer than 200"),
    ("name with a control character", list_person("M10", OTHER, name="张\n伟"), "subject.name", "control characters"),
    ("court over 100 characters", list_person("M11", OTHER, court="法" * 101), "court", "longer than 100"),
    ("free text over 2000 characters", list_person("M12", OTHER, grounds="x" * 2001), "grounds", "longer than 2000"),
    (
        "number too long for an amount",
        list_person("M13", OTHER, amount_unperformed=10**70),
        "amount_unperformed",
        "longer than 64",
    ),
    ("bool where text is expected", list_person("M14", OTHER, court=True), "court", "non-empty string"),
    (
        "document country that is not a string",
        list_person("M15", OTHER) | {"subject": {"kind": "PERSON", "name": "x", "document": doc(OTHER) | {"country": 156}}},
        "subject.document.country",
        "string",
    ),
    (
        "document number over 64 characters",
        list_person("M16", OTHER) | {"subject": {"kind": "PERSON", "name": "x", "document": doc("1" * 65)}},
        "subject.document.number",
        "longer than 64",
    ),
    (
        "too many restricted persons",
        list_person("M17", OTHER)
        | {
            "subject": {"kind": "ORGANIZATION", "name": "x", "document": doc(make_uscc(), "USCC")},
            "restricted_persons": [{"role": "PRINCIPAL", "name": "x", "document": doc(OTHER)}] * 51,
        },
        "restricted_persons",
        "more than 50",
    ),
    (
        "nesting deeper than 32 levels",
        list_person("M18", OTHER) | {"note": json.loads("[" * 40 + "]" * 40)},
        "note",
        "nests deeper than 32",
    ),
    ("NaN, which is not JSON", '{"event_id": "nan", "amount_unperformed": NaN}', "", "not valid JSON"),
]


def _line(value) -> bytes:
    if isinstance(value, bytes):
        return value + b"\n"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.encode() + b"\n"


def test_every_feed_class_is_rejected_with_its_line_and_field_and_the_rest_applies(tmp_path):
    data = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data)).returncode == 0
    good = [
        list_person("L1", GOOD, event_id="list-L1"),
        list_person("L2", make_ric("440305", "19900909", 88), listed_on="2024-01-10", expires_on="2026-01-10"),
    ]
    feed = tmp_path / "feed.jsonl"
    with open(feed, "wb") as f:
        for e in good:
            f.write(_line(e))
        for _, line, _, _ in FEED_CASES:
            f.write(_line(line))
        f.write(_line(list_person("L3", OTHER)))  # a good line after all the bad ones
    result = sanction("load", "--data-dir", str(data), str(feed))
    assert result.returncode == 1
    assert f"3 applied, 0 duplicates, {len(FEED_CASES)} rejected" in result.stdout
    rejects = [json.loads(line) for line in open(f"{feed}.rejects.jsonl", encoding="utf-8")]
    assert [r["line"] for r in rejects] == list(range(3, 3 + len(FEED_CASES)))
    for (name, _, field, words), reject in zip(FEED_CASES, rejects):
        assert reject["field"] == field, name
        assert words in reject["reason"], (name, reject["reason"])
        assert BAD_RIC not in reject["reason"] and GOOD not in reject["reason"]


@pytest.mark.parametrize(
    "name,request_message,field",
    [
        (
            "garbage train number",
            pb.CheckRequest(
                document=pb.Document(type=pb.RESIDENT_ID, number=GOOD),
                trip=pb.Trip(mode=pb.RAIL, train_number="Z-99!", rail_class=pb.FIRST),
            ),
            "trip.train_number",
        ),
        (
            "RAIL check without class",
            pb.CheckRequest(
                document=pb.Document(type=pb.RESIDENT_ID, number=GOOD), trip=pb.Trip(mode=pb.RAIL, train_number="D301")
            ),
            "trip.rail_class",
        ),
        ("unknown enum number", pb.CheckRequest(document=pb.Document(type=99, number=GOOD)), "document.type"),
        ("3 MB name", pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=GOOD), name="张" * 1_000_000), "name"),
        (
            "name over 200 characters",
            pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=GOOD), name="x" * 201),
            "name",
        ),
        (
            "name with a control character",
            pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=GOOD), name="张\x00伟"),
            "name",
        ),
        (
            "3 MB document number",
            pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number="1" * 3_000_000)),
            "document.number",
        ),
        (
            "3 MB passport country",
            pb.CheckRequest(document=pb.Document(type=pb.PASSPORT, number="E12345678", country="C" * 3_000_000)),
            "document.country",
        ),
    ],
)
def test_request_classes_are_invalid_argument_naming_the_field(client, name, request_message, field):
    stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
    with pytest.raises(grpc.RpcError) as exc:
        stub.CheckRestriction(request_message)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(exc.value).field_violations[0][0] == field
    assert len(exc.value.details()) < 200  # the value is never echoed


def test_an_over_long_name_fails_only_its_own_batch_item(client):
    results = client.check_batch(
        [Passenger("RESIDENT_ID", GOOD, name="x" * 201), Passenger("RESIDENT_ID", GOOD)], Trip("FLIGHT")
    )
    assert isinstance(results[0], ServiceError) and results[0].field_violations[0][0] == "name"
    assert results[1].decision == "ALLOW"


def test_batch_over_the_limit_names_the_field(client):
    with pytest.raises(ServiceError) as exc:
        client.check_batch([Passenger("RESIDENT_ID", GOOD)] * 1001, Trip("FLIGHT"))
    assert exc.value.code == "INVALID_ARGUMENT" and exc.value.field_violations == [
        ("checks", "a batch holds at most 1000 checks")
    ]


def test_huge_message_is_refused_and_the_server_goes_on(client):
    huge = pb.BatchCheckRequest(checks=[pb.CheckRequest(name="x" * 5_000_000)])
    stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
    with pytest.raises(grpc.RpcError) as exc:
        stub.BatchCheckRestriction(huge, timeout=10)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.check(Passenger("RESIDENT_ID", GOOD), Trip("FLIGHT")).decision == "ALLOW"


@pytest.mark.parametrize("method", ["CheckRestriction", "BatchCheckRestriction"])
@pytest.mark.parametrize(
    "raw",
    [
        b"\x0a\x05\x08\x01",  # a field that promises 5 bytes and holds 2
        b"\x0a\x16\x08\x01\x12\x12" + "１２３４５６".encode()[:16] + b"\xff\xfe",  # a number that is not UTF-8
        b"\xff\xff\xff\xff",  # no protobuf at all
    ],
)
def test_bytes_that_are_no_request_are_invalid_argument_naming_the_request(client, method, raw):
    """The checks read the client's bytes themselves (the fast paths), so an undecodable
    request is a caller error naming the request, not gRPC's INTERNAL parse failure."""
    call = client.channel.unary_unary(f"/sanction.v1.RestrictionService/{method}")
    with pytest.raises(grpc.RpcError) as exc:
        call(raw, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(exc.value).field_violations[0][0] == "request"
    assert client.check(Passenger("RESIDENT_ID", GOOD), Trip("FLIGHT")).decision == "ALLOW"
