"""Binding is a fact about the person: a document any listing binds to a person (a
subject's extra documents) restricts under every listing of that person, outlives the
declaring listing's lifting, and is unbound only when a correction withdraws it from
every listing that declared it. Exemptions cover the person under all their documents,
never an organisation. Checked through the Checker (the server's pipeline) on a real
LMDB store, and end to end through a real server."""

from datetime import timedelta

from conftest import apply, doc, event, list_org, list_person, make_ric, make_uscc

from sanction_service.checker import CheckQuery, today_in_shanghai
from sanction_service.identity import DocumentType, normalize
from sanction_service.ledger import APPLIED, REJECTED
from sanction_service.policy import TravelMode, Trip

PERSON = make_ric("110105", "19800101", 123)
OTHER = make_ric("310115", "19750505", 222)
PASSPORT = doc("E12345678", "PASSPORT", "CHN")
USCC = make_uscc()
FLIGHT = Trip(TravelMode.FLIGHT)


def check(checker, number, doc_type="RESIDENT_ID", country="", trip=FLIGHT):
    return checker.check(CheckQuery(doc_type, number, country, "", trip, today_in_shanghai())).decision


def passport(checker, trip=FLIGHT):
    return check(checker, PASSPORT["number"], "PASSPORT", "CHN", trip)


def denied_by(decision):
    return sorted(o.found.listing["listing_id"] for o in decision.matches if o.caused_denial)


def exempt(listing_id, document, event_id, modes=("FLIGHT",)):
    today = today_in_shanghai()
    return event(
        "EXEMPT",
        listing_id,
        event_id=event_id,
        document=document,
        modes=list(modes),
        valid_from=(today - timedelta(days=1)).isoformat(),
        valid_to=(today + timedelta(days=30)).isoformat(),
        reference=f"({today.year})京0105执{event_id}号之一",
    )


def test_a_passport_bound_on_a_lifted_listing_is_denied_under_another_listing_of_the_person(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("B", PERSON, event_id="b", case_number="(2024)京0105执2号"),
        event("DELIST", "A", event_id="c", reason="SETTLED", effective_on="2025-01-01"),
    )
    decision = passport(checker)
    assert decision.decision == "DENY" and denied_by(decision) == ["B"]
    assert decision.matches[0].found.bound  # reached through the binding, not a listing naming the passport


def test_a_bound_passport_is_denied_when_the_person_is_an_organisations_legal_representative(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        event("PERFORM", "A", event_id="b", performed_on="2025-01-01"),
        list_org("O", USCC, [("LEGAL_REPRESENTATIVE", "张伟", PERSON)], event_id="c"),
    )
    decision = passport(checker)
    assert decision.decision == "DENY" and denied_by(decision) == ["O"]
    assert decision.matches[0].found.person["role"] == "LEGAL_REPRESENTATIVE"


def test_an_exemption_granted_on_the_id_covers_a_booking_on_the_bound_passport(ledger, checker):
    outcomes = apply(ledger, list_person("A", PERSON, extra=[PASSPORT], event_id="a"), exempt("A", doc(PERSON), "x"))
    assert [o.status for o in outcomes] == [APPLIED, APPLIED]
    decision = passport(checker)
    assert decision.decision == "ALLOW" and decision.restricted
    assert decision.matches[0].exemption["reference"].endswith("x号之一")
    assert passport(checker, Trip(TravelMode.RAIL, "G1")).decision == "DENY"  # the exemption names FLIGHT only


def test_an_exemption_asked_for_with_the_passport_covers_the_person_on_that_listing_only(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("B", PERSON, event_id="b", case_number="(2024)京0105执2号"),
        exempt("A", PASSPORT, "x"),
    )
    on_id = check(checker, PERSON)
    assert on_id.decision == "DENY" and denied_by(on_id) == ["B"]  # another listing still restricts
    assert [o.found.listing["listing_id"] for o in on_id.matches if o.exemption] == ["A"]


def test_an_organisation_is_never_exempted(ledger, checker):
    outcomes = apply(
        ledger,
        list_org("O", USCC, [("LEGAL_REPRESENTATIVE", "张伟", PERSON)], event_id="a"),
        exempt("O", doc(USCC, "USCC"), "x"),
        exempt("O", doc(PERSON), "y"),
    )
    assert [o.status for o in outcomes] == [APPLIED, REJECTED, APPLIED]
    assert outcomes[1].field == "document"
    assert check(checker, USCC, "USCC").decision == "DENY"
    assert check(checker, PERSON).decision == "ALLOW"


def test_a_correction_unbinds_only_when_every_declaring_listing_withdrew_the_document(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("C", PERSON, extra=[PASSPORT], event_id="c", case_number="(2024)京0105执3号"),
        list_person("B", PERSON, event_id="b", case_number="(2024)京0105执2号"),
        event("DELIST", "A", event_id="d", reason="SETTLED", effective_on="2025-01-01"),
        event("CORRECT", "C", event_id="e", extra_documents=[]),
    )
    assert passport(checker).decision == "DENY"  # A (lifted) still declares it
    # A is lifted, so no correction can reach it: the binding stays for good.
    apply(ledger, event("CORRECT", "B", event_id="f", extra_documents=[]))
    assert passport(checker).decision == "DENY"


def test_a_withdrawn_binding_no_longer_restricts_the_document(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("B", PERSON, event_id="b", case_number="(2024)京0105执2号"),
    )
    assert passport(checker).decision == "DENY"
    apply(ledger, event("CORRECT", "A", event_id="c", extra_documents=[]))
    assert passport(checker).decision == "ALLOW"
    assert check(checker, PERSON).decision == "DENY"


