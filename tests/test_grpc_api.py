"""The gRPC surface on a real server bound to an ephemeral loopback port."""

from datetime import date

import grpc
import pytest
from conftest import apply, day, doc, event, list_org, list_person, make_ric, make_uscc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc
from sanction_service.clients.sanction_client import Passenger, ServiceError, Trip, check_request

PERSON = make_ric("110105", "19800101", 123)
LEGAL_REP = make_ric("310115", "19750505", 221)
CLEAN = make_ric("440305", "19900909", 88)
FLIGHT = Trip("FLIGHT")
DAY = day()  # a run that crosses midnight still sends an accepted date: yesterday


@pytest.fixture
def listed(ledger):
    apply(ledger, list_person("L1", PERSON), list_org("O1", make_uscc(), [("LEGAL_REPRESENTATIVE", "李娜", LEGAL_REP)]))


def test_health_is_not_serving_until_the_prefilter_is_ready(service):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{service.port}"))
    for name in ("", "sanction.v1.RestrictionService"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.NOT_SERVING
    checks = restriction_pb2_grpc.RestrictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{service.port}"))
    with pytest.raises(grpc.RpcError) as exc:
        checks.CheckRestriction(check_request(Passenger("RESIDENT_ID", PERSON)))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    service.warm_up()
    for name in ("", "sanction.v1.RestrictionService", "sanction.v1.ListAdminService"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(client, service):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(f"127.0.0.1:{service.port}"))
    response = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in response.list_services_response.service}
    assert {"sanction.v1.RestrictionService", "sanction.v1.ListAdminService", "grpc.health.v1.Health"} <= names


def test_listed_person_is_denied_with_the_reason(listed, client):
    outcome = client.check(Passenger("RESIDENT_ID", PERSON, name="张伟"), FLIGHT, DAY)
    assert (outcome.decision, outcome.restricted, outcome.name_mismatch) == ("DENY", True, False)
    assert outcome.masked_document == PERSON[:10] + "****" + PERSON[14:]
    (match,) = outcome.matches
    assert (match.case_number, match.court, match.list_type, match.role) == (
        "(2024)京0105执1号",
        "北京市朝阳区人民法院",
        "DISHONEST",
        "SUBJECT",
    )
    assert match.listed_on == date(2024, 1, 1) and match.expires_on is None and match.caused_denial
    assert outcome.data_version == 2


def test_legal_representative_is_denied_as_such(listed, client):
    outcome = client.check(Passenger("RESIDENT_ID", LEGAL_REP), FLIGHT, DAY)
    assert outcome.decision == "DENY"
    assert (outcome.matches[0].role, outcome.matches[0].organization_name) == ("LEGAL_REPRESENTATIVE", "上海示例贸易有限公司")
    assert "legal representative of 上海示例贸易有限公司" in outcome.reason()


def test_name_mismatch_is_flagged_but_still_denied(listed, client):
    outcome = client.check(Passenger("RESIDENT_ID", PERSON, name="李四"), FLIGHT, DAY)
    assert (outcome.decision, outcome.name_mismatch) == ("DENY", True)


def test_clean_person_is_allowed(listed, client):
    outcome = client.check(Passenger("RESIDENT_ID", CLEAN), Trip("RAIL", "G1"), DAY)
    assert (outcome.decision, outcome.restricted, outcome.matches) == ("ALLOW", False, [])


def test_travel_date_defaults_to_today(listed, service, client):
    stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
    response = stub.CheckRestriction(check_request(Passenger("RESIDENT_ID", PERSON)))
    from sanction_service.checker import today_in_shanghai

    assert date(response.travel_date.year, response.travel_date.month, response.travel_date.day) == today_in_shanghai()


@pytest.mark.parametrize(
    "request_message,field",
    [
        (pb.CheckRequest(), "document"),
        (pb.CheckRequest(document=pb.Document(number="1")), "document.type"),
        (pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number="")), "document.number"),
        (pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=PERSON[:17] + "Z")), "document.number"),
        (pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=CLEAN), trip=pb.Trip()), "trip.mode"),
        (
            pb.CheckRequest(
                document=pb.Document(type=pb.RESIDENT_ID, number=CLEAN),
                trip=pb.Trip(mode=pb.RAIL, train_number="X99", rail_class=pb.SECOND),
            ),
            "trip.train_number",
        ),
        (
            pb.CheckRequest(
                document=pb.Document(type=pb.RESIDENT_ID, number=CLEAN), trip=pb.Trip(mode=pb.RAIL, train_number="K1")
            ),
            "trip.rail_class",
        ),
        (
            pb.CheckRequest(
                document=pb.Document(type=pb.RESIDENT_ID, number=CLEAN), travel_date=pb.Date(year=2025, month=2, day=30)
            ),
            "travel_date",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, request_message, field):
    stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
    with pytest.raises(grpc.RpcError) as exc:
        stub.CheckRestriction(request_message)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    from sanction_service.clients.sanction_client import error_from_rpc

    error = error_from_rpc(exc.value)
    assert [f for f, _ in error.field_violations] == [field]
    assert PERSON not in exc.value.details() and CLEAN not in exc.value.details()


