"""sanction_service.loaders.synth: the synthetic feed is valid data (docs/DOCUMENTS.md, docs/FEED.md), deterministic, streamed
with bounded memory, and its probe expectations are exactly what replaying the feed gives.

The feed is checked against an independent, dict-based replay (`Replay`) rather than
against the generator's own bookkeeping.
"""

from __future__ import annotations

import datetime
import gc
import json
import re
import sys
from collections import Counter

import pytest
from sanction_service.loaders import synth
from stdnum.cn import ric, uscc

from sanction_service.events import DELIST_REASONS

SEED = 11
N = 5000
SHANGHAI = datetime.timedelta(hours=8)
CASE = re.compile(r"^\((\d{4})\)(\D)(\d{4})(执|执恢|执保|执异|执复|执监)(\d+)号$")
COURT_BY_CODE = {f"{abbr}{code[2:]}": court for code, abbr, court, _ in synth._COURT_REGIONS}
KNOWN_REGIONS = set(synth._PERSON_REGIONS)
COMMON = {"event_id", "type", "occurred_at", "listing_id"}
LIST_FIELDS = COMMON | {
    "list_type",
    "case_number",
    "court",
    "listed_on",
    "expires_on",
    "subject",
    "extra_documents",
    "restricted_persons",
    "obligation",
    "amount_unperformed",
}
FIELDS = {
    "DELIST": COMMON | {"reason", "effective_on"},
    "PERFORM": COMMON | {"performed_on"},
    "EXTEND": COMMON | {"expires_on"},
    "EXEMPT": COMMON | {"document", "modes", "valid_from", "valid_to", "reference"},
}
CORRECTABLE = {"case_number", "court", "subject", "restricted_persons"}
ROLES = {"LEGAL_REPRESENTATIVE", "PRINCIPAL", "RESPONSIBLE_PERSON", "ACTUAL_CONTROLLER"}


def day(s: str) -> datetime.date:
    return datetime.date.fromisoformat(s)


def key(doc: dict) -> tuple[str, str]:
    return doc["type"], doc["number"]


def check_resident_id(number: str) -> datetime.date:
    assert re.fullmatch(r"\d{17}[\dX]", number), number
    # stdnum's calc_check_digit takes the whole number and ignores its last character.
    assert ric.calc_check_digit(number) == number[17], number
    assert number[:6] in KNOWN_REGIONS, number
    return datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))  # a real date


def check_uscc(number: str) -> None:
    assert re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", number), number
    assert uscc.calc_check_digit(number[:17]) == number[17], number
    assert synth._orgcode_check(number[8:16]) == number[16], number  # GB 11714 organisation code


def check_document(doc: dict) -> None:
    if doc["type"] == "RESIDENT_ID":
        check_resident_id(doc["number"])
        assert "country" not in doc or doc["country"] == "CHN"
    elif doc["type"] == "USCC":
        check_uscc(doc["number"])
    else:
        assert doc["type"] == "PASSPORT" and doc["country"] == "CHN"
        assert re.fullmatch(r"E\d{8}", doc["number"])


