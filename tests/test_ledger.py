"""Every event type and every rejection rule of docs/FEED.md, through a real LMDB store,
with the effect observed through the Checker (the same pipeline the server uses)."""

import pytest
from conftest import PEPPER, apply, day, doc, event, feed_lines, iso, list_org, list_person, make_ric, make_uscc

from sanction_service.checker import CheckQuery
from sanction_service.ledger import APPLIED, DUPLICATE, REJECTED, FeedLine, Ledger
from sanction_service.policy import RailClass, TravelMode, Trip
from sanction_service.stats import read_stats

PERSON = make_ric("110105", "19800101", 123)
OTHER = make_ric("310115", "19750505", 222)
USCC = make_uscc()
FLIGHT = Trip(TravelMode.FLIGHT)


def decide(checker, number, trip=FLIGHT, day=None, doc_type="RESIDENT_ID", name="", country=""):
    """The check for travel on `day` (default today); feeds whose dates matter sit around today."""
    return checker.check(CheckQuery(doc_type, number, country, name, trip, day))


def statuses(outcomes):
    return [o.status for o in outcomes]


def test_list_then_check_denies_with_case_and_court(ledger, checker):
    assert statuses(apply(ledger, list_person("L1", PERSON))) == [APPLIED]
    result = decide(checker, PERSON)
    assert result.decision.decision == "DENY"
    match = result.decision.matches[0]
    assert (match.found.listing["case_number"], match.found.listing["court"]) == ("(2024)京0105执1号", "北京市朝阳区人民法院")
    assert match.caused_denial and result.masked_document == PERSON[:10] + "****" + PERSON[14:]
    assert result.data_version == 1


def test_unlisted_person_is_allowed(ledger, checker):
    apply(ledger, list_person("L1", PERSON))
    result = decide(checker, OTHER)
    assert (result.decision.decision, result.decision.restricted, result.decision.matches) == ("ALLOW", False, ())


def test_restricted_person_may_buy_d_train_second_class_but_not_first(ledger, checker):
    apply(ledger, list_person("L1", PERSON))
    second = decide(checker, PERSON, Trip(TravelMode.RAIL, "D301", RailClass.SECOND))
    first = decide(checker, PERSON, Trip(TravelMode.RAIL, "D301", RailClass.FIRST))
    assert (second.decision.decision, second.decision.restricted) == ("ALLOW", True)
    assert first.decision.decision == "DENY"


def test_no_trip_asks_whether_restricted_at_all(ledger, checker):
    apply(ledger, list_person("L1", PERSON))
    assert decide(checker, PERSON, trip=None).decision.decision == "DENY"


@pytest.mark.parametrize(
    "reason",
    [
        "SETTLED",
        "CREDITOR_APPLICATION",
        "NO_ASSETS",
        "SUSPENDED",
        "NOT_ENFORCED",
        "TERMINATED",
        "EXPIRED",
        "REVOKED",
        "PERFORMED",
    ],
)
def test_delist_lifts_the_listing_and_counts_the_reason(ledger, checker, store, reason):
    apply(ledger, list_person("L1", PERSON), event("DELIST", "L1", reason=reason, effective_on="2025-01-01"))
    assert decide(checker, PERSON).decision.decision == "ALLOW"
    with store.read() as view:
        stats = read_stats(view)
    assert stats.delistings_by_reason[reason] == 1
    assert stats.active_listings == 0 and stats.persons_restricted == 0
    assert stats.voluntary_performances == 0


def test_perform_lifts_and_counts_a_voluntary_performance(ledger, checker, store):
    apply(ledger, list_person("L1", PERSON), event("PERFORM", "L1", performed_on="2025-01-01"))
    assert decide(checker, PERSON).decision.decision == "ALLOW"
    with store.read() as view:
        stats = read_stats(view)
        listing = view.listing("L1")
    assert stats.voluntary_performances == 1
    assert (listing["status"], listing["lifted_reason"], listing["lifted_on"]) == ("LIFTED", "PERFORMED", "2025-01-01")


def test_lifted_record_is_kept_for_audit(ledger, checker):
    apply(ledger, list_person("L1", PERSON), event("DELIST", "L1", reason="SETTLED", effective_on="2025-01-01"))
    from sanction_service.identity import DocumentType, normalize

    found, _ = checker.lookup_person(normalize(DocumentType.RESIDENT_ID, PERSON))
    assert [(f.listing["listing_id"], f.listing["status"]) for f in found] == [("L1", "LIFTED")]


