"""Feed lines that used to crash `sanction load` (plain and --bulk) and fail a whole
`ApplyEvents` call with UNKNOWN: each is now that line's rejection, naming the field,
and every good line around it applies. Real `sanction load` subprocesses on real LMDB
stores; ApplyEvents on a real server."""

import json

import pytest
from conftest import PEPPER, doc, event, list_person, make_ric
from processes import sanction
from sanction_service.clients.sanction_client import Passenger
from sanction_service.loaders.feed import load_feed

from sanction_service.bulk import BulkLedger
from sanction_service.checker import Checker
from sanction_service.grpc_api.server import make_checker, open_store
from sanction_service.identity import DocumentType, normalize
from sanction_service.ledger import Ledger
from sanction_service.settings import Settings


def _with_subject_document(listing_id: str, **document) -> dict:
    number = make_ric("510104", "19700101", 500 + len(listing_id))
    return list_person(listing_id, number) | {"subject": {"kind": "PERSON", "name": "赵六", "document": doc(number) | document}}


def _deep(levels: int) -> str:
    """A LIST line whose subject nests `levels` deep: past the stdlib decoder's recursion."""
    head = json.dumps(list_person("H-DEEP", make_ric("510104", "19700101", 600)))[:-1]
    return head + ', "subject": ' + "[" * levels + "]" * levels + "}"


def _case_id(case) -> str:
    return case[0].split(": ", 1)[1]


# (crash it used to cause, line (dict, or text as sent), field, words in the reason)
HOSTILE = [
    (
        "AttributeError: country is a number",
        _with_subject_document("H-C1", country=123),
        "subject.document.country",
        "must be a string",
    ),
    (
        "AttributeError: country is a list",
        _with_subject_document("H-C2", country=["CHN"]),
        "subject.document.country",
        "must be a string",
    ),
    ("RecursionError: nested 100 000 levels", _deep(100_000), "subject", "nests deeper than 32 levels"),
    (
        "LMDB key over 511 bytes: listing_id of 200 CJK characters",
        list_person("案" * 200, make_ric("510104", "19700101", 601)),
        "listing_id",
        "128 bytes",
    ),
    (
        "LMDB key over 511 bytes: event_id of 200 emoji",
        list_person("H-E", make_ric("510104", "19700101", 602), event_id="\U0001f600" * 200),
        "event_id",
        "128 bytes",
    ),
    (
        "TypeError: DELIST reason is a list",
        event("DELIST", "G0", reason=["SETTLED"], effective_on="2025-01-01"),
        "reason",
        "one of",
    ),
    (
        "UnicodeEncodeError: lone surrogate in event_id",
        list_person("H-S1", make_ric("510104", "19700101", 603), event_id="\ud800"),
        "event_id",
        "printable",
    ),
    (
        "UnicodeEncodeError: lone surrogate in a name",
        list_person("H-S2", make_ric("510104", "19700101", 604), name="张\udfff"),
        "subject.name",
        "invalid Unicode",
    ),
    (
        "UnicodeEncodeError: lone surrogate in a field the parser ignores",
        list_person("H-S3", make_ric("510104", "19700101", 605)) | {"note": "\ud800"},
        "note",
        "not valid Unicode",
    ),
]
GOOD = [make_ric("330106", "19880808", n) for n in range(len(HOSTILE) + 1)]


def _text(line) -> str:
    # ensure_ascii keeps lone surrogates as \\u escapes, as a producer's JSON would carry them.
    return line if isinstance(line, str) else json.dumps(line)


def _interleaved() -> list[str]:
    """good 0, hostile 1, good 1, hostile 2, ... good N: hostile lines are the even line numbers."""
    lines = [_text(list_person("G0", GOOD[0]))]
    for i, (_, line, _, _) in enumerate(HOSTILE, 1):
        lines += [_text(line), _text(list_person(f"G{i}", GOOD[i]))]
    return lines


def _assert_rejects(rejects: list[dict]) -> None:
    assert [r["line"] for r in rejects] == [2 * i for i in range(1, len(HOSTILE) + 1)]
    for (name, _, field, words), reject in zip(HOSTILE, rejects):
        assert reject["field"] == field, name
        assert words in reject["reason"], (name, reject["reason"])
        # A hostile id is never copied out; a valid one is reported.
        assert reject["event_id"] == "" or reject["event_id"].startswith("ev-"), name


