"""The event-by-event load path as it is run for speed: parse workers on many small byte
ranges, the writer parsing ranges itself while it would wait, lines applied as they
arrive in the batch's open transaction, the counters kept in the batch's tally. Each is
held to the reference ledger (one nested transaction per event) on hostile feeds of
every event type: same outcomes line by line, same rejects file, same journal bytes,
same counters, same digest. Real LMDB stores, real worker processes."""

import gc
import json
import subprocess
import sys

import pytest
from conftest import PEPPER, doc, event, list_person, make_ric
from feedgen import hostile_feed
from sanction_service.loaders import feed as feed_module
from sanction_service.loaders.feed import decode_line_reference, feed_ranges, load_feed, numbered_feed_ranges

from sanction_service.digest import store_digest
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import TEXT, Ledger, prepare_line
from sanction_service.ledger_reference import ReferenceLedger
from sanction_service.store import Store, encode_u64


def _store(tmp_path, name):
    return Store(tmp_path / name, pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)


def _write_feed(path, seed: int, listings: int) -> None:
    path.write_bytes(
        b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in hostile_feed(seed, listings))
        + b"\n\n"  # blank lines: numbered, never reported
        + b'{"event_id":"last-line-without-a-line-feed"'
    )


def _journal(view) -> list[bytes]:
    return [view.journal_entry(seq) for seq in range(1, view.seq() + 1)]


@pytest.mark.parametrize(
    ("seed", "writer_parses"),
    [(7, "never"), (7, "always"), (8, "when-idle")],
)
def test_event_path_with_parse_workers_is_the_reference_ledger(tmp_path, monkeypatch, seed, writer_parses):
    """`sanction load`'s event path with a parse worker on 16 KiB ranges (so ~100 ranges,
    and several batches of 400 lines): with the writer never parsing, always parsing the
    next range itself (every AsyncResult reported not ready), or as it happens."""
    feed = tmp_path / "feed.jsonl"
    _write_feed(feed, seed, 2500)
    monkeypatch.setattr(Ledger, "RANGE_BYTES", 16 << 10)
    monkeypatch.setattr(feed_module, "AHEAD_PER_WORKER", 2)
    if writer_parses == "always":
        monkeypatch.setattr(feed_module, "_ready", lambda result: False)
    if writer_parses == "never":
        original = feed_module.read_feed_ranges
        monkeypatch.setattr(
            feed_module,
            "read_feed_ranges",
            lambda *args, **kwargs: original(*args, **kwargs, help_parse=False),
        )

    parsed_here = []
    prepare_range = feed_module._prepare_range
    monkeypatch.setattr(feed_module, "_prepare_range", lambda *a: parsed_here.append(a[1]) or prepare_range(*a))
    event_store, ref_store = _store(tmp_path, "event"), _store(tmp_path, "ref")
    summary = load_feed(
        Ledger(event_store, PEPPER), feed, tmp_path / "event.rejects", show_progress=False, parse_workers=1, batch_size=400
    )
    with open(feed, "rb") as f:
        ref_lines = [line for n, raw in enumerate(f, 1) if (line := decode_line_reference(n, raw)) is not None]
    ref_out = list(ReferenceLedger(ref_store, PEPPER).apply(ref_lines, batch_size=400))

    if writer_parses == "always":
        assert len(parsed_here) > 50  # (of ~100 ranges; the worker's are counted in its process)
    if writer_parses == "never":
        assert parsed_here == []
    rejects = [json.loads(line) for line in open(tmp_path / "event.rejects", encoding="utf-8")]
    assert [(r["line"], r["event_id"], r["field"], r["reason"]) for r in rejects] == [
        (o.line, o.event_id, o.field, o.reason) for o in ref_out if o.status == "REJECTED"
    ]
    assert rejects[-1]["line"] == len(feed.read_bytes().split(b"\n"))  # numbered across every range
    assert (summary.applied, summary.duplicates, summary.rejected) == tuple(
        sum(1 for o in ref_out if o.status == s) for s in ("APPLIED", "DUPLICATE", "REJECTED")
    )
    assert summary.rejected > 100 and summary.duplicates > 10 and summary.applied > 2500
    with event_store.read() as a, ref_store.read() as b:
        assert a.seq() == b.seq() == summary.data_version
        assert _journal(a) == _journal(b)
        assert a.counters() == b.counters()
        assert store_digest(a) == store_digest(b)
        assert a.count("bindings") > 0 and a.count("exemptions") > 0
    event_store.close()
    ref_store.close()


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_numbered_feed_ranges_are_feed_ranges_numbered_as_enumerate_numbers_lines(tmp_path, chunk_bytes):
    path = tmp_path / "feed.jsonl"
    path.write_bytes(b'{"a":1}\n\n\r\n{"b":"x\rx"}\n' + b"y" * 100 + b"\n{}\n" + b"last, no line feed")
    data = path.read_bytes()
    starts = {}  # (a \r is no line end for the loader: it splits at line feeds only)
    offset = 0
    for number, raw in enumerate(open(path, "rb"), 1):
        starts[offset] = number
        offset += len(raw)
    spans = list(numbered_feed_ranges(path, chunk_bytes))
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(starts[start] == first for start, _, first in spans)
    assert [(start, end) for start, end, _ in spans] == list(feed_ranges(path, chunk_bytes))


