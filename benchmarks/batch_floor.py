"""Where a small batch's time goes, end to end: BatchCheckRestriction of --batch items (100
by default), one request in flight, against one pinned server process of each kind, the
kinds alternating round by round:

- echo: benchmarks/echo_server.py answering every request with the service's answer to
  the first (gRPC and protobuf alone, the same messages, no checks): the floor.
- service: `sanction serve --pin-cpus`.
- service_items_free: the same server (`build_service`, run by this script with --serve)
  with the batch path's per-item numeric steps (the resident-ID check, the keyed hashes,
  the prefilter probe) memoized across the repeating requests: about what a native helper
  for those steps could at best save.

    .venv/bin/python benchmarks/batch_floor.py [--size 20000] [--batch 100] [--rounds 3] [--seconds 3]

Per kind: the round trip, the server's CPU per request (all its threads), the client's,
and IDs per second; medians of the rounds go to benchmarks/results/batch-floor-<batch>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]

from common import alternate_servers, bench_size, header, write_result  # noqa: E402
from dataset import ensure_dataset, mix, probe_documents  # noqa: E402
from load import batch_bytes, new_channel, raw_method, tree_cpu_seconds  # noqa: E402
from processes import ServerProcess  # noqa: E402

KINDS = ("echo", "service", "service_items_free")


def serve_items_free(data: str) -> None:
    """`sanction serve --pin-cpus`'s server (one process, CPU 0) with the per-item steps memoized."""
    import threading

    from sanction_service import checker as checker_module
    from sanction_service.grpc_api.server import build_service, pin_to_cpu
    from sanction_service.settings import Settings

    pin_to_cpu(0)
    service = build_service(Settings(data_dir=data, listen="127.0.0.1:0", metrics_port=0))
    service.warm_up()
    checker, prefilter = service.checker, service.checker.prefilter
    assert prefilter is not None

    def memoized(function, key_of):
        seen: dict = {}

        def lookup(argument):
            key = key_of(argument)
            if key not in seen:
                seen[key] = function(argument)
            return seen[key]

        return lookup

    checker_module.canonical_resident_id_bytes = memoized(checker_module.canonical_resident_id_bytes, lambda joined: joined)
    keyer = checker._resident_keyer
    keyer.keys = memoized(keyer.keys, lambda numbers: b"".join(numbers))  # type: ignore[method-assign]
    prefilter.may_contain_many = memoized(prefilter.may_contain_many, lambda keys: keys.tobytes())  # type: ignore[method-assign]
    service.start()
    print(f"listening on 127.0.0.1:{service.port}\nSERVING at data version 0", file=sys.stderr, flush=True)
    threading.Event().wait()


def start(kind: str, data: Path, answer: Path, unary: Path) -> ServerProcess:
    if kind == "echo":
        command = [sys.executable, str(HERE / "echo_server.py"), "--response", str(unary), "--batch-response", str(answer)]
        return ServerProcess(command=[*command, "--workers", "1", "--pin-cpus"])
    if kind == "service":
        return ServerProcess("--data-dir", str(data), "--pin-cpus")
    return ServerProcess(command=[sys.executable, __file__, "--serve", str(data)])


def measure(target: str, pid: int, payloads: list[bytes], batch: int, seconds: float) -> dict:
    channel = new_channel(target)
    try:
        call = raw_method(channel, "BatchCheckRestriction")
        for i in range(200):  # warm: every payload's pages, the memo of service_items_free
            call(payloads[i % len(payloads)], timeout=60)
        server0, client0, began, done = tree_cpu_seconds(pid), time.process_time(), time.perf_counter(), 0
        while time.perf_counter() - began < seconds:
            call(payloads[done % len(payloads)], timeout=60)
            done += 1
        wall = time.perf_counter() - began
        return {
            "round_trip_us": round(wall / done * 1e6, 1),
            "server_cpu_us_per_request": round((tree_cpu_seconds(pid) - server0) / done * 1e6, 1),
            "client_cpu_us_per_request": round((time.process_time() - client0) / done * 1e6, 1),
            "ids_per_second": round(done * batch / wall),
        }
    finally:
        channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=bench_size(20_000), help="listings of the dataset")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_items_free(args.serve)
        return 0
    d = ensure_dataset(args.size)
    # 200 distinct requests, repeated: few enough for service_items_free's memo to hold them all.
    payloads = batch_bytes(mix(probe_documents(d), 200 * args.batch, 0.99, seed=2), args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        answer, unary = Path(tmp) / "batch.bin", Path(tmp) / "unary.bin"
        unary.write_bytes(b"")
        with ServerProcess("--data-dir", str(d)) as server:
            channel = new_channel(server.wait_serving())
            answer.write_bytes(raw_method(channel, "BatchCheckRestriction")(payloads[0], timeout=60))
            channel.close()
        rows = alternate_servers(
            args.rounds,
            KINDS,
            lambda kind: start(kind, d, answer, unary),
            lambda target, pid: measure(target, pid, payloads, args.batch, args.seconds),
            set(os.sched_getaffinity(0)),
        )
    medians = {kind: {key: statistics.median(row[key] for row in rs) for key in rs[0]} for kind, rs in rows.items()}
    for kind, m in medians.items():
        print(f"{kind:20s} " + "  ".join(f"{k} {v:,.1f}" for k, v in m.items()))
    write_result(f"batch-floor-{args.batch}", {**header(args.size), "batch": args.batch, "rounds": rows, "medians": medians})
    return 0


if __name__ == "__main__":
    sys.exit(main())
