"""Canonical store digest, and hot backup (`sanction backup`) restoring to the same digest."""

import json

from conftest import PEPPER, apply, event, list_person, make_ric
from processes import sanction

from sanction_service.digest import store_digest
from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import Ledger
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
