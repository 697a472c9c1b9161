"""A/B throughput of the `sanction serve` of two source trees, in one run, alternating.

    git archive <ref> | tar -x -C /tmp/base && cp -r gen /tmp/base/
    .venv/bin/python benchmarks/ab_servers.py --base /tmp/base --rounds 5 --seconds 4 [--pin] [--workers 2]

Each round starts the base tree's server, then this tree's (the order flips every round),
on the same dataset (benchmarks/dataset.py, BENCH_SIZE or --size, default 20 000), and
drives each with the sync Python client from this process: unary CheckRestriction with 8
calls in flight, BatchCheckRestriction of 100 with 2 in flight, and one stream with 32
messages in flight. Alternating rounds spread the noise of a shared machine over both
sides; the medians are printed and written to benchmarks/results/ab-servers.json.

The client keeps to the last CPU; --pin puts each server on CPU 0 (`serve --pin-cpus`),
without it the server may use every CPU (the client's too). --workers N runs each server
as `serve --workers N` (the CPU figures are then of the whole process tree).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]

from common import alternate_servers, bench_size, header, medians_and_change, write_result  # noqa: E402
from dataset import ensure_dataset, mix, probe_documents  # noqa: E402
from load import (  # noqa: E402
    batch_bytes,
    drive_calls,
    new_channel,
    raw_method,
    request_bytes,
    run_stream,
    stream_bytes,
    tree_cpu_seconds,
)
from processes import ServerProcess  # noqa: E402


class TreeServer(ServerProcess):
    """ServerProcess running the `sanction_service` of another source tree."""

    def __init__(self, tree: Path, *args: str):
        # `python -m` puts the working directory first on sys.path: run from the tree itself.
        super().__init__(*args, env={"PYTHONPATH": os.pathsep.join([str(tree), str(ROOT / "gen")])}, cwd=tree)


def measure(target: str, pid: int, unary: list[bytes], b100: list[bytes], stream: list[bytes] | None, seconds: float) -> dict:
    channel = new_channel(target)
    try:
        call, batch = raw_method(channel, "CheckRestriction"), raw_method(channel, "BatchCheckRestriction")
        drive_calls(lambda p: call(p, timeout=30), unary, 8, 0.0, 1.0)  # warm
        cpu = tree_cpu_seconds(pid)
        lat, took = drive_calls(lambda p: call(p, timeout=30), unary, 8, 0.0, seconds)
        unary_cpu = (tree_cpu_seconds(pid) - cpu) / len(lat)
        unary_rate = len(lat) / took
        cpu = tree_cpu_seconds(pid)
        lat, took = drive_calls(lambda p: batch(p, timeout=30), b100, 2, 0.0, seconds)
        batch_cpu = (tree_cpu_seconds(pid) - cpu) / (len(lat) * 100)
        batch_rate = len(lat) * 100 / took
    finally:
        channel.close()
    # Server CPU per call or ID: steadier than rates on a machine others use too.
    row = {
        "unary_calls_per_second": round(unary_rate),
        "unary_server_cpu_us": round(unary_cpu * 1e6),
        "batch100_ids_per_second": round(batch_rate),
        "batch100_server_cpu_us_per_id": round(batch_cpu * 1e6, 1),
    }
    if stream is not None:
        row["stream_messages_per_second"] = round(run_stream(target, stream, 32, 1.0, seconds, pid)["requests_per_second"])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="source tree to compare with (has sanction_service/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per figure")
    parser.add_argument("--size", type=int, default=bench_size(20_000), help="listings in the dataset")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, client on the last CPU")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    parser.add_argument("--out", default="ab-servers")
    args = parser.parse_args()

    d = ensure_dataset(args.size)
    docs = mix(probe_documents(d), 20_000)
    unary, b100, stream = [request_bytes(x) for x in docs[:5000]], batch_bytes(docs, 100), stream_bytes(docs[:5000])
    cpus = set(os.sched_getaffinity(0))
    trees = {"base": args.base.resolve(), "this": ROOT}
    extra = (["--pin-cpus"] if args.pin else []) + (["--workers", str(args.workers)] if args.workers > 1 else [])
    rows = alternate_servers(
        args.rounds,
        ("base", "this"),
        lambda name: TreeServer(trees[name], "--data-dir", str(d), *extra),
        lambda target, pid: measure(target, pid, unary, b100, stream, args.seconds),
        cpus,
        workers=args.workers,
    )
    medians, change = medians_and_change(rows, "base", "this")
    write_result(
        args.out,
        {
            **header(args.size),
            "base": str(trees["base"]),
            "pinned": args.pin,
            "workers": args.workers,
            "rounds": rows,
            "medians": medians,
            "change": change,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
