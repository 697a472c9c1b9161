"""Shared bits of the benchmark scripts: the machine description, percentiles, result files.

Every result file in benchmarks/results/ carries the exact command line, BENCH_SIZE, the
machine (nproc, CPU model, RAM, load average), the commit measured and a UTC timestamp,
so figures from different runs can be told apart.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_SIZE = 200_000


def bench_size(default: int = DEFAULT_SIZE) -> int:
    raw = os.environ.get("BENCH_SIZE", "").replace("_", "")
    return int(raw) if raw else default


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine() -> dict:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_gib": round(ram_bytes() / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def command_line() -> str:
    return shlex.join([sys.executable, *sys.argv])


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def commit() -> str:
    """The checkout's commit, with "+dirty" when tracked files other than results differ
    from it ("unknown" outside a git checkout, e.g. an unpacked archive)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        # Result files are rewritten by the run itself: they do not make the code dirty.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def header(size: int, command: str | None = None) -> dict:
    return {
        "command": command or command_line(),
        "bench_size": size,
        "machine": machine(),
        "commit": commit(),
        "timestamp": now_utc(),
    }


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def percentiles(samples: list[float]) -> dict:
    """Latency summary in milliseconds of samples in seconds (nearest-rank)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    n = len(ordered)

    def pick(q: float) -> float:
        return round(ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))] * 1000, 3)

    return {
        "n": n,
        "mean_ms": round(sum(ordered) / n * 1000, 3),
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def alternate_servers(
    rounds: int, sides: tuple[str, ...], start, measure, cpus: set[int], workers: int = 1
) -> dict[str, list[dict]]:
    """Rounds of the sides, the order flipped every round: `start(side)` gives a server
    process (not yet serving), `measure(target, pid)` one row of figures. The server may
    use every CPU while it starts; this process (the client) is then moved to the last."""
    from load import pin

    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            # Children inherit affinity: the server starts with every CPU.
            pin(os.getpid(), cpus)
            server = start(side)
            try:
                target = server.wait_serving(timeout=300, workers=workers)
                pin(os.getpid(), {max(cpus)})
                row = measure(target, server.proc.pid)
            finally:
                server.stop()
            rows[side].append(row)
            print(f"round {r} {side:4s} " + "  ".join(f"{k} {v:>7}" for k, v in row.items()), flush=True)
            time.sleep(0.5)
    return rows


def medians_and_change(rows: dict[str, list[dict]], base: str, other: str) -> tuple[dict, dict]:
    """Each side's median figures, printed, and `other`'s relative change against `base`."""
    medians = {name: {k: statistics.median(row[k] for row in rs) for k in rs[0]} for name, rs in rows.items()}
    for name, m in medians.items():
        print(f"median {name:4s} " + "  ".join(f"{k} {v:>8.1f}" for k, v in m.items()))
    change = {k: round(medians[other][k] / medians[base][k] - 1, 3) for k in medians[other]}
    print(f"{other} vs {base}: " + "  ".join(f"{k} {v:+.1%}" for k, v in change.items()))
    return medians, change
