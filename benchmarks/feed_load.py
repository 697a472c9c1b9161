"""Loading benchmark: `sanction load --bulk` and `sanction load` (event by event) of a
synthetic feed into an empty store, as real processes under /usr/bin/time -v.

    BENCH_SIZE=200000 .venv/bin/python benchmarks/feed_load.py --rounds 3
    BENCH_SIZE=200000 .venv/bin/python benchmarks/feed_load.py --before /path/to/checkout-of-the-parent --rounds 3
    .venv/bin/python benchmarks/feed_load.py --size 20000 --modes bulk

BENCH_SIZE (or --size) listings, default 20 000: the feed is `sanction synth --seed 1
--start 2026-11-01` (cached in data/feedload-<size>/feed.jsonl). For each round and each
side (this checkout, and with --before another checkout run with the same interpreter,
e.g. a `git worktree` of the parent commit), each mode loads the feed into a fresh
store; the sides alternate within a round so both see the same machine load. Per run:
wall seconds, CPU seconds (user + sys of the loader and its parse workers, from
/usr/bin/time), peak RSS (the largest of those processes), events/s (wall) and µs of
CPU per event. Medians per side and mode are printed and written, with every run, the
exact command, the machine and its load average, to
benchmarks/results/feedload-<size>.json. Every store's `sanction digest` is compared:
this checkout's bulk and event-by-event stores must be equal (the exit status says so);
the --before side's stores are compared among themselves and with this side's, which
they may differ from by design when the store's schema changed in between.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import ROOT, bench_size, header, log, write_result  # noqa: E402

PEPPER_HEX = "5e" * 32
DEFAULT_SIZE = 20_000


def feed_for(size: int) -> Path:
    d = ROOT / "data" / f"feedload-{size}"
    feed = d / "feed.jsonl"
    if not feed.is_file():
        d.mkdir(parents=True, exist_ok=True)
        log(f"[feed_load] writing a feed of {size:,} listings to {feed}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sanction_service",
                "synth",
                "--seed",
                "1",
                "--listings",
                str(size),
                "--start",
                "2026-11-01",
                "--out",
                str(feed) + ".tmp",
            ],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.replace(str(feed) + ".tmp", feed)
    return feed


def _env(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTION_")}
    env["SANCTION_PEPPER"] = PEPPER_HEX
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(ROOT / "gen")])
    return env


# `sanction` itself, reporting at exit the CPU of this process (the writer) apart from
# that of its children (the parse workers), for the bound an idle machine would give.
_WRAPPER = (
    "import json, resource, sys\n"
    "from sanction_service.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('RUSAGE ' + json.dumps({'writer_cpu_s': me.ru_utime + me.ru_stime,"
    " 'workers_cpu_s': kids.ru_utime + kids.ru_stime}), file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _sanction(tree: Path, *args: str, timed: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sanction_service", *args]
    if timed:
        command = ["/usr/bin/time", "-v", sys.executable, "-c", _WRAPPER, *args]
    return subprocess.run(command, cwd=tree, env=_env(tree), capture_output=True, text=True)


def _time_v(stderr: str) -> dict:
    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}: (.+)$", stderr, re.M)
        if not match:
            raise RuntimeError(f"/usr/bin/time gave no {name!r}:\n{stderr[-2000:]}")
        return match.group(1).strip()

    clock = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(v * 60**i for i, v in enumerate(reversed(clock)))
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(float(field("User time (seconds)")) + float(field("System time (seconds)")), 2),
        "peak_rss_mb": round(int(field("Maximum resident set size (kbytes)")) / 1024, 1),
    }


CORES = os.cpu_count() or 1


def run_load(tree: Path, feed: Path, mode: str, work: Path, batch_size: int | None, parse_workers: int) -> dict:
    data = work / f"store-{mode}"
    shutil.rmtree(data, ignore_errors=True)
    init = _sanction(tree, "init", "--data-dir", str(data))
    if init.returncode != 0:
        raise RuntimeError(init.stderr)
    extra = ["--bulk"] if mode == "bulk" else []
    if parse_workers is not None:
        extra += ["--parse-workers", str(parse_workers)]
    if batch_size:
        extra += ["--batch-size", str(batch_size)]
    done = _sanction(tree, "load", "--data-dir", str(data), "--no-progress", *extra, str(feed), timed=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"load exited {done.returncode}:\n{done.stderr[-3000:]}")
    summary = re.search(r"(\d+) lines: (\d+) applied, (\d+) duplicates, (\d+) rejected", done.stdout)
    events = int(summary.group(1))
    digest = _sanction(tree, "digest", "--data-dir", str(data))
    result = {**_time_v(done.stderr), "events": events, "digest": json.loads(digest.stdout)["all"]}
    split = json.loads(re.search(r"^RUSAGE (.+)$", done.stderr, re.M).group(1))
    result["events_per_s"] = round(events / result["wall_s"])
    result["cpu_us_per_event"] = round(result["cpu_s"] / events * 1e6, 1)
    result["writer_us_per_event"] = round(split["writer_cpu_s"] / events * 1e6, 1)
    result["workers_us_per_event"] = round(split["workers_cpu_s"] / events * 1e6, 1)
    # On an idle machine of CORES cores: the writer runs alone on one, the workers share
    # the rest; the slower of the two sets the pace (an estimate, not a measurement).
    workers = max(1, min(parse_workers, CORES - 1)) if parse_workers and split["workers_cpu_s"] else 0
    bound = max(split["writer_cpu_s"], split["workers_cpu_s"] / workers) if workers else split["writer_cpu_s"]
    result["idle_machine_events_per_s_estimate"] = round(events / bound)
    shutil.rmtree(data, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="listings (default BENCH_SIZE or 20000)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="bulk,event", help="bulk,event")
    parser.add_argument("--before", type=Path, help="another checkout to measure beside this one (e.g. the parent commit)")
    parser.add_argument(
        "--after",
        type=Path,
        default=ROOT,
        help="the checkout measured as 'after' (default this one; a frozen worktree lets you edit here)",
    )
    parser.add_argument("--event-batch-size", type=int, default=None, help="--batch-size for the event path")
    parser.add_argument(
        "--parse-workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="--parse-workers of every bulk load and of this checkout's plain loads (%(default)s)",
    )
    parser.add_argument("--work", type=Path, default=None, help="where the stores go (default: a temp dir)")
    parser.add_argument("--out", default=None, help="result name (default feedload-<size>)")
    args = parser.parse_args()
    size = args.size or bench_size(DEFAULT_SIZE)
    feed = feed_for(size)
    sides = [("after", args.after.resolve())] + ([("before", args.before.resolve())] if args.before else [])
    modes = args.modes.split(",")
    runs: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="feedload-", dir=args.work))
    try:
        for r in range(args.rounds):
            # Alternate which side goes first, so neither always runs on the busier half.
            order = sides if r % 2 == 0 else list(reversed(sides))
            for mode in modes:
                for side, tree in order:
                    # The parent commit's plain load has no --parse-workers (it parses in-process).
                    workers = args.parse_workers if (mode == "bulk" or side == "after") else None
                    result = run_load(tree, feed, mode, work, args.event_batch_size if mode == "event" else None, workers)
                    result.update(side=side, mode=mode, round=r + 1, load_average=os.getloadavg())
                    runs.append(result)
                    log(
                        f"[feed_load] round {r + 1} {side:6s} {mode:5s} {result['events']:,} events: "
                        f"{result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU = {result['cpu_us_per_event']} "
                        f"us/event (writer {result['writer_us_per_event']}, workers {result['workers_us_per_event']}), "
                        f"{result['events_per_s']:,} events/s, peak RSS {result['peak_rss_mb']} MB, "
                        f"load {os.getloadavg()[0]:.1f}"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    digests = {r["digest"] for r in runs if r["side"] == "after"}
    before_digests = {r["digest"] for r in runs if r["side"] == "before"}
    medians = {}
    for side, _ in sides:
        for mode in modes:
            mine = [r for r in runs if r["side"] == side and r["mode"] == mode]
            medians[f"{side} {mode}"] = {
                k: statistics.median(r[k] for r in mine)
                for k in (
                    "wall_s",
                    "cpu_s",
                    "cpu_us_per_event",
                    "writer_us_per_event",
                    "workers_us_per_event",
                    "events_per_s",
                    "idle_machine_events_per_s_estimate",
                    "peak_rss_mb",
                )
            }
    print(f"feed of {size:,} listings ({runs[0]['events']:,} events), {args.rounds} round(s), medians:")
    for name, m in medians.items():
        print(
            f"  {name:14s} {m['wall_s']:8.1f} s wall {m['cpu_s']:8.1f} s CPU {m['cpu_us_per_event']:7.1f} us CPU/event "
            f"(writer {m['writer_us_per_event']:.1f}, workers {m['workers_us_per_event']:.1f}) "
            f"{m['events_per_s']:9,.0f} events/s (idle-machine estimate {m['idle_machine_events_per_s_estimate']:,.0f})"
            f"  peak RSS {m['peak_rss_mb']:7.1f} MB"
        )
    print("one digest for every store of this checkout (bulk and event by event):", len(digests) == 1)
    if before_digests:
        print(
            "before: one digest for its stores:",
            len(before_digests) == 1,
            "; equal to this checkout's:",
            before_digests == digests,
        )
    write_result(
        args.out or f"feedload-{size}",
        {
            **header(size),
            "feed": str(feed),
            "events": runs[0]["events"],
            "before": str(args.before) if args.before else None,
            "after": str(args.after),
            "same_digest": len(digests) == 1,
            "before_same_digest": len(before_digests) == 1 if before_digests else None,
            "before_digest_equal": before_digests == digests if before_digests else None,
            "medians": medians,
            "runs": runs,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