class Replay:
    """A deliberately simple model of docs/FEED.md: which documents are restricted now."""

    def __init__(self, events: list[dict]):
        self.listings: dict[str, dict] = {}
        self.seen: set[tuple[str, str]] = set()  # every document anywhere in the feed
        self.lifted_at: dict[str, datetime.date] = {}
        self.listed_at: dict[str, datetime.datetime] = {}
        for e in events:
            self.apply(e)

    def _docs_of(self, e: dict) -> list[dict]:
        docs = [e["subject"]["document"]] if "subject" in e else []
        docs += e.get("extra_documents", []) + [p["document"] for p in e.get("restricted_persons", [])]
        if "document" in e:
            docs.append(e["document"])
        return docs

    def apply(self, e: dict) -> None:
        for d in self._docs_of(e):
            self.seen.add(key(d))
        lid, kind = e["listing_id"], e["type"]
        if kind == "LIST":
            assert lid not in self.listings, f"{lid} listed twice"
            self.listings[lid] = {
                "active": True,
                "kind": e["subject"]["kind"],
                "subject": key(e["subject"]["document"]),
                "extra": [key(d) for d in e["extra_documents"]],
                "restricted": [key(p["document"]) for p in e["restricted_persons"]],
                "listed_on": day(e["listed_on"]),
                "expires_on": e["expires_on"],
                "case": e["case_number"],
            }
            self.listed_at[lid] = datetime.datetime.fromisoformat(e["occurred_at"])
            return
        rec = self.listings.get(lid)
        assert rec is not None, f"{kind} for unknown {lid}"
        assert rec["active"], f"{kind} for {lid} after it was lifted"
        if kind in ("DELIST", "PERFORM"):
            when = day(e["effective_on"] if kind == "DELIST" else e["performed_on"])
            assert when > rec["listed_on"]
            rec["active"] = False
            self.lifted_at[lid] = when
        elif kind == "EXTEND":
            old, new = day(rec["expires_on"]), day(e["expires_on"])
            assert new.month == old.month and new.day == old.day and 1 <= new.year - old.year <= 3
            rec["expires_on"] = e["expires_on"]
        elif kind == "CORRECT":
            fields = set(e) - COMMON
            assert fields and fields <= CORRECTABLE, fields
            if "subject" in e:
                assert e["subject"]["kind"] == rec["kind"]
                rec["subject"] = key(e["subject"]["document"])
            if "restricted_persons" in e:
                assert e["restricted_persons"][0]["role"] == "LEGAL_REPRESENTATIVE"
                rec["restricted"] = [key(p["document"]) for p in e["restricted_persons"]]
            if "case_number" in e:
                m = CASE.match(e["case_number"])
                assert m and COURT_BY_CODE[m[2] + m[3]] == e["court"]
                rec["case"] = e["case_number"]
        else:  # EXEMPT
            target = key(e["document"])
            persons = [rec["subject"]] if rec["kind"] == "PERSON" else rec["restricted"]
            assert target in persons, "an exemption names a person restricted by this listing"
            assert e["modes"] and set(e["modes"]) <= {"FLIGHT", "RAIL", "SHIP"}
            assert len(set(e["modes"])) == len(e["modes"])
            assert rec["listed_on"] < day(e["valid_from"]) <= day(e["valid_to"])
            assert e["reference"] == rec["case"] + "之一"

    def active_index(self) -> dict[tuple[str, str], set[str]]:
        """document -> roles ("S" subject/extra document, "R" restricted person) in active listings."""
        index: dict[tuple[str, str], set[str]] = {}
        for rec in self.listings.values():
            if rec["active"]:
                for d in [rec["subject"], *rec["extra"]]:
                    index.setdefault(d, set()).add("S")
                for d in rec["restricted"]:
                    index.setdefault(d, set()).add("R")
        return index


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return list(synth._feed_lines(SEED, N, synth.DEFAULT_START))


@pytest.fixture(scope="module")
def events(lines) -> list[dict]:
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def replay(events) -> Replay:
    return Replay(events)


@pytest.fixture(scope="module")
def probes() -> list[dict]:
    return list(synth.generate_probes(SEED, N))


# ---------------------------------------------------------------- determinism and output


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert synth.write_feed(a, 3, 2000) == synth.write_feed(b, 3, 2000)
    synth.write_feed(c, 4, 2000)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_write_feed_is_json_dumps_of_generate_events(tmp_path):
    path = tmp_path / "feed.jsonl"
    calls = []
    n = synth.write_feed(path, SEED, 1500, progress=calls.append)
    expected = "".join(
        json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in synth.generate_events(SEED, 1500)
    )
    assert path.read_text(encoding="utf-8") == expected
    assert n == expected.count("\n") and calls[-1] == n


def test_probes_are_deterministic_and_seed_dependent():
    assert list(synth.generate_probes(5, 800)) == list(synth.generate_probes(5, 800))
    assert list(synth.generate_probes(5, 800)) != list(synth.generate_probes(6, 800))


# ---------------------------------------------------------------- shape of the feed


def test_exactly_listings_list_events_with_unique_ids(events):
    lists = [e for e in events if e["type"] == "LIST"]
    assert len(lists) == N
    assert len({e["listing_id"] for e in lists}) == N
    assert len({e["event_id"] for e in events}) == len(events)