def test_another_listing_still_restricts_after_one_is_lifted(ledger, checker):
    apply(
        ledger,
        list_person("L1", PERSON),
        list_person("L2", PERSON, list_type="CONSUMPTION_RESTRICTION"),
        event("DELIST", "L1", reason="SETTLED", effective_on="2025-01-01"),
    )
    result = decide(checker, PERSON)
    assert result.decision.decision == "DENY"
    assert [m.found.listing["listing_id"] for m in result.decision.matches] == ["L2"]


def test_expiry_boundaries(ledger, checker):
    apply(ledger, list_person("L1", PERSON, listed_on=iso(10), expires_on=iso(100)))
    assert decide(checker, PERSON, day=day(9)).decision.decision == "ALLOW"
    assert decide(checker, PERSON, day=day(10)).decision.decision == "DENY"
    assert decide(checker, PERSON, day=day(99)).decision.decision == "DENY"
    assert decide(checker, PERSON, day=day(100)).decision.decision == "ALLOW"


def test_extend_moves_the_expiry_later(ledger, checker):
    apply(ledger, list_person("L1", PERSON, listed_on=iso(10), expires_on=iso(100)), event("EXTEND", "L1", expires_on=iso(200)))
    assert decide(checker, PERSON, day=day(150)).decision.decision == "DENY"
    assert decide(checker, PERSON, day=day(200)).decision.decision == "ALLOW"


def test_extend_to_an_earlier_or_same_date_is_rejected(ledger):
    outcomes = apply(
        ledger,
        list_person("L1", PERSON, listed_on="2024-01-10", expires_on="2026-01-10"),
        event("EXTEND", "L1", expires_on="2025-01-10"),
        event("EXTEND", "L1", expires_on="2026-01-10"),
    )
    assert statuses(outcomes) == [APPLIED, REJECTED, REJECTED]
    assert outcomes[1].field == "expires_on"


def test_extend_of_an_open_ended_listing_is_rejected(ledger):
    outcomes = apply(ledger, list_person("L1", PERSON), event("EXTEND", "L1", expires_on="2030-01-01"))
    assert statuses(outcomes) == [APPLIED, REJECTED]


def test_organisation_listing_restricts_its_people_with_their_role(ledger, checker, store):
    apply(ledger, list_org("O1", USCC, [("LEGAL_REPRESENTATIVE", "李娜", PERSON), ("ACTUAL_CONTROLLER", "王强", OTHER)]))
    legal = decide(checker, PERSON)
    assert legal.decision.decision == "DENY"
    match = legal.decision.matches[0]
    assert (match.found.person["role"], match.found.listing["organization_name"]) == (
        "LEGAL_REPRESENTATIVE",
        "上海示例贸易有限公司",
    )
    assert decide(checker, OTHER).decision.matches[0].found.person["role"] == "ACTUAL_CONTROLLER"
    org = decide(checker, USCC, trip=None, doc_type="USCC")
    assert (org.decision.decision, org.decision.matches[0].found.person["role"]) == ("DENY", "SUBJECT")
    with store.read() as view:
        assert read_stats(view).persons_restricted == 2  # the organisation itself is not a person


def test_passport_bound_to_a_person_is_restricted_too(ledger, checker, store):
    apply(ledger, list_person("L1", PERSON, extra=[doc("E12345678", "PASSPORT")]))
    assert decide(checker, "E12345678", doc_type="PASSPORT").decision.decision == "DENY"
    assert decide(checker, "E12345678", doc_type="PASSPORT", country="USA").decision.decision == "ALLOW"
    with store.read() as view:
        assert read_stats(view).persons_restricted == 1


def test_correct_moves_documents_so_only_the_new_one_is_restricted(ledger, checker):
    apply(
        ledger,
        list_person("L1", PERSON),
        event("CORRECT", "L1", subject={"kind": "PERSON", "name": "张伟", "document": doc(OTHER)}),
    )
    assert decide(checker, PERSON).decision.decision == "ALLOW"
    assert decide(checker, OTHER).decision.decision == "DENY"


def test_correct_replaces_restricted_persons_of_an_organisation(ledger, checker):
    apply(
        ledger,
        list_org("O1", USCC, [("LEGAL_REPRESENTATIVE", "李娜", PERSON)]),
        event(
            "CORRECT",
            "O1",
            restricted_persons=[{"role": "PRINCIPAL", "name": "王强", "document": doc(OTHER)}],
            case_number="(2024)沪0115执568号",
        ),
    )
    assert decide(checker, PERSON).decision.decision == "ALLOW"
    result = decide(checker, OTHER)
    assert result.decision.decision == "DENY"
    assert result.decision.matches[0].found.listing["case_number"] == "(2024)沪0115执568号"