@pytest.mark.parametrize("mode", ["plain", "bulk"])
def test_hostile_lines_are_rejected_by_sanction_load_and_the_good_lines_apply(tmp_path, mode):
    data = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data)).returncode == 0
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(_interleaved()) + "\n", encoding="utf-8")
    extra = ["--bulk", "--parse-workers", "2"] if mode == "bulk" else []
    result = sanction("load", "--data-dir", str(data), *extra, str(feed))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    good = len(HOSTILE) + 1
    assert f"{good} applied, 0 duplicates, {len(HOSTILE)} rejected; data version {good}" in result.stdout
    _assert_rejects([json.loads(line) for line in open(f"{feed}.rejects.jsonl", encoding="utf-8")])
    settings = Settings(data_dir=str(data), metrics_port=0)
    store, pepper = open_store(settings)
    try:
        checker = make_checker(settings, store, pepper)
        for i, number in enumerate(GOOD):
            found, seq = checker.lookup_person(normalize(DocumentType.RESIDENT_ID, number))
            assert [f.listing["listing_id"] for f in found] == [f"G{i}"] and seq == good
    finally:
        store.close()


def test_hostile_events_are_rejected_by_apply_events_and_the_good_ones_apply(client):
    summary = client.apply_events(_interleaved())
    good = len(HOSTILE) + 1
    assert (summary.applied, summary.duplicates, summary.rejected, summary.data_version) == (good, 0, len(HOSTILE), good)
    _assert_rejects([{"line": r.line, "field": r.field, "reason": r.reason, "event_id": r.event_id} for r in summary.rejects])
    for i, number in enumerate(GOOD):
        found = client.lookup_person(Passenger("RESIDENT_ID", number))
        assert [m.listing_id for m in found.listings] == [f"G{i}"]


@pytest.mark.parametrize("mode", ["plain", "bulk"])
@pytest.mark.parametrize("case", HOSTILE, ids=_case_id)
def test_each_hostile_line_alone_is_rejected_and_its_neighbours_apply(tmp_path, store, case, mode):
    """One hostile line between two good ones, through the loader in this process (the
    bulk mode parses in worker processes): the loader's own regression test per crash."""
    _, line, field, words = case
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        "\n".join([_text(list_person("G0", GOOD[0])), _text(line), _text(list_person("G1", GOOD[1]))]) + "\n", encoding="utf-8"
    )
    if mode == "bulk":
        ledger = BulkLedger(store, PEPPER)
        with ledger.session("test"):
            summary = load_feed(ledger, feed, tmp_path / "rejects.jsonl", show_progress=False, parse_workers=2)
            ledger.finish(error_rate=0.001)
    else:
        summary = load_feed(Ledger(store, PEPPER), feed, tmp_path / "rejects.jsonl", show_progress=False)
    assert (summary.applied, summary.rejected, summary.data_version) == (2, 1, 2)
    (reject,) = [json.loads(x) for x in open(tmp_path / "rejects.jsonl", encoding="utf-8")]
    assert (reject["line"], reject["field"]) == (2, field) and words in reject["reason"]
    checker = Checker(store, PEPPER, prefilter_path=tmp_path / "p.bloom", error_rate=0.001)
    for i in (0, 1):
        found, _ = checker.lookup_person(normalize(DocumentType.RESIDENT_ID, GOOD[i]))
        assert [f.listing["listing_id"] for f in found] == [f"G{i}"]


@pytest.mark.parametrize("case", HOSTILE, ids=_case_id)
def test_each_hostile_event_alone_is_rejected_by_apply_events(client, case):
    _, line, field, words = case
    summary = client.apply_events([_text(list_person("G0", GOOD[0])), _text(line), _text(list_person("G1", GOOD[1]))])
    assert (summary.applied, summary.rejected, summary.data_version) == (2, 1, 2)
    (reject,) = summary.rejects
    assert (reject.line, reject.field) == (2, field) and words in reject.reason


def test_apply_events_holds_each_event_to_the_feed_line_limit(client):
    """A file's lines are refused over 1 MiB before decoding; ApplyEvents' events (which
    arrive as text inside a 4 MiB message) are held to the same bound, in UTF-8 bytes."""
    oversized = json.dumps(
        list_person("H-BIG", make_ric("510104", "19700101", 606), grounds="字" * 400_000), ensure_ascii=False
    )
    summary = client.apply_events([_text(list_person("G0", GOOD[0])), oversized, _text(list_person("G1", GOOD[1]))])
    assert (summary.applied, summary.rejected) == (2, 1)
    assert (summary.rejects[0].line, summary.rejects[0].field, summary.rejects[0].reason) == (
        2,
        "",
        "line longer than 1048576 bytes",
    )