def test_every_event_has_exactly_the_fields_of_its_type(events):
    for e in events:
        if e["type"] == "LIST":
            grounds = {"grounds"} if e["list_type"] == "DISHONEST" else set()
            assert set(e) == LIST_FIELDS | grounds, e["event_id"]
            assert e["subject"]["kind"] in ("PERSON", "ORGANIZATION")
            assert set(e["subject"]) == {"kind", "name", "document"} and e["subject"]["name"]
            assert re.fullmatch(r"\d+\.\d\d", e["amount_unperformed"])
            if "grounds" in e:
                assert isinstance(e["grounds"], int) and 1 <= e["grounds"] <= 6
                assert (e["grounds"] == 1) == (e["expires_on"] is None)
        elif e["type"] == "CORRECT":
            assert COMMON < set(e) <= COMMON | CORRECTABLE
        else:
            assert set(e) == FIELDS[e["type"]], e["event_id"]
        if e["type"] == "DELIST":
            assert e["reason"] in DELIST_REASONS


def test_occurred_at_is_rfc3339_with_offset_and_never_decreases(events):
    stamps = [datetime.datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert all(s.utcoffset() == SHANGHAI for s in stamps)
    assert all("T" in e["occurred_at"] for e in events)
    assert all(a <= b for a, b in zip(stamps, stamps[1:]))


def test_list_events_are_realistic(events):
    start = synth.DEFAULT_START
    for e in events:
        if e["type"] != "LIST" or e["listing_id"].startswith("DEMO-"):
            continue
        listed = day(e["listed_on"])
        assert synth._add_years(start, -3) <= listed <= start
        assert listed <= datetime.datetime.fromisoformat(e["occurred_at"]).date()
        if e["expires_on"] is not None:
            assert day(e["expires_on"]) == synth._add_years(listed, 2)
        m = CASE.match(e["case_number"])
        assert m, e["case_number"]
        assert COURT_BY_CODE[m[2] + m[3]] == e["court"]
        assert listed.year - 2 <= int(m[1]) <= listed.year
        subject = e["subject"]
        check_document(subject["document"])
        if subject["kind"] == "PERSON":
            assert subject["document"]["type"] == "RESIDENT_ID" and e["restricted_persons"] == []
            born = check_resident_id(subject["document"]["number"])
            assert 18 <= (listed - born).days / 365.2425 <= 80.01
            assert int(subject["document"]["number"][14:17]) < synth.NEVER_SEQ_BASE
            assert all(d["type"] == "PASSPORT" for d in e["extra_documents"])
        else:
            assert subject["document"]["type"] == "USCC" and subject["name"].endswith("有限公司")
            assert e["extra_documents"] == []
            persons = e["restricted_persons"]
            assert 1 <= len(persons) <= 3 and persons[0]["role"] == "LEGAL_REPRESENTATIVE"
            roles = [p["role"] for p in persons]
            assert set(roles) <= ROLES and len(set(roles)) == len(roles)
        for d in e["extra_documents"] + [p["document"] for p in e["restricted_persons"]]:
            check_document(d)


def test_mix_of_listings_matches_the_brief(events):
    lists = [e for e in events if e["type"] == "LIST"]
    kinds = Counter(e["subject"]["kind"] for e in lists)
    assert 0.075 < kinds["ORGANIZATION"] / N < 0.125
    assert 0.72 < sum(e["list_type"] == "DISHONEST" for e in lists) / N < 0.78
    assert 0.27 < sum(e["expires_on"] is None for e in lists) / N < 0.33
    persons = [e for e in lists if e["subject"]["kind"] == "PERSON"]
    assert 0.03 < sum(bool(e["extra_documents"]) for e in persons) / len(persons) < 0.07
    types = Counter(e["type"] for e in events)
    assert 0.06 < types["DELIST"] / N < 0.10 and 0.035 < types["PERFORM"] / N < 0.065
    for kind in ("EXTEND", "CORRECT", "EXEMPT"):
        assert 0.01 < types[kind] / N < 0.045, kind
    assert any(e["type"] == "DELIST" and e["reason"] == "EXPIRED" for e in events)


def test_some_people_have_several_listings(events):
    subjects = Counter(e["subject"]["document"]["number"] for e in events if e["type"] == "LIST")
    repeats = sum(1 for c in subjects.values() if c > 1)
    assert 0.01 * N < repeats < 0.06 * N


def test_all_documents_are_unique_except_repeat_debtors(events):
    """Restricted persons, organisations and passports are never shared by accident."""
    owners: dict[tuple, set] = {}
    for e in events:
        if e["type"] == "LIST":
            for d in [p["document"] for p in e["restricted_persons"]]:
                owners.setdefault(key(d), set()).add(e["listing_id"])
            if e["subject"]["kind"] == "ORGANIZATION":
                owners.setdefault(key(e["subject"]["document"]), set()).add(e["listing_id"])
    assert all(len(v) == 1 for v in owners.values())


def test_follow_ups_are_consistent_and_lifting_is_final(events, replay):
    # Replay asserts: no event for an unknown or lifted listing, EXTEND later than the
    # current expiry, CORRECT only of correctable fields, EXEMPT of a current person.
    assert len(replay.lifted_at) == sum(e["type"] in ("DELIST", "PERFORM") for e in events)
    for e in events:
        lid = e["listing_id"]
        if e["type"] == "LIST" or lid.startswith("DEMO-"):
            continue
        after = datetime.datetime.fromisoformat(e["occurred_at"]) - replay.listed_at[lid]
        if e["type"] == "DELIST" and e["reason"] == "EXPIRED":
            assert e["effective_on"] == replay.listings[lid]["expires_on"]
            assert after >= datetime.timedelta(days=731)
        else:
            assert datetime.timedelta(days=1) <= after <= datetime.timedelta(days=31), e["event_id"]


# ---------------------------------------------------------------- showcase


def test_showcase_opens_the_feed_and_counts_as_listings(events):
    assert [e["event_id"] for e in events[:4]] == [
        "DEMO-PERSON-1:list",
        "DEMO-ORG-1:list",
        "DEMO-EXEMPT-1:list",
        "DEMO-EXEMPT-1:exempt",
    ]
    person, org, exempt_person, exempt = events[:4]
    assert person["subject"]["document"] == synth.SHOWCASE["DEMO-PERSON-1"]["document"]
    assert person["subject"]["name"] == "张伟" and person["expires_on"] is None
    assert person["case_number"] == "(2023)京0105执1234号" and person["court"] == "北京市朝阳区人民法院"
    number = person["subject"]["document"]["number"]
    assert number.startswith("11010519800101") and int(number[14:17]) % 2 == 1
    assert org["subject"]["name"] == "上海示例贸易有限公司" and org["expires_on"] == "2029-03-15"
    assert org["restricted_persons"][0]["name"] == "李娜"
    assert org["restricted_persons"][0]["document"]["number"].startswith("310115")
    wang = exempt_person["subject"]["document"]["number"]
    assert wang.startswith("440305") and int(wang[14:17]) % 2 == 0
    assert exempt_person["expires_on"] == "2028-01-10"
    assert exempt["modes"] == ["FLIGHT"] and exempt["valid_from"] == "2026-01-01"
    assert exempt["valid_to"] == "2027-12-31" and exempt["reference"] == "(2024)粤0305执89号之一"
    for e in events[:3]:
        check_document(e["subject"]["document"])
    check_document(org["restricted_persons"][0]["document"])
    assert all(not e["listing_id"].startswith("DEMO-") for e in events[4:])


def test_showcase_is_seed_independent_and_needs_three_listings():
    assert list(synth.generate_events(1, 3))[:4] == list(synth.generate_events(99, 3))[:4]
    assert [e["type"] for e in synth.generate_events(1, 3)] == ["LIST", "LIST", "LIST", "EXEMPT"]
    small = list(synth.generate_events(1, 2))
    assert sum(e["type"] == "LIST" for e in small) == 2
    assert not any(e["listing_id"].startswith("DEMO-") for e in small)


# ---------------------------------------------------------------- probes


def test_probe_expectations_match_a_replay_of_the_feed(replay, probes, events):
    index = replay.active_index()
    expect = Counter(p["expect"] for p in probes)
    assert {"LISTED", "ORG_PERSON", "LIFTED", "CORRECTED_AWAY", "NEVER_LISTED"} <= set(expect)
    for p in probes:
        doc = p["document"]
        check_document(doc)
        k = key(doc)
        if p["expect"] == "LISTED":
            assert "S" in index.get(k, ()), p
        elif p["expect"] == "ORG_PERSON":
            assert index.get(k) == {"R"}, p
        elif p["expect"] in ("LIFTED", "CORRECTED_AWAY"):
            assert k not in index and k in replay.seen, p
        else:
            assert p["expect"] == "NEVER_LISTED" and p["listing_id"] is None
            assert k not in replay.seen
            assert doc["type"] == "RESIDENT_ID"
            assert synth.NEVER_SEQ_BASE <= int(doc["number"][14:17]) < synth.NEVER_SEQ_BASE + synth.NEVER_SEQ_COUNT
        if p["expect"] == "LIFTED":
            assert not replay.listings[p["listing_id"]]["active"]
            assert p["as_of"] == replay.lifted_at[p["listing_id"]].isoformat()
        if p["expect"] in ("LISTED", "ORG_PERSON"):
            rec = replay.listings[p["listing_id"]]
            assert rec["active"]
            as_of = day(p["as_of"])
            assert rec["listed_on"] <= as_of and (rec["expires_on"] is None or as_of < day(rec["expires_on"]))


def test_probes_cover_every_restricted_document_when_small(replay, probes):
    index = replay.active_index()
    listed = {key(p["document"]) for p in probes if p["expect"] == "LISTED"}
    org_persons = {key(p["document"]) for p in probes if p["expect"] == "ORG_PERSON"}
    assert listed == {k for k, roles in index.items() if "S" in roles}
    assert org_persons == {k for k, roles in index.items() if roles == {"R"}}
    positives = len(listed) + len(org_persons)
    assert sum(p["expect"] == "NEVER_LISTED" for p in probes) == positives


def test_probes_of_a_large_feed_sample_whole_blocks(monkeypatch):
    monkeypatch.setattr(synth, "PROBE_SAMPLE_LISTINGS", 1024)
    n = 12_000
    probes = list(synth.generate_probes(SEED, n, never_listed=50))
    index = Replay(list(synth.generate_events(SEED, n))).active_index()
    sampled = {p["listing_id"] for p in probes if p["listing_id"] and not p["listing_id"].startswith("DEMO-")}
    blocks = {int(lid[1:]) // synth.BLOCK for lid in sampled}
    assert len(blocks) == 4 and max(blocks) > (n // synth.BLOCK) // 2  # spread over the feed
    assert sum(p["expect"] == "NEVER_LISTED" for p in probes) == 50
    for p in probes:
        k = key(p["document"])
        if p["expect"] == "LISTED":
            assert "S" in index.get(k, ())
        elif p["expect"] == "ORG_PERSON":
            assert index.get(k) == {"R"}
        else:
            assert k not in index


def test_showcase_probes():
    probes = {p["document"]["number"]: p for p in synth.generate_probes(1, 3)}
    person = synth.SHOWCASE["DEMO-PERSON-1"]["document"]["number"]
    rep = synth.SHOWCASE["DEMO-ORG-1"]["restricted_persons"][0]["document"]["number"]
    assert probes[person]["expect"] == "LISTED" and probes[person]["listing_id"] == "DEMO-PERSON-1"
    assert probes[rep]["expect"] == "ORG_PERSON"
    assert probes[synth.SHOWCASE["DEMO-ORG-1"]["document"]["number"]]["expect"] == "LISTED"
    assert probes[synth.SHOWCASE["DEMO-EXEMPT-1"]["document"]["number"]]["expect"] == "LISTED"


# ---------------------------------------------------------------- bounded memory and CLI


def test_generation_streams_in_bounded_memory():
    """Nothing keeps a list of all listings: live small-object blocks grow only with the
    per-day date caches (at most a few per calendar day), not with every event. Keeping just
    one tuple per ten events would add ~20 000 blocks here. (tracemalloc would be exact but
    costs ~0.3 ms per listing.)"""
    checkpoints = {10_000: 0, 60_000: 0}
    for k, _ in enumerate(synth._feed_lines(SEED, 60_000, synth.DEFAULT_START)):
        if k in checkpoints:
            gc.collect()
            checkpoints[k] = sys.getallocatedblocks()
    assert checkpoints[60_000] - checkpoints[10_000] < 12_000, checkpoints


def test_cli_writes_feed_and_probes(tmp_path):
    feed, probes = tmp_path / "feed.jsonl", tmp_path / "probes.jsonl"
    assert synth.main(["--seed", "7", "--listings", "300", "--out", str(feed), "--probes", str(probes)]) == 0
    assert sum(json.loads(line)["type"] == "LIST" for line in feed.open(encoding="utf-8")) == 300
    assert probes.read_text(encoding="utf-8").count("\n") == len(list(synth.generate_probes(7, 300)))
