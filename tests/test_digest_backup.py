"""Canonical store digest, and hot backup (`sanction backup`) restoring to the same digest."""

import json

from conftest import PEPPER, apply, event, list_person, make_ric
from processes import sanction

from sanction_service.digest import store_digest
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import FeedLine, Ledger
from sanction_service.store import Store

PEOPLE = [make_ric("110105", "19800101", n) for n in range(1, 30)]


def events():
    evs = [list_person(f"L{i}", n, event_id=f"e{i}") for i, n in enumerate(PEOPLE)]
    evs.append(event("DELIST", "L3", event_id="d3", reason="SETTLED", effective_on="2025-01-01"))
    return evs


def fresh_store(path):
    return Store(path, pepper_fingerprint(PEPPER), create=True, map_size=16 << 20)


def test_same_events_give_the_same_digest_and_one_more_event_changes_it(tmp_path):
    a, b = fresh_store(tmp_path / "a"), fresh_store(tmp_path / "b")
    apply(Ledger(a, PEPPER), *events())
    apply(Ledger(b, PEPPER), *events())
    with a.read() as va, b.read() as vb:
        assert store_digest(va) == store_digest(vb)
    apply(Ledger(b, PEPPER), event("PERFORM", "L4", event_id="p4", performed_on="2025-01-01"))
    with a.read() as va, b.read() as vb:
        da, db = store_digest(va), store_digest(vb)
    assert da["all"] != db["all"] and da["listings"] != db["listings"] and da["counters"] != db["counters"]
    a.close()
    b.close()


def test_backup_restores_to_the_same_digest(tmp_path):
    data = tmp_path / "data"
    (tmp_path / "data").mkdir()
    (data / "pepper").write_bytes(PEPPER)
    store = Store(data, pepper_fingerprint(PEPPER), create=True, map_size=16 << 20)
    apply(Ledger(store, PEPPER), *events())
    store.close()
    backup = sanction("backup", "--data-dir", str(data), str(tmp_path / "backup"))
    assert backup.returncode == 0, backup.stderr
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "data.mdb").write_bytes((tmp_path / "backup" / "data.mdb").read_bytes())
    (restored / "pepper").write_bytes(PEPPER)
    original = json.loads(sanction("digest", "--data-dir", str(data)).stdout)
    copy = json.loads(sanction("digest", "--data-dir", str(restored)).stdout)
    assert original == copy and original["data_version"] == len(events())


def test_backup_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "x").write_text("keep me")
    result = sanction("backup", "--data-dir", str(tmp_path), str(tmp_path / "dest"))
    assert result.returncode == 2 and (tmp_path / "dest" / "x").read_text() == "keep me"


def test_backup_taken_during_a_load_is_the_exact_state_after_some_prefix_of_the_feed(tmp_path):
    """A hot backup is one snapshot: equal to a clean load of the feed's first N events."""
    import subprocess
    import sys
    import time

    from processes import ROOT, _env
    from sanction_service.loaders import synth

    feed = tmp_path / "feed.jsonl"
    synth.write_feed(feed, 9, 6000)
    data = tmp_path / "data"
    env = {"SANCTION_PEPPER": PEPPER.hex()}
    assert sanction("init", "--data-dir", str(data), env=env).returncode == 0
    loader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sanction_service",
            "load",
            "--data-dir",
            str(data),
            "--batch-size",
            "200",
            "--no-progress",
            str(feed),
        ],
        cwd=ROOT,
        env=_env({**env, "SANCTION_TEST_BATCH_PAUSE": "0.2"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = Store(data, pepper_fingerprint(PEPPER), map_size=16 << 20)
    while True:  # wait until the load is under way
        with store.read() as view:
            if view.seq() > 0:
                break
        time.sleep(0.01)
    store.close()
    backup = sanction("backup", "--data-dir", str(data), str(tmp_path / "backup"), env=env)
    assert backup.returncode == 0, backup.stderr
    assert loader.wait(120) == 0
    restored = Store(tmp_path / "backup", pepper_fingerprint(PEPPER), map_size=16 << 20)
    with restored.read() as view:
        version, snapshot = view.seq(), store_digest(view)
    restored.close()
    total = sum(1 for _ in open(feed, encoding="utf-8"))
    assert 0 < version < total  # taken mid-load
    prefix = tmp_path / "prefix.jsonl"
    prefix.write_text("".join(open(feed, encoding="utf-8").readlines()[:version]), encoding="utf-8")
    clean = Store(tmp_path / "clean", pepper_fingerprint(PEPPER), create=True, map_size=16 << 20)
    from sanction_service.loaders.feed import read_feed

    list(Ledger(clean, PEPPER).apply(read_feed(prefix)))
    with clean.read() as view:
        assert store_digest(view) == snapshot
        assert view.seq() == version
    clean.close()


def test_replication_bookkeeping_is_digested_apart_from_the_content(tmp_path):
    a, b = fresh_store(tmp_path / "a"), fresh_store(tmp_path / "b")
    apply(Ledger(a, PEPPER), *events())
    list(
        Ledger(b, PEPPER).apply(
            [FeedLine(i, e) for i, e in enumerate(events(), 1)],
            meta_updates=lambda batch, outcomes: {b"replication:stream_seq": b"x"},
        )
    )
    with a.read() as va, b.read() as vb:
        da, db = store_digest(va), store_digest(vb)
    assert "replication" not in da and "replication" in db
    assert {k: v for k, v in db.items() if k != "replication"} == da
    a.close()
    b.close()
