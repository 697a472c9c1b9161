"""Crash-safety harness: SIGKILL the loader (or a server inside ApplyEvents) at random
points, re-run the same feed, and compare the end state with a clean load's by the
canonical store digest. The test suite runs a short version; the long one:

    .venv/bin/python tests/crash_harness.py --listings 180000 --kills 25

(≥ 200 k events: listings plus their delist, perform, correct, extend and exempt events).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests")]

from processes import ServerProcess, _env, sanction  # noqa: E402

PEPPER_HEX = "5e" * 32


def digest(data: Path) -> dict:
    result = sanction("digest", "--data-dir", str(data), env={"SANCTION_PEPPER": PEPPER_HEX})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def init(data: Path) -> None:
    result = sanction("init", "--data-dir", str(data), env={"SANCTION_PEPPER": PEPPER_HEX})
    assert result.returncode == 0, result.stderr


def load_command(data: Path, feed: Path) -> list[str]:
    return [sys.executable, "-m", "sanction_service", "load", "--data-dir", str(data), "--batch-size", "500",
            "--no-progress", str(feed)]


def clean_load(work: Path, feed: Path) -> tuple[dict, float]:
    data = work / "clean"
    init(data)
    started = time.monotonic()
    subprocess.run(load_command(data, feed), env=_env({"SANCTION_PEPPER": PEPPER_HEX}), cwd=ROOT, check=True,
                   capture_output=True)
    return digest(data), time.monotonic() - started


def killed_loads(work: Path, feed: Path, kills: int, total: int, rnd: random.Random) -> tuple[dict, list[int]]:
    """Kill the loader `kills` times mid-load, re-running the same feed after each kill.

    Each run is killed at a random moment after the store passed a random target version
    (targets spread over the whole feed), so every kill lands while events are being
    written, not while a re-run is skipping duplicates.
    """
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.store import Store

    data = work / "killed"
    init(data)
    store = Store(data, pepper_fingerprint(bytes.fromhex(PEPPER_HEX)), map_size=1 << 30)
    targets = sorted(rnd.sample(range(1, int(total * 0.9)), kills))  # leave room to land before the end
    versions = []
    try:
        for target in targets:
            proc = subprocess.Popen(load_command(data, feed), env=_env({"SANCTION_PEPPER": PEPPER_HEX}), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None:
                with store.read() as view:
                    if view.seq() >= target:
                        break
                time.sleep(0.005)
            time.sleep(rnd.uniform(0, 0.05))  # somewhere inside the next batch
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with store.read() as view:
                versions.append(view.seq())
    finally:
        store.close()
    final = subprocess.run(load_command(data, feed), env=_env({"SANCTION_PEPPER": PEPPER_HEX}), cwd=ROOT,
                           capture_output=True, text=True)
    assert final.returncode == 0, final.stdout + final.stderr
    return digest(data), versions


def killed_servers(work: Path, feed: Path, kills: int, rnd: random.Random, chunk: int = 1000) -> tuple[dict, list[int]]:
    """SIGKILL a server while a client pushes the feed through ApplyEvents; restart it and
    push the whole feed again from the start; the last push runs undisturbed."""
    from clients.sanction_client import RestrictionClient, ServiceError

    data = work / "served"
    init(data)
    lines = feed.read_text(encoding="utf-8").splitlines()
    chunks = [lines[i:i + chunk] for i in range(0, len(lines), chunk)]
    versions = []
    for attempt in range(kills + 1):
        killing = attempt < kills
        kill_at = rnd.randrange(len(chunks)) if killing else -1
        with ServerProcess("--data-dir", str(data), env={"SANCTION_PEPPER": PEPPER_HEX}) as server:
            target = server.wait_serving()
            try:
                with RestrictionClient(target, timeout=120) as client:
                    for n, events in enumerate(chunks):
                        if n == kill_at:
                            # Kill while this call is being applied, not between calls.
                            threading.Timer(rnd.uniform(0.0, 0.1), _kill, (server.proc,)).start()
                        client.apply_events(events, timeout=120)
            except ServiceError:
                pass  # the server died under the call: push everything again
            if killing:
                _kill(server.proc)
                server.proc.wait()
        versions.append(digest(data)["data_version"])
    return digest(data), versions


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=180_000)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--server-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    from loaders import synth

    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        feed = work / "feed.jsonl"
        events = synth.write_feed(feed, args.seed, args.listings)
        clean, duration = clean_load(work, feed)
        print(f"feed: {events} events; clean load {duration:.1f}s, data version {clean['data_version']}")
        killed, versions = killed_loads(work, feed, args.kills, clean["data_version"], rnd)
        mid = sum(0 < v < clean["data_version"] for v in versions)
        print(f"loader SIGKILLed {args.kills} times ({mid} mid-load) at data versions {versions}")
        print("loader: end state equals clean load:", killed == clean)
        served, server_versions = killed_servers(work, feed, args.server_kills, rnd)
        print(f"server SIGKILLed {args.server_kills} times during ApplyEvents at data versions {server_versions}")
        print("server: end state equals clean load:", served == clean)
        return 0 if killed == clean and served == clean else 1


if __name__ == "__main__":
    sys.exit(main())
