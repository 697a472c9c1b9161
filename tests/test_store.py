"""The store fails closed: missing, corrupt or foreign-peppered stores never open."""

import lmdb
import pytest
from conftest import PEPPER, apply, feed_lines, list_person, make_ric

from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import APPLIED, Ledger
from sanction_service.store import PepperMismatch, Store, StoreCorrupt, StoreFull, StoreMissing


def test_missing_store_does_not_open_unless_asked_to_create(tmp_path):
    with pytest.raises(StoreMissing):
        Store(tmp_path / "nothing", pepper_fingerprint(PEPPER), map_size=1 << 20)
    assert not (tmp_path / "nothing").exists()


def test_store_keyed_with_another_pepper_refuses_to_open(store):
    store.close()
    with pytest.raises(PepperMismatch):
        Store(store.path, pepper_fingerprint(b"another-pepper-0123456789abcdef"), map_size=1 << 20)


def test_garbage_data_file_is_corrupt(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "data.mdb").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreCorrupt):
        Store(tmp_path / "s", pepper_fingerprint(PEPPER), map_size=1 << 20)


def test_foreign_lmdb_environment_is_not_a_store(tmp_path):
    env = lmdb.open(str(tmp_path / "foreign"), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(StoreCorrupt):
        Store(tmp_path / "foreign", pepper_fingerprint(PEPPER), map_size=1 << 20)


def test_a_full_map_stops_the_load_whole_batches_only_and_names_the_setting(tmp_path):
    tiny = Store(tmp_path / "tiny", pepper_fingerprint(PEPPER), create=True, map_size=256 << 10)
    events = [list_person(f"L{i}", make_ric("110105", "19800101", i % 1000), obligation="x" * 500) for i in range(1, 400)]
    applied = []
    with pytest.raises(StoreFull, match="SANCTION_MAP_SIZE"):
        for outcome in Ledger(tiny, PEPPER).apply(feed_lines(events), batch_size=50):
            applied.append(outcome)
    with tiny.read() as view:
        # Only whole batches committed: what the loader reported is exactly what is there.
        assert 0 < view.seq() == len(applied) < len(events) and len(applied) % 50 == 0
    tiny.close()
    roomy = Store(tmp_path / "tiny", pepper_fingerprint(PEPPER), map_size=64 << 20)
    outcomes = apply(Ledger(roomy, PEPPER), *events)
    assert [o.status for o in outcomes].count(APPLIED) == len(events) - len(applied)
    with roomy.read() as view:
        assert view.seq() == len(events) and view.count("listings") == len(events)
    roomy.close()
