"""No silent ALLOW whatever the operator or the machine does: two writers at once, a
killed bulk load, checks during prefilter rebuilds, listing ids that contain what used
to be a key separator, a store restored under a newer filter file, damaged files, and
mixed pepper encodings. Real `sanction` processes throughout."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date

import pytest
from conftest import event, list_person, make_ric
from crash_harness import PEPPER, PEPPER_HEX, _store_state, digest, init, load_command, probe_violations
from processes import ROOT, ServerProcess, _env, sanction
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip
from sanction_service.loaders import synth

ENV = {"SANCTION_PEPPER": PEPPER_HEX}
FLIGHT = Trip("FLIGHT")


def write_feed(path, events):
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    return path


def start_load(data, feed, *extra, bulk=False):
    command = load_command(data, feed, bulk=bulk) + list(extra)
    # A pause after each batch keeps the load under way while the test acts on it.
    return subprocess.Popen(
        command,
        env=_env({**ENV, "SANCTION_TEST_BATCH_PAUSE": "0.1"}),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def serving_target(server):
    return server.wait_serving()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A feed of every event type whose listings are mostly in force today, its probes,
    and the digest of a clean event-by-event load of it."""
    work = tmp_path_factory.mktemp("synthetic")
    feed = work / "feed.jsonl"
    synth.write_feed(feed, 7, 6000, start=date.today())
    probes = list(synth.generate_probes(7, 6000, start=date.today()))
    clean = work / "clean"
    init(clean)
    assert subprocess.run(load_command(clean, feed), env=_env(ENV), cwd=ROOT).returncode == 0
    return feed, probes, digest(clean)


def assert_every_probe_found(data, probes):
    asked, problems = probe_violations(data, probes)
    assert asked > 1000 and not problems, problems[:5]


# 1. Two writers at once -------------------------------------------------------------


@pytest.mark.parametrize("second", ["plain", "bulk"])
def test_a_second_loader_waits_for_a_bulk_load_and_the_end_state_is_a_clean_load(tmp_path, synthetic, second):
    feed, probes, clean = synthetic
    data = tmp_path / "data"
    init(data)
    first = start_load(data, feed, bulk=True)
    wait_for(lambda: _store_state(data)[1])  # the bulk load has begun: the store is marked
    other = start_load(data, feed, bulk=second == "bulk")
    first_out, first_err = first.communicate(timeout=120)
    other_out, other_err = other.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert "waiting for it to finish" in other_err and "bulk" in other_err
    if second == "bulk":
        # Once the first is done the store is not empty: the second bulk load is refused.
        assert other.returncode == 2 and "needs an empty store" in other_err
    else:
        assert other.returncode == 0, other_err
        assert "0 applied" in other_out and "0 rejected" in other_out
    assert digest(data) == clean
    assert_every_probe_found(data, probes)


def test_two_plain_loaders_of_overlapping_feeds_apply_one_after_the_other(tmp_path, synthetic):
    feed, probes, clean = synthetic
    lines = feed.read_text(encoding="utf-8").splitlines(keepends=True)
    half = len(lines) // 2
    first_feed = tmp_path / "first.jsonl"
    first_feed.write_text("".join(lines[: half + 500]), encoding="utf-8")
    second_feed = tmp_path / "second.jsonl"
    second_feed.write_text("".join(lines[half:]), encoding="utf-8")
    data = tmp_path / "data"
    init(data)
    first = start_load(data, first_feed)
    wait_for(lambda: _store_state(data)[0] > 0)
    second = start_load(data, second_feed)
    assert first.wait(120) == 0 and second.wait(120) == 0, second.stderr.read()
    # The journal is the first feed, then what the second adds: the feed's own order.
    assert digest(data) == clean