def test_correct_cannot_change_list_type_or_break_dates(ledger):
    outcomes = apply(
        ledger,
        list_person("L1", PERSON, listed_on="2024-01-10", expires_on="2026-01-10"),
        event("CORRECT", "L1", list_type="CONSUMPTION_RESTRICTION"),
        event("CORRECT", "L1", listed_on="2026-02-01"),
        event("CORRECT", "L1"),
    )
    assert statuses(outcomes) == [APPLIED, REJECTED, REJECTED, REJECTED]
    assert [o.field for o in outcomes[1:]] == ["list_type", "expires_on", ""]


def test_exemption_covers_only_its_modes_and_window(ledger, checker):
    apply(
        ledger,
        list_person("L1", PERSON),
        event(
            "EXEMPT",
            "L1",
            document=doc(PERSON),
            modes=["FLIGHT"],
            valid_from=iso(1),
            valid_to=iso(3),
            reference="(2024)京0105执1号之一",
        ),
    )
    inside = decide(checker, PERSON, day=day(3))
    assert inside.decision.decision == "ALLOW" and inside.decision.restricted
    assert inside.decision.matches[0].exemption["reference"] == "(2024)京0105执1号之一"
    assert decide(checker, PERSON, day=day(4)).decision.decision == "DENY"
    assert decide(checker, PERSON, day=day(0)).decision.decision == "DENY"
    g_train = Trip(TravelMode.RAIL, "G1", None)
    assert decide(checker, PERSON, trip=g_train, day=day(2)).decision.decision == "DENY"


def test_exemption_covers_one_listing_only(ledger, checker):
    apply(
        ledger,
        list_person("L1", PERSON),
        list_person("L2", PERSON, case_number="(2024)京0105执2号"),
        event("EXEMPT", "L1", document=doc(PERSON), modes=["FLIGHT"], valid_from=iso(-30), valid_to=iso(300), reference="R-1"),
    )
    result = decide(checker, PERSON)
    assert result.decision.decision == "DENY"
    caused = {m.found.listing["listing_id"]: m.caused_denial for m in result.decision.matches}
    assert caused == {"L1": False, "L2": True}


def test_exemption_covers_one_person_only(ledger, checker):
    apply(
        ledger,
        list_org("O1", USCC, [("LEGAL_REPRESENTATIVE", "李娜", PERSON), ("PRINCIPAL", "王强", OTHER)]),
        event(
            "EXEMPT",
            "O1",
            document=doc(PERSON),
            modes=["FLIGHT", "RAIL"],
            valid_from=iso(-30),
            valid_to=iso(300),
            reference="R-2",
        ),
    )
    assert decide(checker, PERSON).decision.decision == "ALLOW"
    assert decide(checker, OTHER).decision.decision == "DENY"


def test_exemption_for_a_person_not_on_the_listing_is_rejected(ledger):
    outcomes = apply(
        ledger,
        list_person("L1", PERSON),
        event(
            "EXEMPT",
            "L1",
            document=doc(OTHER),
            modes=["FLIGHT"],
            valid_from="2025-01-01",
            valid_to="2025-12-31",
            reference="R-3",
        ),
    )
    assert statuses(outcomes) == [APPLIED, REJECTED] and outcomes[1].field == "document"


def test_same_event_again_is_a_duplicate_and_changes_nothing(ledger, store):
    listing = list_person("L1", PERSON)
    first = apply(ledger, listing)
    again = apply(ledger, dict(listing))
    assert statuses(first + again) == [APPLIED, DUPLICATE]
    with store.read() as view:
        assert view.seq() == 1 and read_stats(view).active_listings == 1


def test_same_event_id_with_other_content_is_a_conflict(ledger):
    listing = list_person("L1", PERSON)
    altered = {**listing, "court": "北京市海淀区人民法院"}
    outcomes = apply(ledger, listing, altered)
    assert statuses(outcomes) == [APPLIED, REJECTED]
    assert "conflict" in outcomes[1].reason


def test_list_reusing_a_listing_id_is_rejected(ledger):
    outcomes = apply(ledger, list_person("L1", PERSON), list_person("L1", OTHER))
    assert statuses(outcomes) == [APPLIED, REJECTED] and outcomes[1].field == "listing_id"