def test_the_event_path_commits_whole_batches_only_when_its_source_fails_midway(tmp_path):
    """Lines are applied as they arrive, in the open transaction of their batch: a source
    that fails after four lines (batches of three) leaves the first batch committed and
    nothing of the fourth line."""
    store = _store(tmp_path, "s")
    key_of = Ledger(store, PEPPER).key_of

    def source():
        for i in range(4):
            raw = json.dumps(list_person(f"S-{i}", make_ric("110105", "19800101", 700 + i))).encode()
            yield prepare_line(i + 1, raw, key_of)
        raise RuntimeError("the feed broke")

    seen = []
    with pytest.raises(RuntimeError, match="the feed broke"):
        for outcome in Ledger(store, PEPPER).apply(source(), batch_size=3):
            seen.append(outcome.status)
    assert seen == ["APPLIED"] * 3
    with store.read() as view:
        assert view.seq() == 3
        assert view.listing("S-2") is not None and view.listing("S-3") is None
    store.close()


def test_a_journal_sequence_already_taken_is_refused_not_skipped(tmp_path):
    """The journal's rows are appended (MDB_APPEND); a row above the store's sequence (a
    damaged store) makes LMDB refuse the append, which aborts the batch loudly."""
    store = _store(tmp_path, "s")
    with store.writing("test"), store.begin_write() as txn:
        txn.put(encode_u64(5), b"{}", db=store.journal)
    raw = json.dumps(list_person("J-1", make_ric("110105", "19800101", 710))).encode()
    ledger = Ledger(store, PEPPER)
    with pytest.raises(RuntimeError, match="not above the journal's last entry"):
        list(ledger.apply([prepare_line(1, raw, ledger.key_of)]))
    with store.read() as view:
        assert view.seq() == 0 and view.listing("J-1") is None
    store.close()


def test_load_feed_restores_the_garbage_collector(tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps(list_person("G-1", make_ric("110105", "19800101", 720))) + "\n", encoding="utf-8")
    store = _store(tmp_path, "s")
    assert gc.isenabled()
    summary = load_feed(Ledger(store, PEPPER), feed, tmp_path / "rejects", show_progress=False)
    assert summary.applied == 1 and gc.isenabled()
    store.close()


def test_a_daily_load_does_not_import_numpy_or_the_prefilter():
    """~120 ms of a `sanction load`'s start-up (numpy, pybloom-live): only --bulk, a
    persisted prefilter to refresh, or a batch check need them."""
    code = (
        "import sys\n"
        "import sanction_service.cli, sanction_service.loaders.feed, sanction_service.ledger\n"
        "print(sorted(m for m in ('numpy', 'pybloom_live', 'sanction_service.bulk', 'sanction_service.prefilter')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_corrections_and_exemptions_are_decoded_by_the_writer_only_and_rejected_as_the_reference_rejects_them(tmp_path):
    """A CORRECT or EXEMPT line reaches the writer undecoded (TEXT), valid or not: the
    writer's decoding gives each its outcome, the reference ledger's, line by line."""
    number = make_ric("110105", "19800101", 730)
    other = make_ric("110105", "19800101", 731)
    lines = [
        list_person("T-1", number),
        event("CORRECT", "T-1", court="某某法院"),
        event("CORRECT", "T-1", court=7),  # not a string
        event("CORRECT", "T-1", listed_on="2024-02-30"),  # no such day
        event(
            "EXEMPT",
            "T-1",
            document=doc(number),
            modes=["FLIGHT"],
            valid_from="2026-01-01",
            valid_to="2026-12-31",
            reference="(2026)京01执1号",
        ),
        event(
            "EXEMPT",
            "T-1",
            document=doc(other),
            modes=["FLIGHT"],
            valid_from="2026-01-01",
            valid_to="2026-12-31",
            reference="(2026)京01执2号",
        ),  # not a person of this listing
        event("EXEMPT", "T-1", document={"type": "RESIDENT_ID", "number": "123"}, modes=["FLIGHT"]),
        event("CORRECT", "T-404", court="某某法院"),  # unknown listing
    ]
    raws = [json.dumps(e, ensure_ascii=False).encode() + b"\n" for e in lines]
    store, ref_store = _store(tmp_path, "s"), _store(tmp_path, "ref")
    ledger = Ledger(store, PEPPER)
    items = [prepare_line(n, raw, ledger.key_of) for n, raw in enumerate(raws, 1)]
    assert [item[1] for item in items[1:]] == [TEXT] * (len(items) - 1)
    fast = [(o.line, o.status, o.event_id, o.field, o.reason) for o in ledger.apply(items)]
    ref_lines = [decode_line_reference(n, raw) for n, raw in enumerate(raws, 1)]
    ref = [(o.line, o.status, o.event_id, o.field, o.reason) for o in ReferenceLedger(ref_store, PEPPER).apply(ref_lines)]
    assert fast == ref
    assert [o[1] for o in fast] == ["APPLIED", "APPLIED"] + ["REJECTED"] * 2 + ["APPLIED"] + ["REJECTED"] * 3
    with store.read() as a, ref_store.read() as b:
        assert _journal(a) == _journal(b) and store_digest(a) == store_digest(b)
    store.close()
    ref_store.close()


def test_a_load_that_fails_midway_shuts_its_workers_and_releases_the_writer_lock_at_once(tmp_path):
    """With the collector off during a load, a failure (here the LMDB map filling up) must
    not leave the reader's worker pool and the ledger's run to finalisers: both are closed
    before load_feed raises."""
    import multiprocessing

    from sanction_service.store import StoreFull

    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(hostile_feed(3, 2000, hostile_share=0)) + "\n", encoding="utf-8")
    store = Store(tmp_path / "s", pepper_fingerprint(PEPPER), create=True, map_size=1 << 20)
    gc.disable()
    try:
        with pytest.raises(StoreFull):
            load_feed(Ledger(store, PEPPER), feed, tmp_path / "rejects", show_progress=False, parse_workers=1, batch_size=200)
        assert multiprocessing.active_children() == []
        assert not store.writer.held_by_this_thread()
    finally:
        gc.enable()
    store.close()
