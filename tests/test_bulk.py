"""The bulk path ends in exactly the state the event-by-event path reaches."""

import errno
import json
import os

import pytest
from conftest import PEPPER, doc, event, feed_lines, list_org, list_person, make_ric, make_uscc
from sanction_service.loaders import synth
from sanction_service.loaders.feed import _parse_range as _PARSE_RANGE

from sanction_service.bulk import BulkLedger, StoreNotEmpty
from sanction_service.digest import store_digest
from sanction_service.identity import DocumentType, document_key, normalize, pepper_fingerprint
from sanction_service.ledger import FeedLine, Ledger
from sanction_service.prefilter import Prefilter
from sanction_service.store import Store

A, B, C = (make_ric("110105", "19800101", n) for n in (1, 2, 3))


def handmade():
    return [
        list_person("L1", A, event_id="1"),
        list_org("O1", make_uscc(), [("LEGAL_REPRESENTATIVE", "李娜", B)], event_id="2"),
        list_person("L0", C, event_id="3"),  # a listing id below the last one: no append
        event(
            "EXEMPT",
            "O1",
            event_id="4",
            document=doc(B),
            modes=["FLIGHT"],
            valid_from="2025-01-01",
            valid_to="2025-01-31",
            reference="R",
        ),
        event("CORRECT", "O1", event_id="5", restricted_persons=[{"role": "PRINCIPAL", "name": "王", "document": doc(C)}]),
        event("DELIST", "L1", event_id="6", reason="SETTLED", effective_on="2025-01-01"),
        list_person("L1", B, event_id="7"),  # rejected: reused id
        list_person("L2", A, event_id="8"),
        event("PERFORM", "L2", event_id="9", performed_on="2025-02-01"),
        list_person("L3", A, event_id="10"),
    ]


def load_both(tmp_path, lines_factory, batch_size=7):
    slow = Store(tmp_path / "slow", pepper_fingerprint(PEPPER), create=True, map_size=32 << 20)
    fast = Store(tmp_path / "fast", pepper_fingerprint(PEPPER), create=True, map_size=32 << 20)
    slow_out = [(o.line, o.status, o.seq) for o in Ledger(slow, PEPPER).apply(lines_factory())]
    bulk = BulkLedger(fast, PEPPER)
    with bulk.session("test"):
        fast_out = [(o.line, o.status, o.seq) for o in bulk.apply(lines_factory(), batch_size=batch_size)]
        prefilter = bulk.finish(error_rate=0.001)
    return slow, fast, slow_out, fast_out, prefilter


@pytest.mark.parametrize("source", ["handmade", "synthetic"])
def test_bulk_and_event_by_event_paths_reach_the_same_digest(tmp_path, source, monkeypatch):
    monkeypatch.setattr(BulkLedger, "DROP_PAGES_EVERY", 300)  # exercise the periodic page dropping
    if source == "handmade":

        def lines():
            return feed_lines(handmade())
    else:

        def lines():
            return (FeedLine(i, e) for i, e in enumerate(synth.generate_events(3, 2000), 1))

    slow, fast, slow_out, fast_out, prefilter = load_both(tmp_path, lines)
    assert slow_out == fast_out
    with slow.read() as a, fast.read() as b:
        assert store_digest(a) == store_digest(b)
        rebuilt = Prefilter.build(a, error_rate=0.001)
        assert prefilter.covered_seq == a.seq()
        assert all(prefilter.may_contain(k) for k in a.active_keys())
        assert sum(1 for _ in a.active_keys()) > 0 and rebuilt.bloom.count == prefilter.bloom.count
    slow.close()
    fast.close()


def test_bulk_prefilter_holds_the_active_people_of_the_handmade_feed(tmp_path):
    *_, prefilter = load_both(tmp_path, lambda: feed_lines(handmade()))
    key = document_key(PEPPER, normalize(DocumentType.RESIDENT_ID, A))
    assert prefilter.may_contain(key)


def test_bulk_refuses_a_store_that_is_not_empty(store, ledger):
    list(ledger.apply(feed_lines([list_person("L1", A)])))
    with pytest.raises(StoreNotEmpty), BulkLedger(store, PEPPER).session("test"):
        pass


