"""pytest set-up for the micro-benchmarks (benchmarks/test_micro.py).

- puts the project, its generated stubs and benchmarks/ on sys.path;
- writes benchmarks/results/micro.json when --benchmark-json is not given;
- adds to that JSON the exact command, BENCH_SIZE, the machine, the commit and a timestamp, and drops
  the raw per-round timings (the statistics stay), which would make it megabytes;
- prints each benchmark's extra_info (IDs/s of the batch checks) after the table.

pyproject's addopts disables benchmarks (`--benchmark-disable`, so `make test` stays fast);
pass `--benchmark-enable`, otherwise each benchmark body runs once as a smoke test.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "gen"), str(HERE)]

from common import RESULTS, bench_size, commit, machine, now_utc  # noqa: E402


def _command(config) -> str:
    return shlex.join([sys.executable, "-m", "pytest", *config.invocation_params.args])


def _enabled(config) -> bool:
    # pytest-benchmark: disabled = --benchmark-disable and not --benchmark-enable.
    return bool(config.getoption("benchmark_enable", False)) or not config.getoption("benchmark_disable", False)


def pytest_configure(config):
    if getattr(config.option, "benchmark_json", "absent") is None and _enabled(config):
        RESULTS.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = RESULTS / "micro.json"


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["sanction"] = {
        "command": _command(config),
        "bench_size": bench_size(),
        "machine": machine(),
        "commit": commit(),
        "timestamp": now_utc(),
    }
    for bench in output_json.get("benchmarks", []):
        bench.pop("data", None)
        bench.get("stats", {}).pop("data", None)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    if session.disabled:
        terminalreporter.write_line("benchmarks ran once each (disabled): pass --benchmark-enable to measure", yellow=True)
        return
    rows = [(b.fullname.split("::")[-1], b.extra_info) for b in session.benchmarks if b.extra_info]
    if rows:
        terminalreporter.section(f"extra figures (BENCH_SIZE={bench_size()})")
        for name, info in rows:
            terminalreporter.write_line(f"{name:48s} " + "  ".join(f"{k}={v}" for k, v in info.items()))
