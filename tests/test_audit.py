"""Credentials, exposure, logs and the audit trail, with real `sanction serve` processes:
a token revoked (and one added) by SIGHUP without a restart, also with --workers 2; a
non-loopback address refused without a tokens file; JSON log lines naming their process;
the audit log of admin calls; per-client counters."""

import json
import os
import re
import signal
import socket
import time
import urllib.request

import pytest
from conftest import list_person, make_ric
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import ROOT, ServerProcess, sanction
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip, check_request
from test_docs import table_rows, ticked

from sanction_service import cli
from sanction_service.exposure import is_loopback

PERSON = make_ric("110105", "19800101", 123)
OTHER = make_ric("320102", "19900101", 7)
NEWCOMER = make_ric("440301", "19850505", 42)
FLIGHT = Trip("FLIGHT")
RAIL, OPS, NEW = "rail-token-0123456789abcdef", "ops-token-0123456789abcdef", "new-token-0123456789abcdef"


def tokens(path, *clients):
    path.write_text(json.dumps({"clients": [{"name": n, "token": t, "roles": r} for n, t, r in clients]}))
    return path


def make_store(path, *events):
    assert sanction("init", "--data-dir", str(path)).returncode == 0
    if events:
        feed = path.parent / f"{path.name}.jsonl"
        feed.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
        assert sanction("load", "--data-dir", str(path), str(feed)).returncode == 0
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decision(target: str, token: str, number: str = PERSON) -> str:
    """DENY/ALLOW, or the error code; a fresh connection each time (with --workers, the
    kernel spreads them over the workers)."""
    with RestrictionClient(target, timeout=5, token=token) as client:
        try:
            return client.check(Passenger("RESIDENT_ID", number), FLIGHT).decision
        except ServiceError as exc:
            return exc.code


def health(target: str) -> int:
    with RestrictionClient(target, timeout=5) as client:
        return health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def wait_for(server: ServerProcess, pattern: str, count: int = 1, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in server.lines if re.search(pattern, line)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(f"no {count} lines matching {pattern!r}:\n" + "".join(server.lines))
        time.sleep(0.05)


def json_lines(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.lines]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("audit") / "data", list_person("L1", PERSON))


# --------------------------------------------------------------------------- SIGHUP


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_revokes_a_removed_token_and_admits_an_added_one_without_a_restart(data, tmp_path, workers):
    path = tokens(tmp_path / "tokens.json", ("rail", RAIL, ["check"]), ("ops", OPS, ["check", "admin"]))
    args = ["--data-dir", str(data), "--tokens-file", str(path), "--workers", str(workers)]
    with ServerProcess(*args, env={"SANCTION_LOG_FORMAT": "json"}) as server:
        target = server.wait_serving(workers=workers)
        assert [decision(target, RAIL), decision(target, OPS), decision(target, NEW)] == ["DENY", "DENY", "UNAUTHENTICATED"]

        tokens(path, ("ops", OPS, ["check", "admin"]), ("newcomer", NEW, ["check"]))
        server.proc.send_signal(signal.SIGHUP)
        reloaded = wait_for(server, "tokens file reloaded", count=workers)
        assert all("added ['newcomer'], removed ['rail']" in line for line in reloaded)
        # Several fresh connections, so that with two workers both are asked.
        for _ in range(4 * workers):
            assert [decision(target, RAIL), decision(target, OPS), decision(target, NEW)] == ["UNAUTHENTICATED", "DENY", "DENY"]
        assert health(target) == health_pb2.HealthCheckResponse.SERVING

        # A file that cannot be used keeps the tokens in force, and says so.
        path.write_text('{"clients": [')
        server.proc.send_signal(signal.SIGHUP)
        refused = wait_for(server, "tokens file not reloaded", count=workers)
        assert all(json.loads(line)["level"] == "ERROR" for line in refused)
        assert [decision(target, RAIL), decision(target, OPS)] == ["UNAUTHENTICATED", "DENY"]
        assert server.proc.poll() is None and health(target) == health_pb2.HealthCheckResponse.SERVING

        if workers > 1:
            # The reloads were each worker's own.
            lines = [e for e in json_lines(server) if "tokens file reloaded" in e["message"]]
            assert sorted(e["worker"] for e in lines) == [0, 1] and len({e["pid"] for e in lines}) == 2
        assert server.stop() == 0