def test_no_wait_gives_up_at_once_with_its_own_exit_code(tmp_path, synthetic):
    feed, _, _ = synthetic
    data = tmp_path / "data"
    init(data)
    # Another process holds the writer lock for as long as the test needs (a real load of
    # this feed may finish before the second one starts).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom sanction_service.writer_lock import writer_lock_for\n"
            "with writer_lock_for(sys.argv[1]).hold('sanction load (a long one)'):\n"
            "    print('held', flush=True)\n    time.sleep(300)\n",
            str(data),
        ],
        cwd=ROOT,
        env=_env(ENV),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        refused = sanction("load", "--data-dir", str(data), "--no-wait", str(feed), env=ENV)
        assert refused.returncode == 3, refused.stderr
        assert "is being written by pid" in refused.stderr and "Traceback" not in refused.stderr
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


# 2. A killed bulk load --------------------------------------------------------------


def test_a_killed_bulk_load_fails_closed_everywhere_and_running_it_again_gives_the_clean_state(tmp_path, synthetic):
    feed, probes, clean = synthetic
    data = tmp_path / "data"
    init(data)
    bulk = start_load(data, feed, bulk=True)
    wait_for(lambda: _store_state(data)[0] > 2000)
    bulk.send_signal(signal.SIGKILL)
    bulk.wait()
    assert _store_state(data)[1], "the killed bulk load left its mark"

    server = ServerProcess("--data-dir", str(data), env=ENV)
    assert server.proc.wait(60) == 2
    assert not any("listening on" in line for line in server.lines)
    assert any("unfinished bulk load" in line for line in server.lines)
    plain = sanction("load", "--data-dir", str(data), str(feed), env=ENV)
    assert plain.returncode == 2 and "unfinished bulk load" in plain.stderr
    for command in ("digest", "backup"):
        extra = [str(tmp_path / "backup")] if command == "backup" else []
        result = sanction(command, "--data-dir", str(data), *extra, env=ENV)
        assert result.returncode != 0 and "unfinished bulk load" in result.stderr

    again = sanction("load", "--data-dir", str(data), "--bulk", "--no-progress", str(feed), env=ENV)
    assert again.returncode == 0, again.stderr
    assert "start over" in again.stderr
    assert digest(data) == clean
    assert_every_probe_found(data, probes)