@pytest.mark.parametrize(
    "follow_up",
    [
        event("DELIST", "NOPE", reason="SETTLED", effective_on="2025-01-01"),
        event("PERFORM", "NOPE", performed_on="2025-01-01"),
        event("EXTEND", "NOPE", expires_on="2030-01-01"),
        event("CORRECT", "NOPE", court="x"),
        event(
            "EXEMPT",
            "NOPE",
            document=doc(PERSON),
            modes=["FLIGHT"],
            valid_from="2025-01-01",
            valid_to="2025-01-02",
            reference="R",
        ),
    ],
)
def test_events_for_unknown_listings_are_rejected(ledger, follow_up):
    outcome = apply(ledger, follow_up)[0]
    assert (outcome.status, outcome.field, outcome.reason) == (REJECTED, "listing_id", "unknown listing")


def test_events_for_lifted_listings_are_rejected(ledger):
    outcomes = apply(
        ledger,
        list_person("L1", PERSON),
        event("PERFORM", "L1", performed_on="2025-01-01"),
        event("DELIST", "L1", reason="SETTLED", effective_on="2025-01-02"),
        event("CORRECT", "L1", court="x"),
    )
    assert statuses(outcomes) == [APPLIED, APPLIED, REJECTED, REJECTED]
    assert "no longer active" in outcomes[2].reason


def test_a_rejected_event_does_not_stop_the_others_and_each_applied_gets_the_next_sequence(ledger):
    lines = [FeedLine(1, list_person("L1", PERSON)), FeedLine(2, {"type": "LIST"}), FeedLine(3, list_person("L2", OTHER))]
    outcomes = list(ledger.apply(lines))
    assert [(o.line, o.status, o.seq) for o in outcomes] == [(1, APPLIED, 1), (2, REJECTED, 0), (3, APPLIED, 2)]


def test_rejections_never_echo_a_document_number(ledger):
    bad = PERSON[:17] + ("0" if PERSON[17] != "0" else "1")
    outcome = apply(ledger, list_person("L1", bad))[0]
    assert outcome.status == REJECTED and outcome.field == "subject.document.number"
    assert bad not in outcome.reason and bad[:14] not in outcome.reason


def test_stats_count_listings_by_type_and_last_event_time(ledger, store):
    apply(
        ledger,
        list_person("L1", PERSON),
        list_person("L2", OTHER, list_type="CONSUMPTION_RESTRICTION", occurred_at="2024-06-01T09:00:00+08:00"),
    )
    with store.read() as view:
        stats = read_stats(view)
    assert stats.active_listings_by_type == {"DISHONEST": 1, "CONSUMPTION_RESTRICTION": 1}
    assert stats.persons_restricted == 2 and stats.data_version == 2
    assert stats.last_event_time == "2024-06-01T09:00:00+08:00"


def test_a_person_on_two_listings_counts_once_until_both_are_lifted(ledger, store):
    apply(ledger, list_person("L1", PERSON), list_person("L2", PERSON))
    with store.read() as view:
        assert read_stats(view).persons_restricted == 1
    apply(ledger, event("DELIST", "L1", reason="SETTLED", effective_on="2025-01-01"))
    with store.read() as view:
        assert read_stats(view).persons_restricted == 1
    apply(ledger, event("DELIST", "L2", reason="SETTLED", effective_on="2025-01-01"))
    with store.read() as view:
        assert read_stats(view).persons_restricted == 0


def test_meta_updates_commit_with_their_batch_and_not_without_it(store):
    """A replica records its stream position through meta_updates: in the batch's own
    transaction, so a batch that fails leaves neither its events nor the position."""
    ledger = Ledger(store, PEPPER)
    seen = []

    def updates(batch, outcomes):
        seen.append([o.status for o in outcomes])
        return {b"replication:stream_seq": str(batch[-1].line).encode()}

    lines = feed_lines(
        [
            list_person("M1", make_ric("110105", "19800101", 41)),
            event("DELIST", "nope", reason="SETTLED", effective_on="2025-01-01"),
        ]
    )
    assert [o.status for o in ledger.apply(lines, meta_updates=updates)] == ["APPLIED", "REJECTED"]
    assert seen == [["APPLIED", "REJECTED"]]
    with store.read() as view:
        assert view.meta(b"replication:stream_seq") == b"2" and view.seq() == 1

    def failing(batch, outcomes):
        raise RuntimeError("the caller's update fails")

    more = feed_lines([list_person("M2", make_ric("110105", "19800101", 42))])
    with pytest.raises(RuntimeError):
        list(ledger.apply(more, meta_updates=failing))
    with store.read() as view:
        assert view.seq() == 1 and view.listing("M2") is None
