"""Crash-safety harness: SIGKILL the loader (plain and --bulk) or a server inside
ApplyEvents at random points, re-run the same feed, and compare the end state with a
clean load's by the canonical store digest. After every kill the store is also asked,
through the checker a server would use, about every probe document that a listing in
force names: it must be found (and DENY where the listing restricts today); a store an
interrupted bulk load left must refuse to open at all. The test suite runs a short
version; the long one:

    .venv/bin/python tests/crash_harness.py --listings 180000 --kills 25 --bulk-kills 5 --server-kills 5

A kill counts as interrupting a write only if the killed run had applied events and had
more to apply (data version before < after < end), or, for --bulk, left the store
marked incomplete; the report lists before/after for every kill.
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
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests")]

from processes import ServerProcess, _env, sanction  # noqa: E402

PEPPER_HEX = "5e" * 32
PEPPER = bytes.fromhex(PEPPER_HEX)
# Killed runs pause after each batch: a load is otherwise over before a kill can land in it.
KILLED_ENV = {"SANCTION_PEPPER": PEPPER_HEX, "SANCTION_TEST_BATCH_PAUSE": "0.05"}


def digest(data: Path) -> dict:
    result = sanction("digest", "--data-dir", str(data), env={"SANCTION_PEPPER": PEPPER_HEX})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def init(data: Path) -> None:
    result = sanction("init", "--data-dir", str(data), env={"SANCTION_PEPPER": PEPPER_HEX})
    assert result.returncode == 0, result.stderr


def load_command(data: Path, feed: Path, *, bulk: bool = False) -> list[str]:
    command = [sys.executable, "-m", "sanction_service", "load", "--data-dir", str(data), "--no-progress", str(feed)]
    # Small batches put many commits in the short test feed (bulk ones too: its default is 50 000).
    return command + (["--bulk", "--parse-workers", "1", "--batch-size", "500"] if bulk else ["--batch-size", "500"])


def clean_load(work: Path, feed: Path) -> tuple[dict, float]:
    data = work / "clean"
    init(data)
    started = time.monotonic()
    subprocess.run(
        load_command(data, feed), env=_env({"SANCTION_PEPPER": PEPPER_HEX}), cwd=ROOT, check=True, capture_output=True
    )
    return digest(data), time.monotonic() - started


@dataclass
class Kill:
    before: int  # data version when the killed run started
    after: int  # data version right after the kill
    incomplete: bool  # the store is marked as holding an unfinished bulk load
    interrupted: bool  # the kill landed while the run was writing


def _store_state(data: Path) -> tuple[int, bool]:
    from sanction_service.identity import pepper_fingerprint
    from sanction_service.store import INCOMPLETE, Store

    store = Store(data, pepper_fingerprint(PEPPER), map_size=1 << 30, allow_incomplete=True)
    try:
        with store.read() as view:
            if view.meta(INCOMPLETE) is not None:
                # A bulk load writes meta (the sequence) in its last transaction: its
                # progress is the journal it has committed so far.
                return view.count("journal"), True
            return view.seq(), False
    finally:
        store.close()


def probe_violations(data: Path, probes: list[dict], today: date | None = None) -> tuple[int, list[str]]:
    """Ask the store, as a server would (persisted prefilter loaded or rebuilt, one
    snapshot per batch), about every positive probe whose listing is in force and names
    the probe's document. Returns (probes asked, what went wrong)."""
    from sanction_service.checker import Checker, CheckQuery, today_in_shanghai
    from sanction_service.decisions import DENY, listing_restricts_on
    from sanction_service.identity import DocumentType, document_key, normalize, pepper_fingerprint
    from sanction_service.lifecycle import ACTIVE
    from sanction_service.settings import PREFILTER_FILE
    from sanction_service.store import Store

    day = (today or today_in_shanghai()).isoformat()
    store = Store(data, pepper_fingerprint(PEPPER), map_size=1 << 30)
    try:
        checker = Checker(store, PEPPER, prefilter_path=data / PREFILTER_FILE, error_rate=0.001)
        checker.warm_up()
        asked: list[tuple[CheckQuery, str, bool]] = []
        with store.read() as view:
            for probe in probes:
                if probe["expect"] not in ("LISTED", "ORG_PERSON"):
                    continue
                record = view.listing_record(probe["listing_id"])
                if record is None or record["status"] != ACTIVE:
                    continue
                d = probe["document"]
                key = document_key(PEPPER, normalize(DocumentType(d["type"]), d["number"], d.get("country", "")))
                if key.hex() in {person["key"] for person in record["persons"]}:
                    query = CheckQuery(d["type"], d["number"], d.get("country", ""))
                    asked.append((query, probe["listing_id"], listing_restricts_on(record, day)))
        problems = []
        for start in range(0, len(asked), 1000):
            chunk = asked[start : start + 1000]
            for (_, listing_id, restricts), result in zip(chunk, checker.check_many([q for q, _, _ in chunk])):
                found = [m.found.listing["listing_id"] for m in result.decision.matches]
                if listing_id not in found:
                    problems.append(f"{listing_id}: listing in force not found")
                elif restricts and result.decision.decision != DENY:
                    problems.append(f"{listing_id}: restricts on {day} but answered {result.decision.decision}")
        return len(asked), problems
    finally:
        store.close()