def test_a_server_that_opened_the_store_before_a_bulk_load_answers_unavailable_during_it(tmp_path, synthetic):
    import grpc
    from sanction.v1 import admin_pb2, admin_pb2_grpc

    feed, _, _ = synthetic
    data = tmp_path / "data"
    init(data)
    with ServerProcess("--data-dir", str(data), env={**ENV, "SANCTION_WRITER_WAIT_SECONDS": "0.2"}) as server:
        target = server.wait_serving()
        bulk = start_load(data, feed, bulk=True)
        wait_for(lambda: _store_state(data)[1])
        with RestrictionClient(target, timeout=5) as client:
            with pytest.raises(ServiceError) as during:
                client.check(Passenger("RESIDENT_ID", make_ric()), FLIGHT)
            assert during.value.code == "UNAVAILABLE"
            bulk.send_signal(signal.SIGKILL)
            bulk.wait()
            # Interrupted: the server answers nothing from the partial store...
            with pytest.raises(ServiceError) as after:
                client.check(Passenger("RESIDENT_ID", make_ric()), FLIGHT)
            assert after.value.code == "UNAVAILABLE"
        # ...and adds nothing to it (a bare stub: the client would retry UNAVAILABLE).
        version = _store_state(data)[0]
        with grpc.insecure_channel(target) as channel:
            request = admin_pb2.ApplyEventsRequest(events=[json.dumps(list_person("ZZ1", make_ric(), event_id="zz"))])
            with pytest.raises(grpc.RpcError) as refused:
                admin_pb2_grpc.ListAdminServiceStub(channel).ApplyEvents(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "bulk load" in refused.value.details()
        assert _store_state(data) == (version, True)


# 3. Checks while the prefilter is rebuilt -------------------------------------------


def test_no_check_answers_allow_for_a_listing_committed_at_its_data_version_while_the_filter_is_rebuilt(tmp_path):
    people = [make_ric("110105", f"19{60 + i // 1000:02d}0101", i % 1000) for i in range(4000)]
    # Line i (1-based) is the LIST of people[i-1]: applied alone, it becomes data version i.
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [list_person(f"L{i}", number, event_id=f"e{i}", listed_on="2024-01-01") for i, number in enumerate(people, 1)],
    )
    data = tmp_path / "data"
    init(data)
    # A small filter that fills up several times during the load: each time a larger one
    # is built in the background and swapped in while checks run.
    env = {**ENV, "SANCTION_PREFILTER_MIN_CAPACITY": "300"}
    position = {number: i for i, number in enumerate(people, 1)}
    wrong, answered, versions = [], 0, set()
    with ServerProcess("--data-dir", str(data), env=env) as server:
        target = server.wait_serving()
        load = subprocess.Popen(
            load_command(data, feed) + ["--batch-size", "25"],
            env=_env(ENV),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        with RestrictionClient(target, timeout=10) as client:
            step = 0
            while load.poll() is None or step < 30:
                step += 1
                batch = people[step % 29 :: 29]  # ~140 people from all over the feed
                outcomes = client.check_batch([Passenger("RESIDENT_ID", n) for n in batch], FLIGHT)
                for number, outcome in zip(batch, outcomes):
                    answered += 1
                    versions.add(outcome.data_version)
                    if position[number] <= outcome.data_version and outcome.decision != "DENY":
                        wrong.append((position[number], outcome.data_version))
        assert load.wait(60) == 0, load.stderr.read()
        rebuilds = [line for line in server.lines if "prefilter rebuilt" in line]
    assert not wrong, f"{len(wrong)} of {answered} answers were ALLOW for a listing committed at their version"
    assert len(rebuilds) >= 3, server.lines[-20:]
    assert len(versions) > 10 and answered > 4000, (len(versions), answered)


# 4. A listing id that contains the old key separator --------------------------------


def test_an_exemption_on_one_listing_never_covers_another_whose_id_it_prefixes(tmp_path):
    person = make_ric()
    other = make_ric("310115", "19700101", 555)
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [
            list_person("L1", person, event_id="a"),
            list_person("L1\u0000X", person, event_id="b", case_number="(2024)京0105执2号"),
            event(
                "EXEMPT",
                "L1\u0000X",
                event_id="c",
                document={"type": "RESIDENT_ID", "number": person},
                modes=["FLIGHT"],
                valid_from="2024-01-01",
                valid_to="2099-12-31",
                reference="(2024)京0105执2号之一",
            ),
        ],
    )
    data = tmp_path / "data"
    init(data)
    loaded = sanction("load", "--data-dir", str(data), str(feed), env=ENV)
    assert loaded.returncode in (0, 1), loaded.stderr
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        with RestrictionClient(server.wait_serving(), timeout=5) as client:
            outcome = client.check(Passenger("RESIDENT_ID", person), FLIGHT)
            assert outcome.decision == "DENY"
            by_id = {m.listing_id: m for m in outcome.matches}
            assert by_id["L1"].caused_denial and not by_id["L1"].exemption_applied
            if "L1\u0000X" in by_id:  # accepted by this build's feed rules: then exempt alone
                assert by_id["L1\u0000X"].exemption_applied
                # A correction of L1 that drops the person must leave L1\0X's exemption alone.
                applied = client.apply_events(
                    [
                        event(
                            "CORRECT",
                            "L1",
                            event_id="d",
                            subject={"kind": "PERSON", "name": "王芳", "document": {"type": "RESIDENT_ID", "number": other}},
                        )
                    ]
                )
                assert applied.applied == 1
                after = client.check(Passenger("RESIDENT_ID", person), FLIGHT)
                assert after.decision == "ALLOW" and [m.exemption_applied for m in after.matches] == [True]


