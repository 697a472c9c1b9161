"""Sync gRPC server or grpc.aio? The same checks on both, alternating, in one run.

    .venv/bin/python benchmarks/server_model.py --rounds 5 --seconds 3 [--pin]

"sync" is this tree's `sanction serve`. "aio" is the smallest grpc.aio server that does
the same work: this script run with --serve-aio, serving CheckRestriction and
BatchCheckRestriction through the same RestrictionServicer._answer inline on the event
loop (no deadlines, streams, health or auth: what it measures is the cost of the server
model, which only grows with those). Each is driven as in ab_servers.py (unary with 8 in
flight, batches of 100 with 2), reading the server's CPU per call. Medians go to
benchmarks/results/server-model.json. --pin: servers on CPU 0, client on the last CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]

from ab_servers import measure  # noqa: E402
from common import alternate_servers, bench_size, header, medians_and_change, write_result  # noqa: E402
from dataset import ensure_dataset, mix, probe_documents  # noqa: E402
from load import batch_bytes, request_bytes  # noqa: E402
from processes import ServerProcess  # noqa: E402


def aio_server(data: Path, pinned: bool) -> ServerProcess:
    """This script with --serve-aio, which logs the lines ServerProcess waits for."""
    return ServerProcess(command=[sys.executable, __file__, "--serve-aio", str(data), *(["--pin"] if pinned else [])])


def serve_aio(data: str, pinned: bool) -> None:
    if pinned:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import grpc
    from google.rpc import status_pb2
    from grpc_status import rpc_status
    from sanction.v1 import restriction_pb2 as pb
    from sanction.v1 import restriction_pb2_grpc

    from sanction_service.grpc_api.restriction import RestrictionServicer
    from sanction_service.grpc_api.server import make_checker, open_store
    from sanction_service.settings import Settings

    settings = Settings(data_dir=data, listen="127.0.0.1:0", metrics_port=0)
    store, pepper = open_store(settings)
    checker = make_checker(settings, store, pepper)
    checker.warm_up()
    answer = RestrictionServicer(checker)._answer

    class Aio(restriction_pb2_grpc.RestrictionServiceServicer):
        async def CheckRestriction(self, request, context):
            outcome = answer([request])
            item = outcome if isinstance(outcome, status_pb2.Status) else outcome[0][0]
            if isinstance(item, status_pb2.Status):
                await context.abort_with_status(rpc_status.to_status(item))
            checker.refusals.add_results(outcome[1])
            return item

        async def BatchCheckRestriction(self, request, context):
            outcome = answer(list(request.checks), context)
            if isinstance(outcome, status_pb2.Status):
                await context.abort_with_status(rpc_status.to_status(outcome))
            checker.refusals.add_results(outcome[1])
            return pb.BatchCheckResponse(
                items=[
                    pb.BatchCheckItem(error=i) if isinstance(i, status_pb2.Status) else pb.BatchCheckItem(result=i)
                    for i in outcome[0]
                ]
            )

    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        restriction_pb2_grpc.add_RestrictionServiceServicer_to_server(Aio(), server)
        port = server.add_insecure_port(settings.listen)
        await server.start()
        print(f"listening on 127.0.0.1:{port}\nSERVING at data version 0", file=sys.stderr, flush=True)
        await server.wait_for_termination()

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=bench_size(20_000))
    parser.add_argument("--pin", action="store_true")
    parser.add_argument("--serve-aio", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="server-model")
    args = parser.parse_args()
    if args.serve_aio:
        serve_aio(args.serve_aio, args.pin)
        return 0

    d = ensure_dataset(args.size)
    docs = mix(probe_documents(d), 20_000)
    unary, b100 = [request_bytes(x) for x in docs[:5000]], batch_bytes(docs, 100)
    cpus = set(os.sched_getaffinity(0))

    def start(name: str):
        if name == "sync":
            return ServerProcess("--data-dir", str(d), *(["--pin-cpus"] if args.pin else []))
        return aio_server(d, args.pin)

    rows = alternate_servers(
        args.rounds, ("sync", "aio"), start, lambda target, pid: measure(target, pid, unary, b100, None, args.seconds), cpus
    )
    medians, change = medians_and_change(rows, "sync", "aio")
    write_result(args.out, {**header(args.size), "pinned": args.pin, "rounds": rows, "medians": medians, "change": change})
    return 0


if __name__ == "__main__":
    sys.exit(main())
