"""Several checking processes against a server while another process loads a feed:
zero errors, and every answer agrees with the one data version it reports."""

import json
import os
import subprocess
import sys
from datetime import date, timedelta

from conftest import event, list_person, make_ric
from processes import ROOT, ServerProcess, sanction

EVENTS = int(os.environ.get("SANCTION_CONCURRENCY_EVENTS", "100000"))
CHECKERS = int(os.environ.get("SANCTION_CONCURRENCY_CHECKERS", "3"))


def person(k: int) -> str:
    birth = (date(1950, 1, 1) + timedelta(days=k // 1000)).strftime("%Y%m%d")
    return make_ric("110105", birth, k % 1000)


def build_feed(path, n_events):
    """LIST person k as listing k; every 10th event also delists the listing 5 before.
    Returns, per person, the sequence at which they became listed and delisted."""
    listed_at, delisted_at = {}, {}
    seq, k = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while seq < n_events:
            k += 1
            seq += 1
            f.write(json.dumps(list_person(f"L{k}", person(k), event_id=f"list-{k}"), ensure_ascii=False) + "\n")
            listed_at[k] = seq
            if k % 10 == 0 and k > 5:
                seq += 1
                f.write(
                    json.dumps(
                        event("DELIST", f"L{k - 5}", event_id=f"delist-{k - 5}", reason="SETTLED", effective_on="2025-01-01")
                    )
                    + "\n"
                )
                delisted_at[k - 5] = seq
    return k, listed_at, delisted_at


def expected(k, version, listed_at, delisted_at):
    return "DENY" if listed_at.get(k, 1 << 62) <= version < delisted_at.get(k, 1 << 62) else "ALLOW"


def test_checks_during_a_load_are_error_free_and_consistent_with_their_version(tmp_path):
    data = tmp_path / "data"
    assert sanction("init", "--data-dir", str(data)).returncode == 0
    people_count, listed_at, delisted_at = build_feed(tmp_path / "feed.jsonl", EVENTS)
    # A few more never-listed people, so ALLOW answers are asked about too.
    numbers = [person(k) for k in range(1, people_count + 1 + people_count // 10)]
    (tmp_path / "people.txt").write_text("\n".join(numbers))
    stop = tmp_path / "stop"
    with ServerProcess("--data-dir", str(data)) as server:
        target = server.wait_serving()
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests" / "check_worker.py"),
                    target,
                    str(tmp_path / "people.txt"),
                    str(stop),
                    str(tmp_path / f"out{i}.jsonl"),
                    str(i),
                ]
            )
            for i in range(CHECKERS)
        ]
        load = sanction("load", "--data-dir", str(data), "--batch-size", "500", str(tmp_path / "feed.jsonl"), timeout=900)
        stop.write_text("")
        codes = [w.wait(60) for w in workers]
    assert load.returncode == 0, load.stdout + load.stderr
    answers = errors = torn = 0
    versions = set()
    for i in range(CHECKERS):
        for line in open(tmp_path / f"out{i}.jsonl"):
            row = json.loads(line)
            if isinstance(row, dict):
                errors += "error" in row
                torn += row.get("batch_versions", 1) > 1
                continue
            index, decision, version = row
            answers += 1
            versions.add(version)
            assert decision == expected(index + 1, version, listed_at, delisted_at), (index, decision, version)
    assert (errors, torn, codes) == (0, 0, [0] * CHECKERS)
    assert answers > 1000 and len(versions) > 10  # the checks really overlapped the load
    print(f"\n{answers} checks during a load of {EVENTS} events, {len(versions)} data versions seen, {errors} errors")
