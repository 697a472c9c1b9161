"""Property-based tests (hypothesis) of identity normalisation, the policy function and
the feed parser: for any input they answer or raise the documented error, never crash,
and never let a valid document slip through with a different key."""

import json
import string

from conftest import PEPPER, make_ric
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanction_service.events import EventRejected, parse_event
from sanction_service.identity import DocumentType, InvalidDocument, document_key, normalize
from sanction_service.policy import InvalidTrip, RailClass, ShipClass, TravelMode, Trip, purchase_is_restricted

regions = st.sampled_from(["110105", "310115", "440305", "342301", "510104"])
births = st.dates().filter(lambda d: 1900 <= d.year <= 2020).map(lambda d: d.strftime("%Y%m%d"))
valid_rics = st.builds(make_ric, regions, births, st.integers(0, 999))


@given(valid_rics, st.lists(st.sampled_from([" ", "-", "\t"]), max_size=4), st.randoms())
def test_any_formatting_of_a_valid_id_gives_the_same_key(number, separators, rnd):
    chars = list(number.lower())
    for sep in separators:
        chars.insert(rnd.randint(0, len(chars)), sep)
    messy = "".join(chars)
    assert document_key(PEPPER, normalize(DocumentType.RESIDENT_ID, messy)) == document_key(
        PEPPER, normalize(DocumentType.RESIDENT_ID, number)
    )


@given(valid_rics, st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_change_is_caught(number, position, delta):
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    try:
        normalize(DocumentType.RESIDENT_ID, changed)
    except InvalidDocument:
        return
    raise AssertionError("a single-digit change passed the check character")


@given(st.sampled_from(list(DocumentType)), st.text(max_size=40), st.text(max_size=5))
def test_normalize_answers_or_raises_invalid_document_only(doc_type, number, country):
    try:
        doc = normalize(doc_type, number, country)
    except InvalidDocument as exc:
        assert number.strip() == "" or number not in str(exc) or len(number) < 4
        return
    assert doc.number == doc.number.upper() and " " not in doc.number
    assert normalize(doc_type, doc.number, doc.country) == doc  # idempotent


trips = st.builds(
    Trip,
    mode=st.sampled_from(list(TravelMode)),
    train_number=st.one_of(st.text(alphabet="GDCZTKYLSXgd0123456789 ", max_size=6), st.just("")),
    rail_class=st.one_of(st.none(), st.sampled_from(list(RailClass))),
    cabin=st.text(max_size=3),
    ship_class=st.one_of(st.none(), st.sampled_from(list(ShipClass))),
)


@given(trips)
def test_policy_answers_a_bool_or_names_the_field(trip):
    try:
        answer = purchase_is_restricted(trip)
    except InvalidTrip as exc:
        assert exc.field.startswith("trip.")
        return
    assert isinstance(answer, bool)
    if trip.mode is TravelMode.FLIGHT:
        assert answer
    if trip.mode is TravelMode.RAIL and trip.train_number.strip().upper().startswith("G"):
        assert answer


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
event_keys = st.sampled_from(
    [
        "event_id",
        "type",
        "occurred_at",
        "listing_id",
        "list_type",
        "case_number",
        "court",
        "listed_on",
        "expires_on",
        "subject",
        "reason",
        "effective_on",
        "modes",
        "document",
    ]
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(event_keys, json_values, max_size=12) | json_values)
def test_parser_never_crashes_on_arbitrary_json(raw):
    try:
        parse_event(json.loads(json.dumps(raw)))
    except EventRejected:
        pass


@given(
    st.sampled_from(["LIST", "DELIST", "PERFORM", "EXTEND", "CORRECT", "EXEMPT"]),
    st.text(alphabet=string.printable, max_size=12),
)
def test_parser_rejects_bad_dates_naming_the_field(kind, bad_date):
    field = {
        "LIST": "listed_on",
        "DELIST": "effective_on",
        "PERFORM": "performed_on",
        "EXTEND": "expires_on",
        "CORRECT": "listed_on",
        "EXEMPT": "valid_from",
    }[kind]
    raw = {
        "event_id": "e1",
        "type": kind,
        "occurred_at": "2024-01-01T00:00:00+08:00",
        "listing_id": "L1",
        "list_type": "DISHONEST",
        "case_number": "c",
        "court": "c",
        "listed_on": "2024-01-01",
        "subject": {"kind": "PERSON", "name": "n", "document": {"type": "RESIDENT_ID", "number": make_ric()}},
        "reason": "SETTLED",
        "effective_on": "2024-01-01",
        "performed_on": "2024-01-01",
        "expires_on": None,
        "document": {"type": "RESIDENT_ID", "number": make_ric()},
        "modes": ["FLIGHT"],
        "valid_from": "2024-01-01",
        "valid_to": "2024-01-02",
        "reference": "r",
    }
    if kind == "CORRECT":
        del raw["list_type"]
    raw[field] = bad_date
    try:
        import datetime

        datetime.date.fromisoformat(bad_date)
        if len(bad_date) == 10:
            return  # a real date: nothing to reject
    except ValueError:
        pass
    try:
        parse_event(raw)
    except EventRejected as exc:
        assert exc.field == field
        return
    raise AssertionError(f"{bad_date!r} accepted as {field}")
