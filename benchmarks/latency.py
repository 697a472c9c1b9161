"""Single-check and batch latency over loopback against a real `sanction serve`.

Starts a server on the given data dir (ephemeral port), then measures sequential unary
checks and batches of 100 and 1000 with the Python client, mixing listed and never-listed
documents from the probe file `sanction synth --probes` wrote. Prints the figures and
writes them to benchmarks/results/latency.json.

    .venv/bin/python benchmarks/latency.py --data-dir data/demo --probes data/demo/demo-probes.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests")]

from processes import ServerProcess  # noqa: E402
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, Trip  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {
        "n": len(ordered),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
    }


def load_probes(path: Path, limit: int) -> list[Passenger]:
    passengers = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            probe = json.loads(line)
            d = probe["document"]
            passengers.append(Passenger(d["type"], d["number"], d.get("country", "")))
            if len(passengers) >= limit:
                break
    return passengers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/demo")
    parser.add_argument("--probes", default="data/demo/demo-probes.jsonl")
    parser.add_argument("--unary", type=int, default=2000, help="sequential unary checks")
    parser.add_argument("--batches", type=int, default=50, help="batches of each size")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency.json"))
    args = parser.parse_args()

    passengers = load_probes(Path(args.probes), 5000)
    trip = Trip("FLIGHT")
    results: dict = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "data_dir": args.data_dir,
    }
    with ServerProcess("--data-dir", args.data_dir) as server:
        target = server.wait_serving(timeout=600)
        with RestrictionClient(target, timeout=10) as client:
            for p in passengers[:200]:  # warm up connections and pages
                client.check(p, trip)
            samples = []
            for i in range(args.unary):
                started = time.perf_counter()
                client.check(passengers[i % len(passengers)], trip)
                samples.append(time.perf_counter() - started)
            results["unary"] = percentiles(samples)
            for size in (100, 1000):
                samples = []
                for b in range(args.batches):
                    chunk = [passengers[(b * size + j) % len(passengers)] for j in range(size)]
                    started = time.perf_counter()
                    client.check_batch(chunk, trip)
                    samples.append(time.perf_counter() - started)
                stats = percentiles(samples)
                stats["ids_per_second"] = size / statistics.fmean(samples)
                results[f"batch_{size}"] = stats
            stats = client.stats()
            results["active_listings"] = stats.active_listings
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