def test_a_sighup_during_start_up_neither_stops_the_server_nor_is_lost(data, tmp_path):
    path = tokens(tmp_path / "tokens.json", ("rail", RAIL, ["check"]))
    with ServerProcess("--data-dir", str(data), "--tokens-file", str(path)) as server:
        wait_for(server, "listening on")
        tokens(path, ("newcomer", NEW, ["check"]))
        server.proc.send_signal(signal.SIGHUP)
        target = server.wait_serving()
        wait_for(server, "tokens file reloaded")
        assert [decision(target, RAIL), decision(target, NEW)] == ["UNAUTHENTICATED", "DENY"]
        assert server.stop() == 0


# --------------------------------------------------------------------------- exposure


def test_without_tokens_a_non_loopback_address_is_refused_unless_allowed(data):
    with ServerProcess("--data-dir", str(data), "--listen", "0.0.0.0:0") as refused:
        assert refused.wait() == cli.EXIT_UNPROTECTED == 7
    said = [line for line in refused.lines if line.strip()]
    assert len(said) == 1, said
    assert "refusing to serve: 0.0.0.0:0 is not a loopback address and there is no tokens file" in said[0]
    assert "SANCTION_ALLOW_UNAUTHENTICATED=on" in said[0] and "Traceback" not in said[0]

    with ServerProcess("--data-dir", str(data), "--listen", "0.0.0.0:0", "--allow-unauthenticated") as allowed:
        target = allowed.wait_serving()
        assert decision(target, "") == "DENY"
        warning = [line for line in allowed.lines if "WARNING" in line and "needs no token" in line]
        assert len(warning) == 1 and "anyone who reaches it may call it on 0.0.0.0:0" in warning[0]

    with ServerProcess("--data-dir", str(data), env={"SANCTION_ALLOW_UNAUTHENTICATED": "on"}) as by_setting:
        by_setting.wait_serving()  # loopback: allowed anyway, and still warned about
        assert any("WARNING" in line and "this machine may call it" in line for line in by_setting.lines)


def test_with_a_tokens_file_any_address_is_served_without_a_warning(data, tmp_path):
    path = tokens(tmp_path / "tokens.json", ("ops", OPS, ["check", "admin"]))
    with ServerProcess("--data-dir", str(data), "--listen", "0.0.0.0:0", "--tokens-file", str(path)) as server:
        target = server.wait_serving()
        assert decision(target, OPS) == "DENY"
        assert not any("WARNING" in line for line in server.lines)


@pytest.mark.parametrize(
    "listen, loopback",
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.2:1", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("unix:/tmp/sanction.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.1.2.3:50051", False),
        ("no-such-host.invalid:50051", False),
    ],
)
def test_loopback_addresses(listen, loopback):
    assert is_loopback(listen) is loopback


# --------------------------------------------------------------------------- logs


