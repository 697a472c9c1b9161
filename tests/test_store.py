"""The store fails closed: missing, corrupt or foreign-peppered stores never open."""

import lmdb
import pytest
from conftest import PEPPER, apply, list_person, make_ric

from sanction_service.identity import pepper_fingerprint
from sanction_service.ledger import APPLIED, Ledger
from sanction_service.store import PepperMismatch, Store, StoreCorrupt, StoreMissing


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


def test_map_grows_on_demand_without_losing_the_batch(tmp_path):
    tiny = Store(tmp_path / "tiny", pepper_fingerprint(PEPPER), create=True, map_size=64 << 10)
    events = [list_person(f"L{i}", make_ric("110105", "19800101", i % 1000), obligation="x" * 500)
              for i in range(1, 400)]
    outcomes = apply(Ledger(tiny, PEPPER), *events)
    assert [o.status for o in outcomes] == [APPLIED] * len(events)
    assert tiny.env.info()["map_size"] > 64 << 10
    with tiny.read() as view:
        assert view.seq() == len(events) and view.count("listings") == len(events)
    tiny.close()