def assert_fails_closed_or_finds_probes(data: Path, probes: list[dict]) -> int:
    """After a kill: an unfinished bulk load refuses to open; anything else finds every probe."""
    from sanction_service.store import StoreIncomplete

    if _store_state(data)[1]:
        try:
            probe_violations(data, probes)
        except StoreIncomplete:
            return 0
        raise AssertionError(f"{data} is marked incomplete yet opened")
    asked, problems = probe_violations(data, probes)
    assert not problems, problems[:10]
    return asked


def killed_loads(
    work: Path, feed: Path, kills: int, total: int, rnd: random.Random, probes: list[dict], *, bulk: bool = False
) -> tuple[dict, list[Kill], int]:
    """Kill the loader `kills` times, re-running the same feed after each kill.

    Each run is killed a random moment after the store passed a random target version
    above the one the run started from, so the kill lands while it writes. Returns the
    final digest, the kills and how many probe checks the stores answered after kills.
    """
    data = work / ("bulk-killed" if bulk else "killed")
    init(data)
    record: list[Kill] = []
    probes_asked = 0
    for done in range(kills):
        before, _ = _store_state(data)
        floor = 0 if bulk else before  # a bulk re-run starts over
        # Within this run's share of what is left (the kills still to come share the
        # rest), so every run is killed while it still has events to write.
        share = (total - floor) // (1 if bulk else kills - done + 1)
        target = rnd.randrange(floor + 1, floor + max(2, share))
        proc = subprocess.Popen(
            load_command(data, feed, bulk=bulk),
            env=_env(KILLED_ENV),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None:
            seq, marked = _store_state(data)
            if seq >= target and (marked or not bulk):
                break
            time.sleep(0.005)
        time.sleep(rnd.uniform(0, 0.02))  # somewhere inside the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after, incomplete = _store_state(data)
        interrupted = incomplete if bulk else before < after < total
        record.append(Kill(0 if bulk else before, after, incomplete, interrupted))
        probes_asked += assert_fails_closed_or_finds_probes(data, probes)
    final = subprocess.run(
        load_command(data, feed, bulk=bulk), env=_env({"SANCTION_PEPPER": PEPPER_HEX}), cwd=ROOT, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stdout + final.stderr
    probes_asked += assert_fails_closed_or_finds_probes(data, probes)
    return digest(data), record, probes_asked


def killed_servers(work: Path, feed: Path, kills: int, rnd: random.Random, chunk: int = 1000) -> tuple[dict, list[int]]:
    """SIGKILL a server while a client pushes the feed through ApplyEvents; restart it and
    push the whole feed again from the start; the last push runs undisturbed."""
    from sanction_service.clients.sanction_client import RestrictionClient, ServiceError

    data = work / "served"
    init(data)
    lines = feed.read_text(encoding="utf-8").splitlines()
    chunks = [lines[i : i + chunk] for i in range(0, len(lines), chunk)]
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
    parser.add_argument("--bulk-kills", type=int, default=5)
    parser.add_argument("--server-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    from sanction_service.loaders import synth

    rnd = random.Random(args.seed)
    start = date.today()  # listings in the three years before today: most are in force today
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        feed = work / "feed.jsonl"
        events = synth.write_feed(feed, args.seed, args.listings, start=start)
        probes = list(synth.generate_probes(args.seed, args.listings, start=start))
        clean, duration = clean_load(work, feed)
        total = clean["data_version"]
        print(f"feed: {events} events, {len(probes)} probes; clean load {duration:.1f}s, data version {total}")
        ok = True
        for bulk, kills in ((False, args.kills), (True, args.bulk_kills)):
            name = "bulk loader" if bulk else "loader"
            killed, record, asked = killed_loads(work, feed, kills, total, rnd, probes, bulk=bulk)
            interrupted = sum(k.interrupted for k in record)
            print(
                f"{name}: {kills} SIGKILLs, {interrupted} interrupted a write; data version before -> after "
                f"(* = store left marked incomplete): "
                + ", ".join(f"{k.before}->{k.after}{'*' if k.incomplete else ''}" for k in record)
            )
            print(
                f"{name}: {asked} probe checks after the kills, all found (DENY where in force today); "
                f"end state equals clean load: {killed == clean}"
            )
            ok &= killed == clean
        served, server_versions = killed_servers(work, feed, args.server_kills, rnd)
        print(f"server SIGKILLed {args.server_kills} times during ApplyEvents at data versions {server_versions}")
        print("server: end state equals clean load:", served == clean)
        return 0 if ok and served == clean else 1


if __name__ == "__main__":
    sys.exit(main())
