"""The benchmark harness's own parts that decide a figure (benchmarks/): the echo server
the unary target is measured against answers real gRPC calls from two pinned workers
with exactly the response it was given, and the target table says met or missed the
right way round for each kind of target."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import grpc
import pytest
from processes import ServerProcess
from sanction.v1 import restriction_pb2 as pb
from sanction.v1 import restriction_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import targets  # noqa: E402


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning two workers needs two CPUs")
def test_echo_server_answers_the_given_response_from_two_workers(tmp_path):
    response = pb.CheckResponse(decision=pb.ALLOW, data_version=7, masked_document="110105********1234")
    path = tmp_path / "response.bin"
    path.write_bytes(response.SerializeToString())
    echo = ServerProcess(
        command=[
            sys.executable,
            str(ROOT / "benchmarks" / "echo_server.py"),
            "--response",
            str(path),
            "--workers",
            "2",
            "--pin-cpus",
        ]
    )
    try:
        target = echo.wait_serving(timeout=60, workers=2)
        with grpc.insecure_channel(target) as channel:
            stub = restriction_pb2_grpc.RestrictionServiceStub(channel)
            request = pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number="110105198001011234"))
            answers = {stub.CheckRestriction(request, timeout=10).SerializeToString() for _ in range(5)}
        assert answers == {response.SerializeToString()}
        assert sum("SERVING at data version" in line for line in echo.lines) == 2
    finally:
        assert echo.stop() == 0


def _results(**over) -> dict:
    base = {
        "micro": {"batch1000_fast": {"ids_per_cpu_second": 500_000}, "hit_decode_us_median": 4.0},
        "batches_vs_redis": {
            f"batch{n}": {
                "ratios": {"python": r, "hiredis": r},
                "medians": {
                    "sanction": {"ids_per_second": 1},
                    "redis_python": {"ids_per_second": 1},
                    "redis_hiredis": {"ids_per_second": 1},
                },
            }
            for n, r in ((1000, 2.0), (100, 1.0))
        },
        "unary_vs_echo": {
            "medians": {"sanction": {"calls_per_second": 9, "p99_ms": 1.3}, "echo": {"calls_per_second": 10, "p99_ms": 1.0}},
            "calls_ratio": 0.9,
            "p99_ratio": 1.3,
        },
        "bulk_load": {
            "bulk": {"events": targets.FULL_EVENTS, "wall_s": 60.0, "events_per_s": 1, "peak_rss_mb": 2048},
            "same_digest": True,
        },
        "event_path": {
            "same_digest": True,
            "events": 1,
            "events_per_s_ratio": 5.0,
            "before_source": "x",
            "before_event": {"events_per_s": 1, "cpu_us_per_event": 1},
            "medians": {"after event": {"events_per_s": 5, "cpu_us_per_event": 1}},
        },
        "feed_size": 50_000,
    }
    base.update(over)
    return base


def test_targets_exactly_at_their_bound_are_met_and_just_past_it_missed():
    rows = targets.table(targets.FULL_SIZE, _results())
    assert [status for *_, status in rows] == ["met"] * len(rows)

    worse = _results()
    worse["micro"] = {"batch1000_fast": {"ids_per_cpu_second": 499_999}, "hit_decode_us_median": 4.01}
    worse["unary_vs_echo"].update(calls_ratio=0.89, p99_ratio=1.31)
    worse["bulk_load"] = {
        "bulk": {"events": targets.FULL_EVENTS, "wall_s": 60.1, "events_per_s": 1, "peak_rss_mb": 2049},
        "same_digest": False,
    }
    worse["event_path"]["events_per_s_ratio"] = 4.99
    for part, ratio in (("batch1000", 1.99), ("batch100", 0.99)):
        worse["batches_vs_redis"][part]["ratios"] = {"python": ratio, "hiredis": ratio}
    rows = targets.table(targets.FULL_SIZE, worse)
    assert [status for *_, status in rows] == ["missed"] * len(rows)


def test_a_figure_not_measured_is_neither_met_nor_missed():
    results = _results(
        batches_vs_redis={"skipped": "redis-server is not installed"}, unary_vs_echo={"skipped": "h2load is not installed"}
    )
    results["micro"] = {"missing": "micro-6000000.json missing (run `make bench`)"}
    statuses = {figure: status for figure, _, _, status in targets.table(targets.FULL_SIZE, results)}
    not_measured = [f for f in statuses if "Redis" in f or "echo" in f or "in-process" in f or "listed hit" in f]
    assert not_measured and all(statuses[f] == "n/a" for f in not_measured)


def test_the_hit_decode_figure_is_the_check_paths_decoder_when_there_are_two(tmp_path, monkeypatch):
    def bench(name, median_s):
        return {"name": name, "stats": {"median": median_s}, "extra_info": {}}

    monkeypatch.setattr(targets, "RESULTS", tmp_path)
    (tmp_path / "micro-1000.json").write_text(
        json.dumps(
            {
                "sanction": {"bench_size": 1000, "timestamp": "t"},
                "benchmarks": [bench("test_hit_decode[reference]", 4.3e-6), bench("test_hit_decode[typed]", 1.4e-6)],
            }
        )
    )
    figures = targets.micro_figures(1000)
    assert (figures["hit_decode_us_median"], figures["hit_decode_benchmark"]) == (1.4, "test_hit_decode[typed]")
    assert "missing" in targets.micro_figures(2000)
