"""What the per-RPC metrics cost, and the latencies their buckets must resolve.

    .venv/bin/python benchmarks/rpc_metrics.py [--rounds 7] [--calls 100000] [--size 20000]

1. CPU per call of the instrumentation alone (grpc_api/rpc_metrics.py), in this process:
   the interceptor's lookup plus the wrapped unary handler around a handler that does
   nothing, minus the same call without the interceptor; alternated rounds, medians. Once
   with prometheus-client's in-memory values (one `sanction serve` process) and once, in a
   child process, with its multiprocess files (`serve --workers N`).
2. The real latencies: a `sanction serve` of this tree on the benchmark dataset
   (data/bench-<size>/, benchmarks/dataset.py) answers sequential unary checks, batches of
   100 and 1000, health checks and one stream; its own grpc_server_handling_seconds and
   sanction_check_seconds are then read from /metrics: mean per method and the share of
   calls at or under each bucket bound.

The whole-server before/after (calls per second, server CPU per call) is
benchmarks/ab_servers.py with the tree before the metrics as --base.
Results: printed, and written to benchmarks/results/rpc-metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]


def instrumentation_cost(rounds: int, calls: int) -> dict:
    """CPU µs per unary call added by MetricsInterceptor (median over alternated rounds)."""
    import grpc

    from sanction_service import metrics
    from sanction_service.grpc_api.rpc_metrics import MetricsInterceptor

    class Context:
        def code(self):
            return None

        def is_active(self):
            return True

    class Details:
        method = "/sanction.v1.RestrictionService/CheckRestriction"
        invocation_metadata = ()

    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    continuation = lambda details: handler  # noqa: E731
    interceptor = MetricsInterceptor("0")
    context, details = Context(), Details()

    def plain() -> float:
        started = time.process_time()
        for _ in range(calls):
            continuation(details).unary_unary(None, context)
        return time.process_time() - started

    def instrumented() -> float:
        started = time.process_time()
        for _ in range(calls):
            interceptor.intercept_service(continuation, details).unary_unary(None, context)
        return time.process_time() - started

    instrumented()  # label children and caches made before measuring
    added = []
    for r in range(rounds):
        pair = (plain, instrumented) if r % 2 == 0 else (instrumented, plain)
        took = {f.__name__: f() for f in pair}
        added.append((took["instrumented"] - took["plain"]) / calls * 1e6)
    return {
        "multiprocess": metrics.multiprocess(),
        "added_cpu_us_per_call_median": round(statistics.median(added), 2),
        "rounds_us": [round(a, 2) for a in added],
    }


def cost_in_child(rounds: int, calls: int) -> dict:
    """The same in a fresh interpreter whose prometheus_client records to multiprocess files."""
    with tempfile.TemporaryDirectory(prefix="rpc-metrics-") as folder:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])}
        out = subprocess.run(
            [sys.executable, __file__, "--cost-only", "--rounds", str(rounds), "--calls", str(calls)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return json.loads(out.splitlines()[-1])


def bucket_shares(page: str, name: str, method: str | None) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    buckets, count, total = {}, 0.0, 0.0
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if method is not None and s.labels.get("grpc_method") != method:
                continue
            if s.name == name + "_bucket":
                buckets[s.labels["le"]] = buckets.get(s.labels["le"], 0) + s.value
            elif s.name == name + "_count":
                count += s.value
            elif s.name == name + "_sum":
                total += s.value
    if not count:
        return {}
    return {
        "calls": int(count),
        "mean_us": round(total / count * 1e6, 1),
        "share_at_or_under": {le: round(v / count, 3) for le, v in sorted(buckets.items(), key=lambda kv: float(kv[0]))},
    }


def latencies(size: int) -> dict:
    import grpc
    from dataset import ensure_dataset, mix, probe_documents
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from load import batch_bytes, free_port, raw_method, request_bytes, stream_bytes
    from processes import ServerProcess

    d = ensure_dataset(size)
    docs = mix(probe_documents(d), 20_000)
    unary, b100, b1000, stream = (
        [request_bytes(x) for x in docs[:3000]],
        batch_bytes(docs, 100)[:200],
        batch_bytes(docs, 1000)[:20],
        stream_bytes(docs[:3000]),
    )
    port = free_port()
    with ServerProcess("--data-dir", str(d), "--metrics-port", str(port)) as server:
        target = server.wait_serving(timeout=300)
        with grpc.insecure_channel(target) as channel:
            check, batch = raw_method(channel, "CheckRestriction"), raw_method(channel, "BatchCheckRestriction")
            for payload in unary:
                check(payload, timeout=30)
            for payload in b100 + b1000:
                batch(payload, timeout=30)
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(500):
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            streaming = raw_method(channel, "StreamCheckRestriction", streaming=True)
            for _ in streaming(iter(stream), timeout=60):
                pass
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {
        m: bucket_shares(page, "grpc_server_handling_seconds", m)
        for m in ("CheckRestriction", "BatchCheckRestriction", "Check", "StreamCheckRestriction")
    }
    out["sanction_check_seconds"] = bucket_shares(page, "sanction_check_seconds", None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100_000, help="calls per round of the instrumentation measure")
    parser.add_argument("--size", type=int, default=20_000, help="listings in the dataset of the latency run")
    parser.add_argument("--cost-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost_only:
        print(json.dumps(instrumentation_cost(args.rounds, args.calls)))
        return 0
    from common import header, write_result

    result = {
        "in_memory": instrumentation_cost(args.rounds, args.calls),
        "multiprocess_files": cost_in_child(args.rounds, args.calls),
    }
    for mode in ("in_memory", "multiprocess_files"):
        print(
            f"instrumentation, {mode}: +{result[mode]['added_cpu_us_per_call_median']} us CPU per unary call "
            f"(rounds {result[mode]['rounds_us']})",
            flush=True,
        )
    result["latencies"] = latencies(args.size)
    for name, row in result["latencies"].items():
        print(f"{name}: {json.dumps(row)}")
    write_result("rpc-metrics", {**header(args.size), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
