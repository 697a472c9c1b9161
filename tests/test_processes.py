"""End to end across real processes: feed -> `sanction load` -> `sanction serve` -> client."""

import json

import pytest
from conftest import day, event, list_org, list_person, make_ric, make_uscc
from processes import ServerProcess, sanction
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip

PERSON = make_ric("110105", "19800101", 123)
LATE = make_ric("310115", "19700101", 555)
REP = make_ric("440305", "19851212", 42)
FLIGHT = Trip("FLIGHT")


def write_feed(path, events):
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    result = sanction("init", "--data-dir", str(d))
    assert result.returncode == 0, result.stderr
    assert (d / "pepper").stat().st_mode & 0o077 == 0
    return d


def test_feed_loader_server_client_full_path(data_dir, tmp_path):
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [
            list_person("L1", PERSON),
            list_org("O1", make_uscc(), [("LEGAL_REPRESENTATIVE", "李娜", REP)]),
            event("LIST", "BAD"),
        ],
    )
    loaded = sanction("load", "--data-dir", str(data_dir), str(feed))
    assert loaded.returncode == 1  # something was rejected
    assert "2 applied, 0 duplicates, 1 rejected" in loaded.stdout
    rejects = [json.loads(line) for line in open(f"{feed}.rejects.jsonl")]
    assert [(r["line"], r["event_id"]) for r in rejects] == [(3, event_id_of(feed, 3))]

    again = sanction("load", "--data-dir", str(data_dir), str(feed))
    assert "0 applied, 2 duplicates, 1 rejected" in again.stdout

    with ServerProcess("--data-dir", str(data_dir)) as server:
        target = server.wait_serving()
        with RestrictionClient(target, timeout=5) as client:
            assert client.check(Passenger("RESIDENT_ID", PERSON), FLIGHT).decision == "DENY"
            rep = client.check(Passenger("RESIDENT_ID", REP), Trip("RAIL", "G7"))
            assert (rep.decision, rep.matches[0].role) == ("DENY", "LEGAL_REPRESENTATIVE")
            assert client.check(Passenger("RESIDENT_ID", LATE), FLIGHT).decision == "ALLOW"
        cli = sanction("check", "--target", target, "--number", PERSON, "--mode", "FLIGHT")
        assert cli.returncode == 0 and cli.stdout.startswith("DENY") and "(2024)京0105执1号" in cli.stdout
        assert PERSON not in cli.stdout
    assert not any(PERSON in line or REP in line for line in server.lines)


def event_id_of(feed, line):
    return json.loads(feed.read_text(encoding="utf-8").splitlines()[line - 1])["event_id"]


def test_listing_loaded_by_another_process_is_denied_on_the_very_next_check(data_dir, tmp_path):
    write_feed(tmp_path / "first.jsonl", [list_person("L1", PERSON)])
    assert sanction("load", "--data-dir", str(data_dir), str(tmp_path / "first.jsonl")).returncode == 0
    with ServerProcess("--data-dir", str(data_dir)) as server:
        target = server.wait_serving()
        with RestrictionClient(target, timeout=5) as client:
            assert client.check(Passenger("RESIDENT_ID", LATE), FLIGHT, day()).decision == "ALLOW"
            write_feed(tmp_path / "late.jsonl", [list_person("L2", LATE)])
            assert sanction("load", "--data-dir", str(data_dir), str(tmp_path / "late.jsonl")).returncode == 0
            outcome = client.check(Passenger("RESIDENT_ID", LATE), FLIGHT, day())
            assert outcome.decision == "DENY" and outcome.data_version == 2


def test_server_with_another_pepper_refuses_to_start(data_dir, tmp_path):
    write_feed(tmp_path / "f.jsonl", [list_person("L1", PERSON)])
    sanction("load", "--data-dir", str(data_dir), str(tmp_path / "f.jsonl"))
    other = tmp_path / "other-pepper"
    other.write_text("ab" * 32)
    server = ServerProcess("--data-dir", str(data_dir), "--pepper-file", str(other))
    assert server.proc.wait(60) == 2
    assert server.port is None  # never bound a port
    assert any("another pepper" in line for line in server.lines)


def test_server_without_a_store_refuses_to_start(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "pepper").write_text("cd" * 32)
    server = ServerProcess("--data-dir", str(tmp_path / "empty"))
    assert server.proc.wait(60) == 2
    assert server.port is None and any("no store" in line for line in server.lines)


def test_no_full_id_number_in_any_output_at_debug_or_on_the_metrics_page(data_dir, tmp_path):
    import socket
    import urllib.request

    bad = PERSON[:17] + ("0" if PERSON[17] != "0" else "1")
    feed = write_feed(
        tmp_path / "feed.jsonl",
        [
            list_person("L1", PERSON),
            list_person("L2", bad),
            list_org("O1", make_uscc(), [("LEGAL_REPRESENTATIVE", "李娜", REP)]),
        ],
    )
    loaded = sanction("load", "--data-dir", str(data_dir), "--log-level", "DEBUG", str(feed))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    with ServerProcess("--data-dir", str(data_dir), "--log-level", "DEBUG", "--metrics-port", str(metrics_port)) as server:
        target = server.wait_serving()
        cli = [sanction("check", "--target", target, "--number", n, "--mode", "FLIGHT") for n in (PERSON, REP, bad)]
        with RestrictionClient(target, timeout=5) as client:
            client.lookup_person(Passenger("RESIDENT_ID", PERSON))
            client.apply_events([list_person("L3", LATE)])
        page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    texts = [loaded.stdout, loaded.stderr, page, open(f"{feed}.rejects.jsonl").read(), *server.lines]
    texts += [r.stdout + r.stderr for r in cli]
    assert "sanction_decisions_total" in page and any("DEBUG" in line for line in server.lines + [loaded.stderr])
    for number in (PERSON, REP, bad, LATE):
        assert not any(number in text for text in texts), number
