"""`sanction serve --workers 2`: two processes on one port, both fresh after a load."""

import json
import re
import socket
import urllib.request

from conftest import list_person, make_ric
from processes import ServerProcess, sanction
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip

PEOPLE = [make_ric("110105", "19800101", n) for n in range(1, 41)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def started_checks(page: str, worker: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("grpc_server_started_total{")
        and 'grpc_method="CheckRestriction"' in line
        and f'worker="{worker}"' in line
    )


def test_two_workers_share_the_port_and_both_see_a_new_listing_at_once(tmp_path):
    data = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data)).returncode == 0
    metrics = free_port()
    with ServerProcess("--data-dir", str(data), "--workers", "2", "--metrics-port", str(metrics)) as server:
        target = server.wait_serving(workers=2)
        workers = {m.group(1) for line in server.lines if (m := re.search(r"worker (\d+) SERVING at", line))}
        assert workers == {"0", "1"}
        feed = tmp_path / "feed.jsonl"
        feed.write_text("".join(json.dumps(list_person(f"L{i}", n), ensure_ascii=False) + "\n" for i, n in enumerate(PEOPLE)))
        assert sanction("load", "--data-dir", str(data), str(feed)).returncode == 0
        # A fresh connection per check lets the kernel spread them over both workers.
        for number in PEOPLE:
            with RestrictionClient(target, timeout=5) as client:
                assert client.check(Passenger("RESIDENT_ID", number), Trip("FLIGHT")).decision == "DENY"
        # One endpoint for both (the parent's): each worker's calls, and the sum.
        page = scrape(metrics)
        per_worker = [started_checks(page, worker) for worker in ("0", "1")]
        assert sum(per_worker) == len(PEOPLE) and min(per_worker) > 0, per_worker
        assert sum(
            float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith("sanction_decisions_total{")
        ) == len(PEOPLE)


def test_pinned_workers_each_run_on_their_own_cpu(tmp_path):
    import os

    if len(os.sched_getaffinity(0)) < 2:
        import pytest

        pytest.skip("needs two CPUs")
    data = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data)).returncode == 0
    with ServerProcess("--data-dir", str(data), "--workers", "2", "--pin-cpus") as server:
        server.wait_serving(workers=2)
        children = open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read().split()
        allowed = {open(f"/proc/{pid}/status").read().split("Cpus_allowed_list:")[1].split()[0] for pid in children}
    assert len(children) == 2 and len(allowed) == 2 and all("-" not in a and "," not in a for a in allowed)
