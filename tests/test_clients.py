"""The client library and the two example callers against a real server."""

import socket
from dataclasses import fields

import pytest
from conftest import apply, day, doc, event, iso, list_person, make_ric
from sanction.v1 import restriction_pb2 as pb
from sanction_service.clients.examples.airline_order import ticket
from sanction_service.clients.examples.rail_order import sell
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip

LISTED = make_ric("110105", "19800101", 123)
CLEAN = make_ric("440305", "19900909", 88)


def test_rail_order_sells_to_the_clean_passenger_and_denies_the_listed_one(ledger, client, capsys):
    apply(ledger, list_person("L1", LISTED))
    passengers = [
        Passenger("RESIDENT_ID", LISTED, name="张伟"),
        Passenger("RESIDENT_ID", CLEAN, name="王芳"),
        Passenger("RESIDENT_ID", "not-an-id", name="错误"),
    ]
    refused = sell(client, passengers, Trip("RAIL", "G1234", "SECOND"), None)
    out = capsys.readouterr().out.splitlines()
    assert refused == 2
    assert out[0].startswith("DENY  张伟") and "(2024)京0105执1号" in out[0]
    assert out[1].startswith("SELL  王芳")
    assert out[2].startswith("HOLD  错误") and "INVALID_ARGUMENT" in out[2]


def test_airline_order_matches_stream_answers_to_passengers(ledger, client, capsys):
    apply(ledger, list_person("L1", LISTED))
    refused = ticket(client, [Passenger("RESIDENT_ID", CLEAN), Passenger("RESIDENT_ID", LISTED)], Trip("FLIGHT"), None)
    out = capsys.readouterr().out.splitlines()
    assert refused == 1
    assert out[0].startswith("TICKET pax-1") and out[1].startswith("DENY  pax-2")


def test_client_raises_unavailable_when_no_server_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with RestrictionClient(f"127.0.0.1:{port}", timeout=1) as client:
        with pytest.raises(ServiceError) as exc:
            client.check(Passenger("RESIDENT_ID", CLEAN), Trip("FLIGHT"))
    assert exc.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_typed_results_carry_every_field_of_the_answer(ledger, client):
    apply(
        ledger,
        list_person("L1", LISTED, extra=[doc("E12345678", "PASSPORT", "CHN")]),
        list_person("L2", CLEAN, name="王芳"),
        event(
            "EXEMPT",
            "L2",
            document=doc(CLEAN),
            modes=["FLIGHT"],
            valid_from=iso(-1),
            valid_to=iso(30),
            reference="(2024)粤0305执89号之一",
        ),
    )
    bound = client.check(Passenger("PASSPORT", "E12345678", "CHN"), Trip("FLIGHT"))
    assert bound.travel_date == day() and bound.matches[0].listed_name == "张伟"
    assert bound.matches[0].matched_document == LISTED[:10] + "****" + LISTED[-4:]
    exempted = client.check(Passenger("RESIDENT_ID", CLEAN), Trip("FLIGHT"))
    assert exempted.allowed and exempted.matches[0].exemption_reference == "(2024)粤0305执89号之一"
    # Every field of the messages, under the proto's own names.
    assert {f.name for f in fields(type(bound))} == {f.name for f in pb.CheckResponse.DESCRIPTOR.fields}
    assert {f.name for f in fields(type(bound.matches[0]))} == {f.name for f in pb.ListingMatch.DESCRIPTOR.fields}