def test_client_raises_instead_of_allowing_on_bad_input(client):
    with pytest.raises(ServiceError) as exc:
        client.check(Passenger("RESIDENT_ID", "123"), FLIGHT)
    assert exc.value.code == "INVALID_ARGUMENT"


def test_batch_with_mixed_good_and_bad_items(listed, client):
    passengers = [
        Passenger("RESIDENT_ID", PERSON),
        Passenger("RESIDENT_ID", "bad"),
        Passenger("RESIDENT_ID", CLEAN),
        Passenger("USCC", "91110000600037341Z"),
    ]
    results = client.check_batch(passengers, FLIGHT, DAY)
    assert [getattr(r, "decision", None) for r in results] == ["DENY", None, "ALLOW", None]
    assert [r.code for r in results if isinstance(r, ServiceError)] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert results[1].field_violations[0][0] == "document.number"


def test_batch_over_the_limit_is_rejected_whole(client):
    with pytest.raises(ServiceError) as exc:
        client.check_batch([Passenger("RESIDENT_ID", CLEAN)] * 1001, FLIGHT)
    assert exc.value.code == "INVALID_ARGUMENT" and exc.value.field_violations[0][0] == "checks"


def test_stream_answers_are_matched_by_request_id(listed, client):
    requests = [
        ("a", check_request(Passenger("RESIDENT_ID", CLEAN), FLIGHT, DAY)),
        ("b", check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT, DAY)),
        ("c", check_request(Passenger("RESIDENT_ID", "nonsense"), FLIGHT, DAY)),
    ]
    answers = dict(client.check_stream(iter(requests), timeout=10))
    assert answers["a"].decision == "ALLOW" and answers["b"].decision == "DENY"
    assert isinstance(answers["c"], ServiceError) and answers["c"].code == "INVALID_ARGUMENT"


def test_stream_item_without_request_id_gets_its_own_error(client):
    from sanction.v1 import restriction_pb2_grpc as rpc

    stub = rpc.RestrictionServiceStub(client.channel)
    answers = list(
        stub.StreamCheckRestriction(
            iter(
                [
                    pb.StreamCheckRequest(check=check_request(Passenger("RESIDENT_ID", CLEAN))),
                    pb.StreamCheckRequest(request_id="ok", check=check_request(Passenger("RESIDENT_ID", CLEAN), FLIGHT)),
                ]
            ),
            timeout=5,
        )
    )
    assert answers[0].HasField("error") and answers[0].error.code == 3  # INVALID_ARGUMENT
    assert (answers[1].request_id, answers[1].result.decision) == ("ok", pb.ALLOW)


def test_apply_events_reports_applied_duplicates_and_rejects(client):
    listing = list_person("L9", PERSON)
    summary = client.apply_events(
        [listing, listing, "{not json", event("DELIST", "NOPE", reason="SETTLED", effective_on="2025-01-01")]
    )
    assert (summary.applied, summary.duplicates, summary.rejected) == (1, 1, 2)
    assert [(r.line, r.reason) for r in summary.rejects] == [(3, "not valid JSON"), (4, "unknown listing")]
    assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT, DAY).decision == "DENY"


def test_get_listing_and_lookup_person_show_masked_documents(listed, client, ledger):
    apply(
        ledger,
        event(
            "EXEMPT",
            "O1",
            document=doc(LEGAL_REP),
            modes=["FLIGHT"],
            valid_from="2025-01-01",
            valid_to="2025-01-31",
            reference="R-9",
        ),
        event("DELIST", "L1", reason="SETTLED", effective_on="2025-02-01"),
    )
    listing = client.get_listing("O1")
    assert listing.restricted_persons[0].masked_document == LEGAL_REP[:10] + "****" + LEGAL_REP[14:]
    assert listing.exemptions[0].reference == "R-9" and listing.active
    assert LEGAL_REP not in str(listing)
    found = client.lookup_person(Passenger("RESIDENT_ID", PERSON))
    assert [(m.listing_id, m.active, m.lifted_reason) for m in found.listings] == [("L1", False, "SETTLED")]
    with pytest.raises(ServiceError) as exc:
        client.get_listing("missing")
    assert exc.value.code == "NOT_FOUND"


