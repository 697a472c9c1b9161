"""cProfile of BatchCheckRestriction's handler in process: CPU per request, then where it
goes, on the dataset's queries (99 % never listed), with the requests as a client sends them.

    .venv/bin/python benchmarks/profile_batch.py [--size 20000] [--batch 100] [--requests 2000]

The handler is called directly (`RestrictionServicer.BatchCheckRestriction` on the
request's bytes, a context that never runs late): no gRPC, no interceptors. The first
line is the median-free plain figure (process CPU per request, no profiler); the table
is cProfile's, sorted by cumulative time (the profiler roughly doubles the times).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "gen"), str(HERE)]

from common import bench_size  # noqa: E402
from dataset import ensure_dataset, mix, open_checker, probe_documents  # noqa: E402
from load import batch_bytes  # noqa: E402

from sanction_service.grpc_api.restriction import RestrictionServicer  # noqa: E402


class _OnTime:
    def time_remaining(self) -> float:
        return 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=bench_size(20_000), help="listings of the dataset")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30, help="rows of the profile")
    args = parser.parse_args()
    d = ensure_dataset(args.size)
    store, _, checker = open_checker(d)
    checker.warm_up()
    servicer, context = RestrictionServicer(checker), _OnTime()
    payloads = batch_bytes(mix(probe_documents(d), 200 * args.batch, 0.99, seed=2), args.batch)

    def run() -> None:
        for i in range(args.requests):
            servicer.BatchCheckRestriction(payloads[i % len(payloads)], context)

    run()  # warm
    started = time.process_time()
    run()
    print(f"{(time.process_time() - started) / args.requests * 1e6:.1f} us of CPU per request of {args.batch}")
    profile = cProfile.Profile()
    profile.runcall(run)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
