"""The prefilter never hides a committed listing, and never trusts a damaged file."""

import json

import pytest
from conftest import PEPPER, apply, list_person, make_ric

from sanction_service.identity import DocumentType, document_key, normalize
from sanction_service.prefilter import Prefilter, PrefilterUnusable, load_or_build

PEOPLE = [make_ric("110105", "19800101", n) for n in range(1, 40)]


def key(number):
    return document_key(PEPPER, normalize(DocumentType.RESIDENT_ID, number))


@pytest.fixture
def saved(ledger, store, tmp_path):
    apply(ledger, *[list_person(f"L{i}", n) for i, n in enumerate(PEOPLE[:20])])
    path = tmp_path / "prefilter.bloom"
    with store.read() as view:
        Prefilter.build(view, error_rate=0.001).save(path, view)
    return path


def test_built_filter_holds_every_active_key(saved, store):
    with store.read() as view:
        prefilter = Prefilter.load(saved, view)
    assert all(prefilter.may_contain(key(n)) for n in PEOPLE[:20])
    assert prefilter.covered_seq == 20


def test_catch_up_adds_listings_committed_after_the_file(saved, ledger, store):
    apply(ledger, list_person("NEW", PEOPLE[30]))
    with store.read() as view:
        prefilter = Prefilter.load(saved, view)
        assert prefilter.covered_seq == 20
        prefilter.catch_up(view)
    assert prefilter.covered_seq == 21 and prefilter.may_contain(key(PEOPLE[30]))


def test_catch_up_stops_at_the_callers_snapshot(saved, ledger, store):
    with store.read() as old_view:
        prefilter = Prefilter.load(saved, old_view)
        apply(ledger, list_person("NEW", PEOPLE[31]))
        prefilter.catch_up(old_view)
        assert prefilter.covered_seq == 20


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[-10:]
    elif how == "bit-flipped":
        data[-5] ^= 0x10
    elif how == "other-pybloom-version" or how == "other-format":
        start = 12
        length = int.from_bytes(data[8:12], "big")
        header = json.loads(data[start : start + length])
        if how == "other-format":
            header["format_version"] = 99
        else:
            header["pybloom_live_version"] = "0.0.1"
        encoded = json.dumps(header).encode()
        data = data[:8] + len(encoded).to_bytes(4, "big") + encoded + data[start + length :]
    elif how == "garbage":
        data = bytearray(b"not a filter at all")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "other-pybloom-version", "other-format", "garbage"])
def test_damaged_or_foreign_files_are_detected_and_rebuilt(saved, store, how):
    damage(saved, how)
    with store.read() as view:
        with pytest.raises(PrefilterUnusable):
            Prefilter.load(saved, view)
        prefilter, how_obtained = load_or_build(saved, view, error_rate=0.001)
    assert how_obtained.startswith("rebuilt")
    assert all(prefilter.may_contain(key(n)) for n in PEOPLE[:20])


def test_file_from_another_store_is_not_trusted(saved, tmp_path):
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.store import Store

    other = Store(tmp_path / "other", pepper_fingerprint(PEPPER), create=True, map_size=16 << 20)
    with other.read() as view, pytest.raises(PrefilterUnusable, match="another store"):
        Prefilter.load(saved, view)
    other.close()


def test_file_covering_a_history_the_store_does_not_have_is_not_trusted(saved, store, tmp_path, ledger):
    """A store restored from an older backup and then fed other events reaches the same
    sequence with other listings: the filter must notice."""
    import shutil

    from sanction_service.identity import pepper_fingerprint
    from sanction_service.ledger import Ledger
    from sanction_service.store import Store

    backup = tmp_path / "backup"
    backup.mkdir()
    store.env.copy(str(backup), compact=True)
    apply(ledger, list_person("NEWER", PEOPLE[35]))
    with store.read() as view:
        ahead = Prefilter.load(saved, view)
        ahead.catch_up(view)
        ahead.save(saved, view)  # covers seq 21 of the original history
    restored = Store(backup, pepper_fingerprint(PEPPER), map_size=16 << 20)
    apply(Ledger(restored, PEPPER), list_person("OTHER-BRANCH", PEOPLE[36]))  # seq 21 again, other listing
    with restored.read() as view, pytest.raises(PrefilterUnusable, match="history"):
        Prefilter.load(saved, view)
    restored.close()
    shutil.rmtree(backup)