def test_parallel_parsing_gives_the_same_outcomes_as_serial(tmp_path):
    import json

    from sanction_service.loaders.feed import read_feed, read_feed_parallel

    feed = tmp_path / "feed.jsonl"
    with open(feed, "wb") as f:
        for e in handmade():
            f.write(json.dumps(e, ensure_ascii=False).encode() + b"\n")
        f.write(b"{broken\n\xff\xfe\n\n" + json.dumps(event("NOPE", "L1")).encode() + b"\n")

    def outcomes(lines, name):
        store = Store(tmp_path / name, pepper_fingerprint(PEPPER), create=True, map_size=16 << 20)
        result = [(o.line, o.status, o.event_id, o.reason, o.field) for o in Ledger(store, PEPPER).apply(lines)]
        store.close()
        return result

    serial = outcomes(read_feed(feed), "serial")
    parallel = outcomes(read_feed_parallel(feed, 2, chunk_lines=3), "parallel")
    assert serial == parallel
    assert [o[1] for o in serial[-3:]] == ["REJECTED"] * 3


def _rejects(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.mark.parametrize("seed", [5, 6])
def test_bulk_event_and_reference_paths_agree_on_a_hostile_feed_of_every_event_type(tmp_path, seed, monkeypatch):
    """A synthetic feed of every event type with hostile lines mixed in (parse rejections,
    duplicates, conflicts, reused, unknown and lifted listings, padded identifiers, blank
    lines), loaded from a file three ways: bulk (parse workers on small byte ranges, so
    many blobs, appends and page drops), the event path and the reference ledger. Same
    summary, same rejects file, same digest (bindings and exemptions included)."""
    from feedgen import hostile_feed
    from sanction_service.loaders.feed import decode_line_reference, load_feed

    from sanction_service.ledger_reference import ReferenceLedger

    monkeypatch.setattr(BulkLedger, "RANGE_BYTES", 64 << 10)
    monkeypatch.setattr(BulkLedger, "DROP_PAGES_EVERY", 500)
    monkeypatch.setattr(BulkLedger, "BATCH", 700)
    monkeypatch.setattr(BulkLedger, "INDEX_CHUNK", 1000)  # the indexes in several transactions
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(
        b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in hostile_feed(seed, 2500))
        + b'{"event_id":"last-line-without-a-line-feed"'
    )

    def store(name):
        return Store(tmp_path / name, pepper_fingerprint(PEPPER), create=True, map_size=256 << 20)

    bulk_store, event_store, ref_store = store("bulk"), store("event"), store("ref")
    bulk = BulkLedger(bulk_store, PEPPER)
    with bulk.session("test"):
        bulk_summary = load_feed(
            bulk, feed, tmp_path / "bulk.rejects", show_progress=False, parse_workers=2, batch_size=BulkLedger.BATCH
        )
        bulk.finish(error_rate=0.001)
    event_summary = load_feed(Ledger(event_store, PEPPER), feed, tmp_path / "event.rejects", show_progress=False)
    with open(feed, "rb") as f:
        ref_lines = [line for n, raw in enumerate(f, 1) if (line := decode_line_reference(n, raw)) is not None]
    ref_out = [(o.line, o.status, o.event_id, o.field, o.reason) for o in ReferenceLedger(ref_store, PEPPER).apply(ref_lines)]

    assert bulk_summary == event_summary.__class__(**{**event_summary.__dict__, "rejects_path": bulk_summary.rejects_path})
    assert event_summary.rejected > 100 and event_summary.duplicates > 10 and event_summary.applied > 2500
    assert _rejects(tmp_path / "bulk.rejects") == _rejects(tmp_path / "event.rejects")
    assert [(r["line"], r["event_id"], r["field"], r["reason"]) for r in _rejects(tmp_path / "event.rejects")] == [
        (o[0], o[2], o[3], o[4]) for o in ref_out if o[1] == "REJECTED"
    ]
    with bulk_store.read() as a, event_store.read() as b, ref_store.read() as c:
        assert store_digest(a) == store_digest(b) == store_digest(c)
        assert a.count("bindings") > 0 and a.count("exemptions") > 0
        assert {k for k in a.counters() if k.startswith("delisted:")} >= {"delisted:SETTLED", "delisted:PERFORMED"}
    for s in (bulk_store, event_store, ref_store):
        s.close()