def test_stats_include_refused_checks_by_mode(listed, client, ledger):
    apply(ledger, list_person("L2", CLEAN), event("PERFORM", "L2", performed_on="2025-01-01"))
    client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT, DAY)
    client.check(Passenger("RESIDENT_ID", PERSON), Trip("RAIL", "G1"), DAY)
    client.check(Passenger("RESIDENT_ID", PERSON), Trip("RAIL", "D1", rail_class="SECOND"), DAY)  # allowed
    stats = client.stats()
    refused = {c.key: c.value for c in stats.refused_checks_by_mode}
    assert refused == {"FLIGHT": 1, "RAIL": 1, "SHIP": 0}
    assert stats.voluntary_performances == 1 and stats.active_listings == 2 and stats.persons_restricted == 2
    assert {c.key: c.value for c in stats.delistings_by_reason}["PERFORMED"] == 1


def test_metrics_count_decisions_and_prefilter_without_exposing_numbers(listed, client):
    from prometheus_client import REGISTRY, generate_latest

    def value(name, labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    denies = value("sanction_decisions_total", {"mode": "FLIGHT", "decision": "DENY"})
    misses = value("sanction_prefilter_total", {"result": "miss"})
    client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT, DAY)
    client.check(Passenger("RESIDENT_ID", CLEAN), FLIGHT, DAY)
    assert value("sanction_decisions_total", {"mode": "FLIGHT", "decision": "DENY"}) == denies + 1
    assert value("sanction_prefilter_total", {"result": "miss"}) == misses + 1
    page = generate_latest().decode()
    assert "sanction_check_seconds_bucket" in page
    assert PERSON not in page and CLEAN not in page


# (days after today, answered): DOMAIN §2's window, yesterday to today + 366 in Asia/Shanghai.
WINDOW_EDGES = [(-2, False), (-1, True), (0, True), (366, True), (367, False)]
FAR_DATES = [date(1, 1, 1), date(9999, 12, 31)]


def _window_answers(client):
    """The unary, batch and stream answers for each edge and far date, with the day they
    were computed for (a run that crosses midnight in Shanghai tries again)."""
    for _ in range(3):
        today = day()
        cases = [(day(offset), ok) for offset, ok in WINDOW_EDGES] + [(d, False) for d in FAR_DATES]
        unary = []
        for travel, _ in cases:
            try:
                unary.append(client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT, travel))
            except ServiceError as exc:
                unary.append(exc)
        # Each batch item carries its own date, after a good item that must still be answered.
        stub = restriction_pb2_grpc.RestrictionServiceStub(client.channel)
        batch = stub.BatchCheckRestriction(
            pb.BatchCheckRequest(
                checks=[check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT)]
                + [check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT, travel) for travel, _ in cases]
            )
        )
        stream = dict(
            client.check_stream(
                (
                    (str(i), check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT, travel))
                    for i, (travel, _) in enumerate(cases)
                ),
                timeout=10,
            )
        )
        if day() == today:
            return cases, unary, batch, stream
    raise AssertionError("the date kept changing")


def test_travel_dates_from_yesterday_to_a_year_ahead_are_answered_and_others_refused(listed, client):
    from sanction_service.clients.sanction_client import error_from_status

    cases, unary, batch, stream = _window_answers(client)
    assert batch.items[0].result.decision == pb.DENY  # the good item is answered whatever its neighbours
    for i, (travel, ok) in enumerate(cases):
        item = batch.items[i + 1]
        answers = [unary[i], stream[str(i)], item.result if item.HasField("result") else error_from_status(item.error)]
        for answer in answers:
            if ok:
                assert not isinstance(answer, ServiceError), (travel, answer)
                assert answer.decision in ("DENY", pb.DENY), travel
            else:
                assert isinstance(answer, ServiceError), travel
                assert answer.code == "INVALID_ARGUMENT" and [f for f, _ in answer.field_violations] == ["travel_date"]
