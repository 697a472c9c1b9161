"""The smallest gRPC server with `sanction serve`'s messages and worker set-up: the yardstick
for the unary target of issue 9, and the floor under the batch figures (benchmarks/targets.py).

    .venv/bin/python benchmarks/echo_server.py --response answer.bin [--batch-response batch.bin]
        [--workers 2] [--pin-cpus]

CheckRestriction decodes the CheckRequest (the generated servicer does) and returns one
fixed CheckResponse, the bytes in --response (targets.py passes the real server's answer
to the same request, so both send the same message). BatchCheckRestriction likewise
decodes the request and answers the fixed BatchCheckResponse in --batch-response: what a
batch costs in gRPC and protobuf alone, before any check. Everything else is as `sanction
serve --workers N --pin-cpus` sets it up, through the same code where it is shared: N
forked processes on one port with SO_REUSEPORT (the parent holds the port), each pinned
with `pin_to_cpu`, a sync grpc server on a pool of Settings().grpc_threads threads with
`server_options(...)`. No store, checker, metrics, health or reflection: what is left is
gRPC, protobuf and the process model. It logs the lines tests/processes.py's
ServerProcess waits for ("workers on HOST:PORT", one "SERVING at data version" per worker).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "gen")]

from sanction_service.grpc_api.server import pin_to_cpu, server_options  # noqa: E402
from sanction_service.settings import Settings  # noqa: E402


def log(message: str) -> None:
    # One write(2) per line: the workers share stderr, and print's separate writes of the
    # text and the newline let two workers' lines run into one.
    os.write(2, (message + "\n").encode())


def worker(index: int, port: int, response: bytes, pin: bool, batch_response: bytes | None = None) -> None:
    import grpc
    from sanction.v1 import restriction_pb2 as pb
    from sanction.v1 import restriction_pb2_grpc

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if pin:
        pin_to_cpu(index)
    answer = pb.CheckResponse.FromString(response)
    batch_answer = pb.BatchCheckResponse.FromString(batch_response) if batch_response is not None else None

    class Echo(restriction_pb2_grpc.RestrictionServiceServicer):
        def CheckRestriction(self, request, context):
            return answer

        def BatchCheckRestriction(self, request, context):
            if batch_answer is None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, "start with --batch-response")
            return batch_answer

    settings = Settings()
    server = grpc.server(
        futures.ThreadPoolExecutor(max(1, settings.grpc_threads), thread_name_prefix="grpc"),
        options=server_options(settings, reuse_port=True),
    )
    restriction_pb2_grpc.add_RestrictionServiceServicer_to_server(Echo(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise SystemExit(f"worker {index} could not bind 127.0.0.1:{port}")
    server.start()
    log(f"worker {index} SERVING at data version 0 (echo)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0).wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--response", type=Path, required=True, help="a serialized CheckResponse to answer with")
    parser.add_argument(
        "--batch-response", type=Path, help="a serialized BatchCheckResponse to answer every BatchCheckRestriction with"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pin-cpus", action="store_true")
    args = parser.parse_args()
    response = args.response.read_bytes()
    batch_response = args.batch_response.read_bytes() if args.batch_response else None
    # The parent keeps the port for its workers (as serve_workers does), binding nothing else.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=worker, args=(i, port, response, args.pin_cpus, batch_response), name=f"echo-{i}")
        for i in range(args.workers)
    ]
    for p in processes:
        p.start()
    log(f"{args.workers} workers on 127.0.0.1:{port}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if any(not p.is_alive() for p in processes):
            break
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(10)
        if p.is_alive():
            p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