def test_json_log_lines_parse_and_name_their_process(data):
    with ServerProcess("--data-dir", str(data), env={"SANCTION_LOG_FORMAT": "JSON"}) as server:
        target = server.wait_serving()
        assert decision(target, "") == "DENY"
        assert server.stop() == 0
    entries = json_lines(server)  # every line is one JSON object
    assert len(entries) >= 4
    for entry in entries:
        assert set(entry) >= {"time", "level", "logger", "message", "pid", "worker"}
        assert entry["pid"] == server.proc.pid and entry["worker"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert any("SERVING at data version" in e["message"] for e in entries)
    assert not any(PERSON in line or PERSON[:-4] in line for line in server.lines)


def test_text_log_lines_name_the_worker_and_pid(data):
    with ServerProcess("--data-dir", str(data), "--workers", "2") as server:
        server.wait_serving(workers=2)
        assert server.stop() == 0
    workers = {m.groups() for line in server.lines if (m := re.search(r"\[worker (\d) pid (\d+)\]", line))}
    assert {w for w, _ in workers} == {"0", "1"} and len({p for _, p in workers}) == 2
    assert all(re.search(r"\[(worker \d )?pid \d+\]", line) for line in server.lines if line.strip())
    assert any(f"[pid {server.proc.pid}]" in line for line in server.lines)  # the parent's own lines


def test_a_bad_log_format_is_one_line_and_exit_78():
    result = sanction("stats", env={"SANCTION_LOG_FORMAT": "xml"})
    assert result.returncode == cli.EXIT_CONFIG
    assert result.stderr.strip() == "sanction: SANCTION_LOG_FORMAT='xml' is not accepted: one of TEXT, JSON (any letter case)"


# --------------------------------------------------------------------------- audit log and per-client counters


def metric(port: int, name: str, **labels) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in page.splitlines():
        if line.startswith(name + "{"):
            key, value = line.rsplit(" ", 1)
            if ",".join(sorted(key[len(name) + 1 : -1].split(","))) == wanted:
                return float(value)
    return 0.0


def audit_entries(data) -> list[dict]:
    return [json.loads(line) for line in (data / "audit.log").read_text().splitlines()]


def test_admin_calls_are_appended_to_the_audit_log_with_counts_and_versions(tmp_path):
    data = make_store(tmp_path / "data", list_person("L1", PERSON))
    path = tokens(tmp_path / "tokens.json", ("rail", RAIL, ["check"]), ("ops", OPS, ["check", "admin"]))
    with ServerProcess("--data-dir", str(data), "--tokens-file", str(path)) as server:
        target = server.wait_serving()
        with RestrictionClient(target, timeout=10, token=OPS) as ops:
            before = ops.stats().data_version
            listing = list_person("L2", OTHER)
            first = ops.apply_events([listing, listing, {"event_id": "bad", "type": "LIST"}])
            assert (first.applied, first.duplicates, first.rejected) == (1, 1, 1)
            entries = audit_entries(data)
            assert len(entries) == 1
            assert entries[0] | {"time": None, "peer": None} == {
                "time": None,
                "client": "ops",
                "peer": None,
                "method": "ApplyEvents",
                "events_received": 3,
                "data_version_before": before,
                "applied": 1,
                "duplicates": 1,
                "rejected": 1,
                "data_version_after": first.data_version,
                "outcome": "OK",
                "pid": server.proc.pid,
            }
            assert entries[0]["peer"].startswith("ipv4:127.0.0.1:")

            again = ops.apply_events([list_person("L4", NEWCOMER)])
            ops.lookup_person(Passenger("RESIDENT_ID", OTHER))
            ops.get_listing("L2")
            ops.stats()  # totals only: not audited
        with RestrictionClient(target, timeout=10, token=RAIL) as rail:
            with pytest.raises(ServiceError, match="PERMISSION_DENIED"):
                rail.apply_events([list_person("L3", NEWCOMER)])
            with pytest.raises(ServiceError, match="PERMISSION_DENIED"):
                rail.stats()  # not audited when allowed, but a refusal is
        with RestrictionClient(target, timeout=10, token="not-a-token-0123456789") as stranger:
            with pytest.raises(ServiceError, match="UNAUTHENTICATED"):
                stranger.apply_events([list_person("L3", NEWCOMER)])

    text = (data / "audit.log").read_text()
    entries = audit_entries(data)
    assert entries[0]["data_version_after"] == first.data_version  # appended to, not rewritten
    assert [(e["method"], e["client"], e["outcome"]) for e in entries] == [
        ("ApplyEvents", "ops", "OK"),
        ("ApplyEvents", "ops", "OK"),
        ("LookupPerson", "ops", "OK"),
        ("GetListing", "ops", "OK"),
        ("ApplyEvents", "rail", "PERMISSION_DENIED"),
        ("GetStats", "rail", "PERMISSION_DENIED"),
    ]
    assert entries[1]["data_version_before"] == first.data_version
    assert entries[1]["data_version_after"] == again.data_version
    assert (entries[1]["applied"], entries[1]["duplicates"]) == (again.applied, again.duplicates)
    assert entries[2]["document_type"] == "RESIDENT_ID" and entries[2]["listings_found"] == 1
    assert entries[3]["listing_id"] == "L2"
    for number in (PERSON, OTHER, NEWCOMER):  # neither whole nor the part a mask would hide
        assert number not in text and number[6:14] not in text
    assert oct(os.stat(data / "audit.log").st_mode & 0o777) == "0o640"
    # docs/OPERATIONS.md shows the same fields for each kind of entry, and describes each.
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    examples = [json.loads(line) for line in operations.splitlines() if line.startswith('{"time":"')]
    assert {(e["method"], e["outcome"]): list(e) for e in examples} == {
        (e["method"], e["outcome"]): list(e) for e in entries[1:-1]
    }
    described = {f for row in table_rows(operations, "| field | in |") for f in ticked(row[0])}
    assert described == {f for e in entries for f in e}


def test_the_audit_log_survives_a_restart_and_another_path_may_be_set(tmp_path):
    data = make_store(tmp_path / "data")
    elsewhere = tmp_path / "logs" / "admin-audit.jsonl"
    elsewhere.parent.mkdir()
    for n in range(2):
        with ServerProcess("--data-dir", str(data), "--audit-log", str(elsewhere)) as server:
            with RestrictionClient(server.wait_serving(), timeout=10) as anonymous:
                anonymous.apply_events([list_person(f"L{n}", PERSON)])
    entries = [json.loads(line) for line in elsewhere.read_text().splitlines()]
    assert [(e["client"], e["applied"], e["data_version_after"]) for e in entries] == [("anonymous", 1, 1), ("anonymous", 1, 2)]
    assert not (data / "audit.log").exists()


def test_an_audit_log_that_cannot_be_written_stops_the_start_with_exit_2(data, tmp_path):
    with ServerProcess("--data-dir", str(data), "--audit-log", str(tmp_path / "missing" / "audit.log")) as server:
        assert server.wait() == 2
    assert any("refusing to serve" in line and "audit.log" in line for line in server.lines)


def test_per_client_counters_count_each_clients_answers_by_decision(data, tmp_path):
    path = tokens(tmp_path / "tokens.json", ("rail", RAIL, ["check"]), ("ops", OPS, ["check", "admin"]))
    port = free_port()
    with ServerProcess("--data-dir", str(data), "--tokens-file", str(path), "--metrics-port", str(port)) as server:
        target = server.wait_serving()
        with RestrictionClient(target, timeout=10, token=RAIL) as rail:
            for _ in range(3):
                assert rail.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
            assert rail.check(Passenger("RESIDENT_ID", OTHER), FLIGHT).decision == "ALLOW"
            # A batch through the fast path: one listed, two never listed, one invalid (not counted).
            batch = rail.check_batch([Passenger("RESIDENT_ID", n) for n in (PERSON, OTHER, NEWCOMER, "123")], FLIGHT)
            assert [getattr(b, "decision", "error") for b in batch] == ["DENY", "ALLOW", "ALLOW", "error"]
        with RestrictionClient(target, timeout=10, token=OPS) as ops:
            answers = list(
                ops.check_stream([(str(i), check_request(Passenger("RESIDENT_ID", PERSON), FLIGHT)) for i in range(5)])
            )
            assert [a.decision for _, a in answers] == ["DENY"] * 5
        assert metric(port, "sanction_client_checks_total", client="rail", decision="DENY") == 4
        assert metric(port, "sanction_client_checks_total", client="rail", decision="ALLOW") == 3
        assert metric(port, "sanction_client_checks_total", client="ops", decision="DENY") == 5
        assert metric(port, "sanction_client_checks_total", client="ops", decision="ALLOW") == 0
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        clients = set(re.findall(r'sanction_client_checks_total\{client="([^"]*)"', page))
        assert clients == {"rail", "ops"}


def test_an_audit_entry_that_cannot_be_written_is_logged_whole_and_counted(tmp_path, caplog):
    from prometheus_client import REGISTRY

    from sanction_service.audit import AuditLog, note

    folder = tmp_path / "gone"
    folder.mkdir()
    log = AuditLog(folder / "audit.log")
    log.check_writable()
    folder.joinpath("audit.log").unlink()
    folder.rmdir()  # as a full or vanished disk would: the write fails after start-up
    before = REGISTRY.get_sample_value("sanction_audit_write_errors_total") or 0.0
    with caplog.at_level("ERROR"), log.entry(client="ops", peer="ipv4:127.0.0.1:1", method="ApplyEvents") as entry:
        note(events_received=3, applied=3)
        entry["outcome"] = "OK"
    assert REGISTRY.get_sample_value("sanction_audit_write_errors_total") - before == 1
    (record,) = [r for r in caplog.records if "could not write to the audit log" in r.getMessage()]
    written = json.loads(record.getMessage().split("the entry was: ", 1)[1])
    assert (written["client"], written["events_received"], written["applied"], written["outcome"]) == ("ops", 3, 3, "OK")
    note(applied=99)  # outside a call: nothing to add to, and no error