# 5. A restored store under a newer filter file --------------------------------------


def test_a_store_restored_to_another_history_of_the_same_length_rebuilds_its_filter(tmp_path):
    numbers = [make_ric("110105", "19800101", n) for n in (1, 2, 3, 4)]
    feeds = [
        write_feed(tmp_path / f"L{i}.jsonl", [list_person(f"L{i}", numbers[i - 1], event_id=f"e{i}")]) for i in (1, 2, 3, 4)
    ]
    data = tmp_path / "data"
    init(data)
    assert sanction("load", "--data-dir", str(data), str(feeds[0]), env=ENV).returncode == 0
    assert sanction("backup", "--data-dir", str(data), str(tmp_path / "backup"), env=ENV).returncode == 0
    for f in feeds[1:3]:
        assert sanction("load", "--data-dir", str(data), str(f), env=ENV).returncode == 0
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        server.wait_serving()
    assert (data / "prefilter.bloom").exists()
    shutil.copy(tmp_path / "backup" / "data.mdb", data / "data.mdb")  # restored in place, filter file kept
    for f in (feeds[3], feeds[2]):  # L4 then L3: data version 3 again, another history
        assert sanction("load", "--data-dir", str(data), str(f), env=ENV).returncode == 0
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        with RestrictionClient(server.wait_serving(), timeout=5) as client:
            assert client.check(Passenger("RESIDENT_ID", numbers[3]), FLIGHT).decision == "DENY"
        assert any("store history differs" in line for line in server.lines), server.lines


# Damaged or hostile state fails closed before the port is bound ---------------------