def test_saturated_filter_answers_maybe_instead_of_no(store, ledger):
    with store.read() as view:
        prefilter = Prefilter.build(view, error_rate=0.001)
    prefilter.bloom.capacity = 3  # pretend it is full
    apply(ledger, *[list_person(f"S{i}", n) for i, n in enumerate(PEOPLE[:6])])
    with store.read() as view:
        prefilter.catch_up(view)
    assert prefilter.saturated
    assert prefilter.may_contain(key(PEOPLE[5])) and prefilter.may_contain(key(PEOPLE[38]))


def test_a_filter_asks_for_a_rebuild_at_80_percent_and_a_nearly_full_saved_one_is_rebuilt_larger(store, ledger, tmp_path):
    apply(ledger, *[list_person(f"R{i}", n) for i, n in enumerate(PEOPLE[:20])])
    path = tmp_path / "prefilter.bloom"
    with store.read() as view:
        small = Prefilter.build(view, error_rate=0.001, min_capacity=40)  # twice the 20 active keys
    apply(ledger, *[list_person(f"R{i}", n) for i, n in enumerate(PEOPLE[20:31], 20)])
    with store.read() as view:
        small.catch_up(view)
        assert (small.bloom.count, small.bloom.capacity) == (31, 40) and not small.needs_rebuild  # 77.5 %
    apply(ledger, *[list_person(f"R{i}", n) for i, n in enumerate(PEOPLE[31:33], 31)])
    with store.read() as view:
        small.catch_up(view)
        assert small.needs_rebuild and not small.saturated  # 33 of 40
        small.save(path, view)
        rebuilt, how = load_or_build(path, view, error_rate=0.001, min_capacity=40)
    assert "nearly full" in how and rebuilt.bloom.capacity >= 2 * 33 and not rebuilt.needs_rebuild
    assert all(rebuilt.may_contain(key(n)) for n in PEOPLE[:33])


def test_vectorised_positions_equal_the_reference_on_random_keys():
    import numpy as np

    from sanction_service.prefilter import positions, positions_many

    rng = np.random.default_rng(7)
    keys = rng.integers(0, 256, size=(20_000, 16), dtype=np.uint8)
    keys[:4] = [[0] * 16, [255] * 16, [0] * 8 + [255] * 8, [255] * 8 + [0] * 8]  # the wrap-around edges
    for slices, bits_per_slice in ((10, 1438), (7, 2**31 - 1), (14, 8_000_003)):
        many = positions_many(keys, slices, bits_per_slice)
        assert many.tolist() == [positions(bytes(k), slices, bits_per_slice) for k in keys]


def test_batch_and_single_key_adds_and_probes_agree_bit_for_bit(store):
    import numpy as np

    rng = np.random.default_rng(11)
    keys = rng.integers(0, 256, size=(5_000, 16), dtype=np.uint8)
    one, many = (Prefilter.empty(capacity=20_000, error_rate=0.001, store_id="s") for _ in range(2))
    for k in keys:
        one.add(bytes(k))
    many.add_many(keys)
    assert one.bloom.bitarray == many.bloom.bitarray and one.bloom.count == many.bloom.count == 5_000
    others = rng.integers(0, 256, size=(20_000, 16), dtype=np.uint8)
    probe = np.concatenate([keys, others])
    assert many.may_contain_many(probe).tolist() == [many.may_contain(bytes(k)) for k in probe]
    assert many.may_contain_many(keys).all()
    assert many.may_contain_many(others).mean() < 0.01  # the false-positive rate it was sized for, roughly


def test_nothing_uses_pybloom_lives_own_hashing_on_our_filters(saved, store, ledger, tmp_path, monkeypatch):
    """pybloom-live's `in` and `add` compute other bit positions: used on our filter,
    `in` would miss every listed key and answer ALLOW. Build, save, load, catch up and
    check with both of them booby-trapped."""
    from pybloom_live import BloomFilter

    from sanction_service.checker import Checker, CheckQuery

    def trap(*_):
        raise AssertionError("pybloom-live's own hashing was used")

    monkeypatch.setattr(BloomFilter, "__contains__", trap)
    monkeypatch.setattr(BloomFilter, "add", trap)
    with store.read() as view:
        Prefilter.build(view, error_rate=0.001).save(saved, view)
    apply(ledger, list_person("LATE", PEOPLE[30]))
    checker = Checker(store, PEPPER, prefilter_path=saved, error_rate=0.001)
    assert "loaded" in checker.warm_up()
    results = checker.check_many([CheckQuery("RESIDENT_ID", n) for n in (PEOPLE[0], PEOPLE[30], PEOPLE[35])])
    assert [r.decision.decision for r in results] == ["DENY", "DENY", "ALLOW"]