def test_a_corrected_subject_does_not_inherit_the_old_subjects_passport(ledger, checker):
    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        event("CORRECT", "A", event_id="b", subject={"kind": "PERSON", "name": "王芳", "document": doc(OTHER)}),
    )
    decision = passport(checker)
    assert decision.decision == "ALLOW" and not decision.matches
    assert check(checker, OTHER).decision == "DENY"
    assert check(checker, PERSON).decision == "ALLOW"


def test_lookup_and_check_say_which_document_bound_the_person(ledger, client):
    from sanction_service.clients.sanction_client import Passenger

    apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        event("DELIST", "A", event_id="b", reason="SETTLED", effective_on="2025-01-01"),
        list_person("B", PERSON, event_id="c", case_number="(2024)京0105执2号"),
    )
    booked = Passenger("PASSPORT", PASSPORT["number"], "CHN")
    looked_up = client.lookup_person(booked)
    assert sorted(m.listing_id for m in looked_up.listings) == ["A", "B"]
    assert {m.matched_document for m in looked_up.listings} == {normalize(DocumentType.RESIDENT_ID, PERSON).masked()}
    outcome = client.check(booked, None)
    assert outcome.decision == "DENY" and [m.listing_id for m in outcome.matches] == ["B"]
    assert PASSPORT["number"] not in str(looked_up) and PERSON not in str(looked_up)


def test_bulk_and_event_paths_agree_on_bindings(tmp_path):
    from conftest import feed_lines
    from test_bulk import load_both

    from sanction_service.digest import store_digest

    events = [
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("B", PERSON, event_id="b", case_number="(2024)京0105执2号"),
        exempt("B", PASSPORT, "x"),
        event("DELIST", "A", event_id="c", reason="SETTLED", effective_on="2025-01-01"),
        list_person("C", OTHER, extra=[PASSPORT], event_id="d", case_number="(2024)京0105执3号"),
        event("CORRECT", "C", event_id="e", subject={"kind": "PERSON", "name": "李娜", "document": doc(PERSON)}),
        list_org("O", USCC, [("LEGAL_REPRESENTATIVE", "张伟", PERSON)], event_id="f"),
        exempt("O", doc(USCC, "USCC"), "y"),
    ]
    slow, fast, slow_out, fast_out, prefilter = load_both(tmp_path, lambda: feed_lines(events), batch_size=3)
    assert slow_out == fast_out
    with slow.read() as a, fast.read() as b:
        assert store_digest(a) == store_digest(b)
        assert a.count("bindings") >= 1
    slow.close()
    fast.close()


def test_a_binding_works_both_ways_round(ledger, checker):
    """Listing A binds the passport to the resident ID; listing O names the person by the
    passport only. A check, a lookup and an exemption with the resident ID all reach O."""
    outcomes = apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        event("DELIST", "A", event_id="b", reason="SETTLED", effective_on="2025-01-01"),
        {
            **list_org("O", USCC, [], event_id="c"),
            "restricted_persons": [{"role": "LEGAL_REPRESENTATIVE", "name": "张伟", "document": PASSPORT}],
        },
    )
    assert [o.status for o in outcomes] == [APPLIED] * 3
    on_id = check(checker, PERSON)
    assert on_id.decision == "DENY" and denied_by(on_id) == ["O"] and on_id.matches[0].found.bound
    found, _ = checker.lookup_person(normalize(DocumentType.RESIDENT_ID, PERSON))
    assert sorted(f.listing["listing_id"] for f in found) == ["A", "O"]
    assert [o.status for o in apply(ledger, exempt("O", doc(PERSON), "x"))] == [APPLIED]
    assert check(checker, PERSON).decision == "ALLOW" and passport(checker).decision == "ALLOW"


def test_two_persons_who_share_a_bound_passport_stay_two_persons(ledger, checker):
    """Passport P bound to ID X by A and to ID Y by B: P answers for both persons, but
    neither person's listings restrict the other's resident ID."""
    outcomes = apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        list_person("B", OTHER, extra=[PASSPORT], event_id="b", case_number="(2024)京0105执2号"),
        event("DELIST", "A", event_id="c", reason="SETTLED", effective_on="2025-01-01"),
    )
    assert [o.status for o in outcomes] == [APPLIED] * 3
    assert denied_by(passport(checker)) == ["B"]
    assert denied_by(check(checker, OTHER)) == ["B"]
    assert check(checker, PERSON).decision == "ALLOW"


def test_an_exemption_covers_every_entry_of_the_person_on_the_listing(ledger, checker):
    """An organisation names the person twice, under two of their documents (legal
    representative by ID, principal by the bound passport): one EXEMPT covers both."""
    org = {**list_org("O", USCC, [("LEGAL_REPRESENTATIVE", "张伟", PERSON)], event_id="b")}
    org["restricted_persons"] = [*org["restricted_persons"], {"role": "PRINCIPAL", "name": "张伟", "document": PASSPORT}]
    outcomes = apply(
        ledger,
        list_person("A", PERSON, extra=[PASSPORT], event_id="a"),
        event("PERFORM", "A", event_id="c", performed_on="2025-01-01"),
        org,
        exempt("O", PASSPORT, "x"),
    )
    assert [o.status for o in outcomes] == [APPLIED] * 4
    assert check(checker, PERSON).decision == "ALLOW" and passport(checker).decision == "ALLOW"