def test_parse_workers_hand_back_through_files_the_lines_prepared_one_by_one(tmp_path, monkeypatch):
    """read_feed_ranges (blobs through files, the writer parsing some ranges itself) gives
    what ledger.prepare_line gives line by line, line numbers included, and leaves no blob
    behind, whether the reading ends or stops early."""
    import glob
    import tempfile

    from feedgen import hostile_feed
    from sanction_service.loaders import feed as feed_module
    from sanction_service.loaders.feed import read_feed_ranges

    from sanction_service import bulkranges
    from sanction_service.identity import DocumentKeys
    from sanction_service.ledger import prepare_line

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(bulkranges, "SHM", str(tmp_path / "no-tmpfs-here"))
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in hostile_feed(7, 600)))
    key_of = DocumentKeys(PEPPER)
    one_by_one = [
        item
        for number, raw in enumerate(feed.read_bytes().splitlines(keepends=True), 1)
        if (item := prepare_line(number, raw, key_of)) is not None
    ]
    assert list(read_feed_ranges(feed, 2, PEPPER, chunk_bytes=8 << 10, help_parse=False)) == one_by_one
    monkeypatch.setattr(feed_module, "_ready", lambda result: False)  # the writer parses whenever it may
    assert list(read_feed_ranges(feed, 2, PEPPER, chunk_bytes=8 << 10)) == one_by_one
    assert len({item[0] for item in one_by_one}) == len(one_by_one) > 600
    assert glob.glob(str(tmp_path / "sanction-bulk-*")) == []
    early = read_feed_ranges(feed, 2, PEPPER, chunk_bytes=8 << 10)
    next(early)
    assert len(glob.glob(str(tmp_path / "sanction-bulk-*"))) == 1
    early.close()
    assert glob.glob(str(tmp_path / "sanction-bulk-*")) == []


def _parse_range_with_no_room(job):
    """A parse worker whose blob directory is full for every range but the feed's first."""
    span, out = job
    if span[2] > 1:
        open(out, "wb").close()  # as a write cut short leaves it
        raise OSError(errno.ENOSPC, "No space left on device", out)
    return _PARSE_RANGE(job)


def test_a_full_blob_directory_makes_the_writer_parse_those_ranges_itself(tmp_path, monkeypatch):
    """A container's /dev/shm is small (64 MB by default): a worker that cannot write its
    range's blob does not stop the load; the writer parses that range, the same items."""
    import glob
    import tempfile

    from feedgen import hostile_feed
    from sanction_service.loaders import feed as feed_module
    from sanction_service.loaders.feed import read_feed_ranges

    from sanction_service import bulkranges
    from sanction_service.identity import DocumentKeys
    from sanction_service.ledger import prepare_line

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(bulkranges, "SHM", str(tmp_path / "no-tmpfs-here"))
    monkeypatch.setattr(feed_module, "_parse_range", _parse_range_with_no_room)
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in hostile_feed(9, 600)))
    key_of = DocumentKeys(PEPPER)
    one_by_one = [
        item
        for number, raw in enumerate(feed.read_bytes().splitlines(keepends=True), 1)
        if (item := prepare_line(number, raw, key_of)) is not None
    ]
    assert list(read_feed_ranges(feed, 1, PEPPER, chunk_bytes=8 << 10, help_parse=False)) == one_by_one
    assert glob.glob(str(tmp_path / "sanction-bulk-*")) == []


def test_bulkprep_item_kinds_are_the_ledgers():
    from sanction_service import bulkprep, ledger

    assert (bulkprep.PREPARED, bulkprep.TEXT, bulkprep.FOLLOW) == (ledger.PREPARED, ledger.TEXT, ledger.FOLLOW)


def test_prefilter_filler_thread_sets_the_bits_add_many_sets_and_hands_back_its_error():
    import numpy as np

    from sanction_service.bulk import _Filler

    keys = np.frombuffer(bytes(range(256)) * 64, dtype=np.uint8).reshape(-1, 16)
    here, there = (Prefilter.empty(capacity=10_000, error_rate=0.001, store_id="s") for _ in range(2))
    here.add_many(keys)
    _Filler(there, keys).join()
    assert bytes(there.bloom.bitarray) == bytes(here.bloom.bitarray) and there.bloom.count == here.bloom.count

    class Broken:
        def add_many(self, keys):
            raise MemoryError("no room")

    filler = _Filler(Broken(), keys)
    with pytest.raises(MemoryError):
        filler.join()
    filler.join()  # reported once


def test_bulk_blob_directories_of_dead_loads_are_removed(tmp_path, monkeypatch):
    """A bulk load killed with SIGKILL leaves its blob directory behind: the next load
    removes those whose process is gone, and leaves a live process's alone."""
    import subprocess
    import sys

    from sanction_service import bulkranges

    monkeypatch.setattr(bulkranges, "SHM", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"sanction-bulk-{int(dead.stdout)}-abc"
    orphan.mkdir()
    (orphan / "0").write_bytes(b"blob")
    alive = tmp_path / f"sanction-bulk-{os.getppid()}-def"
    alive.mkdir()
    other = tmp_path / "sanction-bulk-notapid"
    other.mkdir()
    mine = bulkranges.blob_directory()
    assert not orphan.exists() and alive.exists() and other.exists()
    assert os.path.basename(mine).startswith(f"sanction-bulk-{os.getpid()}-")