def test_a_truncated_data_file_refuses_to_serve_with_a_message(tmp_path, synthetic):
    feed, _, _ = synthetic
    data = tmp_path / "data"
    init(data)
    assert sanction("load", "--data-dir", str(data), str(feed), env=ENV).returncode == 0
    size = (data / "data.mdb").stat().st_size
    with open(data / "data.mdb", "r+b") as f:
        f.truncate(size // 2)
    server = ServerProcess("--data-dir", str(data), env=ENV)
    assert server.proc.wait(60) == 2
    assert any("truncated" in line and "restore it from a backup" in line for line in server.lines), server.lines
    assert not any("listening on" in line for line in server.lines)


@pytest.mark.parametrize("header", [b"[]", b'{"covered_seq": "3"}', b"null", b'{"format_version": 2}'])
def test_a_prefilter_header_of_the_wrong_shape_is_rebuilt_not_a_crash(tmp_path, header):
    person = make_ric()
    data = tmp_path / "data"
    init(data)
    feed = write_feed(tmp_path / "f.jsonl", [list_person("L1", person)])
    assert sanction("load", "--data-dir", str(data), str(feed), env=ENV).returncode == 0
    (data / "prefilter.bloom").write_bytes(b"SANCBLM\x00" + len(header).to_bytes(4, "big") + header + b"\x00" * 64)
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        with RestrictionClient(server.wait_serving(), timeout=5) as client:
            assert client.check(Passenger("RESIDENT_ID", person), FLIGHT).decision == "DENY"
        assert any("rebuilt from the store" in line for line in server.lines)


def test_the_same_pepper_text_as_a_file_and_as_hex_is_explained(tmp_path):
    data = tmp_path / "data"
    init(data)  # keyed with SANCTION_PEPPER, read as hex
    pepper_file = tmp_path / "pepper.txt"
    pepper_file.write_text(PEPPER_HEX + "\n")
    server = ServerProcess("--data-dir", str(data), "--pepper-file", str(pepper_file))
    assert server.proc.wait(60) == 2
    text = "".join(server.lines)
    assert "another pepper" in text and "given as SANCTION_PEPPER (read as hex)" in text
    assert PEPPER_HEX not in text and "Traceback" not in text


# Errors while serving and loading ---------------------------------------------------


def test_apply_events_while_a_loader_writes_is_unavailable_and_applies_nothing(tmp_path, synthetic):
    import grpc
    from sanction.v1 import admin_pb2, admin_pb2_grpc

    feed, _, _ = synthetic
    data = tmp_path / "data"
    init(data)
    with ServerProcess("--data-dir", str(data), env={**ENV, "SANCTION_WRITER_WAIT_SECONDS": "0.2"}) as server:
        target = server.wait_serving()
        load = start_load(data, feed)
        wait_for(lambda: _store_state(data)[0] > 0)
        # A bare stub: the project's client would retry UNAVAILABLE until the loader is done.
        with grpc.insecure_channel(target) as channel:
            request = admin_pb2.ApplyEventsRequest(
                events=[json.dumps(list_person("ZZ1", make_ric("500101", "19900101", 7), event_id="zz"))]
            )
            with pytest.raises(grpc.RpcError) as busy:
                admin_pb2_grpc.ListAdminServiceStub(channel).ApplyEvents(request, timeout=10)
        assert busy.value.code() == grpc.StatusCode.UNAVAILABLE and "being written by pid" in busy.value.details()
        assert load.wait(120) == 0
        with RestrictionClient(target, timeout=10) as client:
            with pytest.raises(ServiceError) as missing:
                client.get_listing("ZZ1")
            assert missing.value.code == "NOT_FOUND"


def test_a_full_map_under_apply_events_never_turns_a_check_into_unknown(tmp_path):
    person = make_ric()
    data = tmp_path / "data"
    init(data)
    assert (
        sanction(
            "load", "--data-dir", str(data), str(write_feed(tmp_path / "f.jsonl", [list_person("L0", person)])), env=ENV
        ).returncode
        == 0
    )
    codes, stop = [], threading.Event()
    with ServerProcess("--data-dir", str(data), env={**ENV, "SANCTION_MAP_SIZE": str(2 << 20)}) as server:
        target = server.wait_serving()

        def check_continuously():
            with RestrictionClient(target, timeout=5) as client:
                while not stop.is_set():
                    try:
                        codes.append(client.check(Passenger("RESIDENT_ID", person), FLIGHT).decision)
                    except ServiceError as exc:
                        codes.append(exc.code)

        checker = threading.Thread(target=check_continuously)
        checker.start()
        full = None
        with RestrictionClient(target, timeout=30) as client:
            for chunk in range(200):
                events = [
                    list_person(
                        f"B{chunk}-{i}", make_ric("320102", "19750101", i), obligation="x" * 2000, event_id=f"b{chunk}-{i}"
                    )
                    for i in range(200)
                ]
                try:
                    client.apply_events(events)
                except ServiceError as exc:
                    full = exc
                    break
            time.sleep(0.3)
        stop.set()
        checker.join()
    assert full is not None and full.code == "RESOURCE_EXHAUSTED" and "SANCTION_MAP_SIZE" in full.message
    assert codes and set(codes) <= {"DENY", "UNAVAILABLE"} and "DENY" in codes, set(codes)


def _mount_tmpfs(path, size):
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "3M")
    yield disk
    subprocess.run(["umount", "-l", str(disk)])


def test_a_full_disk_stops_the_loader_with_its_own_code_and_a_rerun_ends_in_the_clean_state(small_disk, synthetic):
    feed, probes, clean = synthetic
    data = small_disk / "data"
    init(data)
    loaded = sanction("load", "--data-dir", str(data), "--no-progress", "--batch-size", "1000", str(feed), env=ENV)
    assert loaded.returncode == 4, loaded.stderr
    assert "no space left on device" in loaded.stderr and str(data) in loaded.stderr
    assert "Traceback" not in loaded.stderr
    version, _ = _store_state(data)
    assert 0 < version < clean["data_version"]

    # The store is readable: a server starts and serves, though it cannot save its filter.
    with ServerProcess("--data-dir", str(data), env=ENV) as server:
        with RestrictionClient(server.wait_serving(), timeout=5) as client:
            client.check(Passenger("RESIDENT_ID", make_ric()), FLIGHT)
    assert not list(data.glob("prefilter.bloom.tmp*"))

    subprocess.run(["mount", "-o", "remount,size=64M", str(small_disk)], check=True)
    rerun = sanction("load", "--data-dir", str(data), "--no-progress", str(feed), env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert digest(data) == clean
    assert_every_probe_found(data, probes)


def test_migrating_a_schema_1_store_gives_the_schema_2_store(tmp_path, synthetic):
    feed, probes, clean = synthetic
    data = tmp_path / "data"
    init(data)
    assert sanction("load", "--data-dir", str(data), "--no-progress", str(feed), env=ENV).returncode == 0
    _downgrade_to_schema_1(data)
    refused = sanction("digest", "--data-dir", str(data), env=ENV)
    assert refused.returncode != 0 and "sanction migrate" in refused.stderr
    migrated = sanction("migrate", "--data-dir", str(data), env=ENV)
    assert migrated.returncode == 0, migrated.stderr
    assert "exemption keys rewritten" in migrated.stdout
    assert digest(data) == clean
    assert sanction("migrate", "--data-dir", str(data), env=ENV).stdout.startswith("already at schema 2")


def _downgrade_to_schema_1(data):
    """Write the schema-1 layout independently of the service's code: exemption keys
    joined by NUL, journal entries without their chain, no bindings database, a subject's
    extra documents as index entries of kind E of their listing."""
    import lmdb

    env = lmdb.open(str(data), max_dbs=12, map_size=1 << 30)
    with env.begin(write=True) as txn:
        meta, exemptions, journal, listings, active, every, bindings = (
            env.open_db(name, txn=txn)
            for name in (b"meta", b"exemptions", b"journal", b"listings", b"persons_active", b"persons_all", b"bindings")
        )
        assert txn.stat(bindings)["entries"], "the synthetic feed binds passports"
        txn.drop(bindings, delete=True)
        for _, value in txn.cursor(db=listings):
            record = json.loads(value)
            for person in record["persons"]:
                if person["slot"] == "extra":
                    row = bytes.fromhex(person["key"]) + record["listing_id"].encode()
                    txn.put(row, b"E", db=every, overwrite=False)
                    if record["status"] == "ACTIVE":
                        txn.put(row, b"E", db=active, overwrite=False)
        old = list(txn.cursor(db=exemptions))
        assert old, "the synthetic feed grants exemptions"
        for key, value in old:
            txn.delete(key, db=exemptions)
            record = json.loads(value)
            txn.put(key[:16] + record["listing_id"].encode() + b"\x00" + record["reference"].encode(), value, db=exemptions)
        for key, value in list(txn.cursor(db=journal)):
            entry = json.loads(value)
            del entry["chain"]
            txn.put(key, json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode(), db=journal)
        txn.delete(b"journal_chain", db=meta)
        txn.put(b"schema", b"1", db=meta)
    env.close()


def test_every_write_needs_the_writer_lock():
    """A write transaction opened without the lock is a programming error, caught at once."""
    from sanction_service.identity import pepper_fingerprint  # noqa: F401 (module import proves the path)

    code = (
        "import sys, tempfile; sys.path[:0] = ['.', 'gen']\n"
        "from sanction_service.store import Store\n"
        "s = Store(tempfile.mkdtemp(), 'fp', create=True, map_size=1 << 20)\n"
        "try:\n    s.begin_write()\nexcept RuntimeError as e:\n    print('refused:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "refused: write transaction without the store's writer lock" in result.stdout, result.stderr
    assert PEPPER  # the harness pepper is the one every store here is keyed with
