"""End-to-end load over loopback against real `sanction serve` processes this script starts.

    BENCH_SIZE=200000 .venv/bin/python benchmarks/load.py            # full run, about 2 minutes on 2 cores
    .venv/bin/python benchmarks/load.py --size 20000 --quick         # smoke run, under a minute
    .venv/bin/python benchmarks/load.py --seconds 10 --skip redis,h2load

The dataset (data/bench-<size>/) is built on first use by benchmarks/dataset.py. Queries
are a deterministic mix of the probe file's documents, 99 % never listed (--miss-ratio),
each a FLIGHT purchase. Results: printed as a table and written to
benchmarks/results/load.json (or --out NAME), with the exact command, BENCH_SIZE, the
machine and a timestamp.

What is measured (each figure: IDs/s, requests/s, p50/p95/p99 latency, and the CPU the
server and the client burnt, in cores, to show which side is the bottleneck):

- unary CheckRestriction with 1, 8 and 32 calls in flight (threads over one channel),
  BatchCheckRestriction of 100 and of 1000, and StreamCheckRestriction (one stream, 32
  messages in flight). The Python driver sends pre-serialised requests and does not
  decode answers (one answer per server is decoded to check the DENY count), so it costs
  as little client CPU as Python allows.
- (a) prefilter on vs off (a second server with --no-prefilter), with a warm page cache
  (the matrix above) and a cold one: the server is stopped, data.mdb's pages are evicted
  with posix_fadvise(POSIX_FADV_DONTNEED), the server restarted, and a first pass of
  sequential unary checks (and, after another eviction, of batches of 100) is timed and
  then repeated warm. Whether eviction worked is shown by the file's resident share
  (mincore) before and after, and by the cold/warm timing difference.
- (b) 1 vs 2 server processes (`--workers 2`, SO_REUSEPORT): driven by 2 client processes
  (multiprocessing, spawn), each with 4 channels of its own (distinct TCP connections, so
  the kernel spreads them over the workers); the RestrictionService calls each worker
  started are read from the server's one /metrics (grpc_server_started_total{worker}).
- (c) Redis baseline: `redis-server` on a free loopback port without persistence, loaded
  by pipelined SET with every active person key of the store, i.e. the keyed hash
  identity.document_key(pepper, normalize(...)) in hex (the store's keys themselves, read
  from persons_active), then pipelined EXISTS in batches of 100 and 1000 over the same
  query mix, with the keys precomputed and with normalize + keyed hash done per query in
  the client (what the service does per ID), with redis-py's default reply parser (hiredis
  when installed, as `make bench` does; the result names it). Skipped with a message when
  redis-server or the redis package is missing (apt-get install -y redis-server; pip
  install redis). `make bench` skips it here: benchmarks/targets.py measures Redis with
  both parsers against the service, alternating (RedisServer is shared).
- (e) CPU pinning: the 1-worker server with all its threads on one core (sched_setaffinity
  per thread), and the 2-worker server with each worker on its own core. On this 2-core
  VM an unpinned single worker burns ~1.2 cores for half the unary throughput: gRPC's
  threads and the GIL bounce between cores.
- (d) h2load (Debian package nghttp2-client) as a non-Python client: framed unary
  CheckRestriction requests (one never-listed and one listed document), against the
  prefilter-on, prefilter-off and the 2-worker server. h2load checks only HTTP status, so
  the body is first verified with a Python call. Skipped with a message when absent.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import json
import mmap
import multiprocessing
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gen"), str(ROOT / "tests"), str(HERE)]

import grpc  # noqa: E402
from common import bench_size, header, log, percentiles, write_result  # noqa: E402
from dataset import Doc, ensure_dataset, mix, probe_documents  # noqa: E402
from processes import ServerProcess  # noqa: E402
from sanction.v1 import restriction_pb2 as pb  # noqa: E402
from sanction_service.clients.sanction_client import Passenger, Trip, check_request  # noqa: E402

SERVICE = "/sanction.v1.RestrictionService/"
POOL = 20_000  # distinct queries cycled through by the warm runs
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPAWN = multiprocessing.get_context("spawn")


# --------------------------------------------------------------------------- requests


def request_bytes(doc: Doc) -> bytes:
    return check_request(Passenger(doc.type, doc.number, doc.country), Trip("FLIGHT")).SerializeToString()


def batch_bytes(docs: list[Doc], size: int) -> list[bytes]:
    out = []
    for start in range(0, len(docs) - size + 1, size):
        msg = pb.BatchCheckRequest(checks=[check_request(Passenger(*d), Trip("FLIGHT")) for d in docs[start : start + size]])
        out.append(msg.SerializeToString())
    return out


def stream_bytes(docs: list[Doc]) -> list[bytes]:
    return [
        pb.StreamCheckRequest(request_id=str(i), check=check_request(Passenger(*d), Trip("FLIGHT"))).SerializeToString()
        for i, d in enumerate(docs)
    ]


def new_channel(target: str, own_connection: bool = False) -> grpc.Channel:
    # Channels in one process share connections (the global subchannel pool) unless told not to.
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    channel = grpc.insecure_channel(target, options)
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


def raw_method(channel: grpc.Channel, name: str, streaming: bool = False):
    # No serializers: bytes go out as they are and answers come back undecoded.
    return channel.stream_stream(SERVICE + name) if streaming else channel.unary_unary(SERVICE + name)


# --------------------------------------------------------------------------- CPU accounting


def _proc_table() -> tuple[dict[int, int], dict[int, float]]:
    """parent pid and user+system CPU seconds (all threads) of every process."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return parents, times


def process_tree(pid: int, parents: dict[int, int] | None = None) -> list[int]:
    """pid and its descendants (`serve --workers N` forks its workers), pid first."""
    parents = _proc_table()[0] if parents is None else parents
    tree, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        for child, parent in sorted(parents.items()):
            if parent == p and child not in tree:
                tree.append(child)
                frontier.append(child)
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """user+system CPU of pid and all its descendants."""
    parents, times = _proc_table()
    return sum(times.get(p, 0.0) for p in process_tree(pid, parents))


def pin(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of one process (threads made later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that just ended
            pass


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def other_cores(busy0: float, wall: float, *used: float) -> float:
    """Cores used by everything else on the machine (other people's work) during a run."""
    return round(max(0.0, (machine_busy_seconds() - busy0) / wall - sum(used)), 2)


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class CpuMeter:
    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def __enter__(self):
        self.busy, self.server, self.client = machine_busy_seconds(), tree_cpu_seconds(self.server_pid), own_cpu_seconds()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        server = (tree_cpu_seconds(self.server_pid) - self.server) / wall
        client = (own_cpu_seconds() - self.client) / wall
        self.result = {
            "server_cpu_cores": round(server, 2),
            "client_cpu_cores": round(client, 2),
            "other_cpu_cores": other_cores(self.busy, wall, server, client),
        }


# --------------------------------------------------------------------------- drivers


def summarise(kind: str, concurrency: int, ids_per_request: int, latencies: list[float], seconds: float, **extra) -> dict:
    n = len(latencies)
    return {
        "kind": kind,
        "concurrency": concurrency,
        "ids_per_request": ids_per_request,
        "requests": n,
        "ids": n * ids_per_request,
        "seconds": round(seconds, 3),
        "requests_per_second": round(n / seconds, 1) if seconds else 0.0,
        "ids_per_second": round(n * ids_per_request / seconds, 1) if seconds else 0.0,
        "latency": percentiles(latencies),
        **extra,
    }


def drive_calls(call, payloads: list[bytes], concurrency: int, warmup: float, seconds: float) -> tuple[list[float], float]:
    """`concurrency` threads calling call(payload) back to back. Latencies of calls started
    inside the measured window, and the window's real length (until the last of them ended)."""
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup, begin + warmup + seconds
    samples: list[list[float]] = [[] for _ in range(concurrency)]
    ends = [measure_from] * concurrency
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        mine, k = samples[i], i
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                call(payloads[k % len(payloads)])
                t1 = time.perf_counter()
                k += concurrency
                if t0 >= measure_from:
                    mine.append(t1 - t0)
                    ends[i] = t1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for part in samples for s in part], max(ends) - measure_from


def run_unary(target: str, payloads: list[bytes], concurrency: int, warmup: float, seconds: float, pid: int) -> dict:
    channel = new_channel(target)
    call = raw_method(channel, "CheckRestriction")
    try:
        with CpuMeter(pid) as cpu:
            lat, took = drive_calls(lambda p: call(p, timeout=30), payloads, concurrency, warmup, seconds)
    finally:
        channel.close()
    return summarise("unary", concurrency, 1, lat, took, **cpu.result)


def run_batch(
    target: str, batches: list[bytes], size: int, warmup: float, seconds: float, pid: int, concurrency: int = 1
) -> dict:
    channel = new_channel(target)
    call = raw_method(channel, "BatchCheckRestriction")
    try:
        with CpuMeter(pid) as cpu:
            lat, took = drive_calls(lambda p: call(p, timeout=60), batches, concurrency, warmup, seconds)
    finally:
        channel.close()
    return summarise(f"batch{size}", concurrency, size, lat, took, **cpu.result)


def run_stream(target: str, messages: list[bytes], window: int, warmup: float, seconds: float, pid: int) -> dict:
    """One bidirectional stream, `window` messages in flight. The server answers a stream in
    order, so answers are matched to sends first-in first-out."""
    channel = new_channel(target)
    call = raw_method(channel, "StreamCheckRestriction", streaming=True)
    slots = threading.Semaphore(window)
    sent: collections.deque[float] = collections.deque()
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup, begin + warmup + seconds

    def outgoing():
        k = 0
        while True:
            slots.acquire()
            now = time.perf_counter()
            if now >= stop_at:
                return
            sent.append(now)
            yield messages[k % len(messages)]
            k += 1

    lat: list[float] = []
    end = measure_from
    try:
        with CpuMeter(pid) as cpu:
            for _ in call(outgoing(), timeout=seconds + warmup + 60):
                t1 = time.perf_counter()
                t0 = sent.popleft()
                slots.release()
                if t0 >= measure_from:
                    lat.append(t1 - t0)
                    end = t1
    finally:
        channel.close()
    return summarise("stream", window, 1, lat, end - measure_from, **cpu.result)


def sequential_pass(target: str, method: str, payloads: list[bytes]) -> list[float]:
    """Each payload once, one after the other (for the cold/warm comparison)."""
    channel = new_channel(target)
    call = raw_method(channel, method)
    out = []
    try:
        for p in payloads:
            t0 = time.perf_counter()
            call(p, timeout=60)
            out.append(time.perf_counter() - t0)
    finally:
        channel.close()
    return out


# --------------------------------------------------------------------------- multi-process client


def client_process(
    target: str,
    method: str,
    payloads: list[bytes],
    concurrency: int,
    channels: int,
    warmup: float,
    seconds: float,
    barrier,
    results,
) -> None:
    """A spawned client: `channels` channels with their own TCP connections, threads spread over them."""
    try:
        chans = [new_channel(target, own_connection=True) for _ in range(channels)]
        calls = [raw_method(c, method) for c in chans]
        counter = iter(range(1 << 62))
        lock = threading.Lock()

        def call(p: bytes):
            with lock:
                i = next(counter)
            return calls[i % len(calls)](p, timeout=60)

        barrier.wait(timeout=120)
        cpu0 = own_cpu_seconds()
        lat, took = drive_calls(call, payloads, concurrency, warmup, seconds)
        cpu = own_cpu_seconds() - cpu0
        for c in chans:
            c.close()
        results.put({"latencies": lat, "seconds": took, "cpu_seconds": cpu, "wall": warmup + seconds})
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        results.put({"error": repr(exc)})


def run_multiprocess(
    target: str,
    kind: str,
    payloads: list[bytes],
    ids_per_request: int,
    procs: int,
    concurrency: int,
    channels: int,
    warmup: float,
    seconds: float,
    pid: int,
) -> dict:
    method = "CheckRestriction" if kind == "unary" else "BatchCheckRestriction"
    barrier, results = SPAWN.Barrier(procs + 1), SPAWN.Queue()
    children = [
        SPAWN.Process(
            target=client_process,
            daemon=True,
            args=(target, method, payloads, concurrency, channels, warmup, seconds, barrier, results),
        )
        for _ in range(procs)
    ]
    for c in children:
        c.start()
    barrier.wait(timeout=120)
    busy0, server0, began = machine_busy_seconds(), tree_cpu_seconds(pid), time.perf_counter()
    parts = [results.get(timeout=warmup + seconds + 120) for _ in children]
    wall = time.perf_counter() - began
    server_cpu = tree_cpu_seconds(pid) - server0
    busy = machine_busy_seconds() - busy0
    for c in children:
        c.join(30)
    failed = [p["error"] for p in parts if "error" in p]
    if failed:
        raise RuntimeError(f"client process failed: {failed[0]}")
    lat = [s for p in parts for s in p["latencies"]]
    # Each process measured its own window; the aggregate rate is the sum of their rates.
    rps = sum(len(p["latencies"]) / p["seconds"] for p in parts)
    client_cpu = sum(p["cpu_seconds"] for p in parts)
    out = summarise(
        kind,
        procs * concurrency,
        ids_per_request,
        lat,
        seconds,
        server_cpu_cores=round(server_cpu / wall, 2),
        client_cpu_cores=round(client_cpu / wall, 2),
        other_cpu_cores=round(max(0.0, (busy - server_cpu - client_cpu) / wall), 2),
        client_processes=procs,
        connections=procs * channels,
    )
    out["requests_per_second"] = round(rps, 1)
    out["ids_per_second"] = round(rps * ids_per_request, 1)
    return out


# --------------------------------------------------------------------------- page cache


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    return libc


def resident_share(path: Path) -> float | None:
    """Share of the file's pages in the page cache (mincore on a mapping that touches nothing)."""
    try:
        libc = _libc()
        size = path.stat().st_size
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
                vec = ctypes.create_string_buffer(pages)
                if libc.mincore(addr, size, vec) != 0:
                    return None
                return round(sum(b & 1 for b in vec.raw) / pages, 4)
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return None


def evict(path: Path) -> dict:
    """Drop the file's clean pages from the page cache. Pages mapped by a live process stay,
    so the server must be stopped first (this script never maps the store itself here)."""
    before = resident_share(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    after = resident_share(path)
    worked = None if after is None or before is None else after <= min(before, 0.01)
    return {"resident_before": before, "resident_after": after, "eviction_worked": worked}


# --------------------------------------------------------------------------- servers


def free_port(pair: bool = False) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


class Server:
    """A `sanction serve` with metrics on (one port, also for workers) to count what each answered."""

    def __init__(self, d: Path, *extra: str, workers: int = 1):
        self.metrics_port = free_port()
        self.workers = workers
        # Not --log-level WARNING: ServerProcess waits for the INFO line "SERVING at data version".
        args = ["--data-dir", str(d), *extra, "--metrics-port", str(self.metrics_port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.proc = ServerProcess(*args)
        began = time.perf_counter()
        try:
            self.target = self.proc.wait_serving(timeout=900, workers=workers)
        except BaseException:
            self.proc.stop()
            raise
        self.start_seconds = round(time.perf_counter() - began, 2)
        self.pid = self.proc.proc.pid

    def metrics(self) -> dict:
        """The server's check and prefilter counts, and the RestrictionService calls each worker started."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        except OSError:
            return {}
        found: dict = {"rpcs_per_worker": [0.0] * self.workers}
        for line in text.splitlines():
            m = re.match(r'^(sanction_check_seconds_count|sanction_prefilter_total\{result="(\w+)"\})\s+(\S+)', line)
            if m:
                found["checks" if m.group(2) is None else "prefilter_" + m.group(2)] = float(m.group(3))
            m = re.match(
                r'^grpc_server_started_total\{.*grpc_service="sanction.v1.RestrictionService".*'
                r'worker="(\d+)".*\}\s+(\S+)',
                line,
            )
            if m and int(m.group(1)) < self.workers:
                found["rpcs_per_worker"][int(m.group(1))] += float(m.group(2))
        return found

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_server(d: Path, *extra: str, workers: int = 1) -> Server:
    return Server(d, *extra, workers=workers)


def decode_check(target: str, batch: bytes, expected_listed: int) -> dict:
    channel = new_channel(target)
    try:
        raw = raw_method(channel, "BatchCheckRestriction")(batch, timeout=60)
    finally:
        channel.close()
    response = pb.BatchCheckResponse.FromString(raw)
    results = [i.result for i in response.items if i.HasField("result")]
    return {
        "items": len(response.items),
        "errors": len(response.items) - len(results),
        "deny": sum(r.decision == pb.DENY for r in results),
        "restricted": sum(r.restricted for r in results),
        "listed_in_batch": expected_listed,
    }


# --------------------------------------------------------------------------- h2load


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def run_h2load(target: str, body: bytes, clients: int, streams: int, warmup: float, seconds: float, pid: int) -> dict:
    """h2load -D seconds against CheckRestriction with one framed request body."""
    with tempfile.TemporaryDirectory() as tmp:
        data, log_file = Path(tmp) / "request.bin", Path(tmp) / "requests.log"
        data.write_bytes(grpc_frame(body))
        cmd = [
            "h2load",
            "-D",
            f"{round(seconds * 1000)}ms",
            "--warm-up-time",
            f"{round(max(warmup, 0.1) * 1000)}ms",
            "-c",
            str(clients),
            "-m",
            str(streams),
            "-t",
            "1",
            f"--data={data}",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log_file}",
            f"http://{target}{SERVICE}CheckRestriction",
        ]
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, server0, began = machine_busy_seconds(), tree_cpu_seconds(pid), time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 120)
        wall = time.perf_counter() - began
        server_cpu = (tree_cpu_seconds(pid) - server0) / wall
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime) / wall
        other = other_cores(busy0, wall, server_cpu, client_cpu)
        out = done.stdout
        latencies = []
        if log_file.exists():
            for line in log_file.read_text().splitlines():
                cols = line.split("\t")
                if len(cols) >= 3 and cols[1].startswith("2"):
                    latencies.append(int(cols[2]) / 1e6)
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    mean = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if done.returncode != 0 or not finished:
        return {"error": f"h2load exited {done.returncode}", "output": (out + done.stderr)[-2000:], "command": cmd}
    rps = float(finished.group(3))
    result = {
        "kind": "h2load-unary",
        "clients": clients,
        "streams_per_client": streams,
        "in_flight": clients * streams,
        "requests_per_second": rps,
        "ids_per_second": rps,
        "latency": percentiles(latencies),
        "h2load_time_for_request": {"min": mean.group(1), "max": mean.group(2), "mean": mean.group(3)} if mean else None,
        "server_cpu_cores": round(server_cpu, 2),
        "client_cpu_cores": round(client_cpu, 2),
        "other_cpu_cores": other,
        "command": " ".join(cmd[:-1] + [cmd[-1]]),
    }
    if counts:
        result.update(succeeded=int(counts.group(4)), failed=int(counts.group(5)), errored=int(counts.group(6)))
    return result


def verify_unary_body(target: str, body: bytes) -> str:
    channel = new_channel(target)
    try:
        answer = pb.CheckResponse.FromString(raw_method(channel, "CheckRestriction")(body, timeout=10))
    finally:
        channel.close()
    return pb.Decision.Name(answer.decision)


# --------------------------------------------------------------------------- redis


def redis_missing() -> str | None:
    missing = []
    if not shutil.which("redis-server"):
        missing.append("redis-server is not installed (apt-get install -y redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing.append("the redis Python package is not installed (.venv/bin/pip install redis)")
    return "; ".join(missing) or None


def active_keys_hex(d: Path) -> tuple[list[str], bytes]:
    """Every person key with a listing in force (what the prefilter holds), as hex; and the pepper."""
    from sanction_service.grpc_api.server import open_store
    from sanction_service.settings import Settings

    store, pepper = open_store(Settings(data_dir=str(d)))
    try:
        with store.read() as view:
            keys = [k.hex() for k in view.active_keys()]
    finally:
        store.close()
    return keys, pepper


PARSERS = ("python", "hiredis")


def hiredis_available() -> bool:
    """Whether redis-py can parse with hiredis (installed by `make bench`; redis-py uses it by default when importable)."""
    try:
        import redis.utils
    except ImportError:
        return False
    return bool(redis.utils.HIREDIS_AVAILABLE)


class RedisServer:
    """`redis-server` on a free loopback port without persistence, loaded by pipelined SET
    with every active person key of the store (the keyed hashes the service looks up, in
    hex). `client(parser)` connects with redis-py's pure-Python reply parser or hiredis's,
    chosen explicitly (redis-py's `parser_class` connection option), so one process
    measures both."""

    def __init__(self, d: Path):
        import redis

        self.keys, self.pepper = active_keys_hex(d)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.info: dict = {
            "server": f"redis-server 127.0.0.1:{self.port}, no persistence",
            "key_form": "hex of identity.document_key(pepper, normalize(type, number, country)) (BLAKE2b-128 keyed)",
            "keys_loaded": len(self.keys),
            "redis_py": redis.__version__,
            "hiredis_available": hiredis_available(),
        }
        try:
            client = self.client()
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            self.info["redis_version"] = client.info("server").get("redis_version")
            began = time.perf_counter()
            for start in range(0, len(self.keys), 10_000):
                pipe = client.pipeline(transaction=False)
                for k in self.keys[start : start + 10_000]:
                    pipe.set(k, b"1")
                pipe.execute()
            took = time.perf_counter() - began
            self.info["load_seconds"] = round(took, 2)
            self.info["load_keys_per_second"] = round(len(self.keys) / took) if took else None
            self.info["used_memory_bytes"] = client.info("memory").get("used_memory")
        except BaseException:
            self.stop()
            raise

    def client(self, parser: str = "python"):
        import redis
        from redis.connection import _HiredisParser, _RESP2Parser

        if parser not in PARSERS:
            raise ValueError(parser)
        pool = redis.ConnectionPool(
            host="127.0.0.1", port=self.port, parser_class=_HiredisParser if parser == "hiredis" else _RESP2Parser
        )
        return redis.Redis(connection_pool=pool)

    def key_of(self, doc: Doc) -> str:
        from sanction_service.identity import DocumentType, document_key, normalize

        return document_key(self.pepper, normalize(DocumentType(doc.type), doc.number, doc.country)).hex()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def exists_pipeline(client):
    """A function sending one pipelined EXISTS per key (no MULTI) and returning the answers."""

    def exists_batch(batch_keys: list[str]) -> list:
        pipe = client.pipeline(transaction=False)
        for k in batch_keys:
            pipe.exists(k)
        return pipe.execute()

    return exists_batch


def run_redis(d: Path, docs: list[Doc], warmup: float, seconds: float) -> dict:
    """Pipelined EXISTS in batches of 100 and 1000 over `docs`, keys precomputed or made
    per query in the client, with redis-py's default parser (hiredis when importable)."""
    with RedisServer(d) as server:
        out = dict(server.info)
        parser = "hiredis" if hiredis_available() else "python"
        out["parser"] = parser
        exists_batch = exists_pipeline(server.client(parser))
        precomputed = [server.key_of(doc) for doc in docs]
        runs = {}
        for size in (100, 1000):
            key_batches = [precomputed[i : i + size] for i in range(0, len(precomputed) - size + 1, size)]
            doc_batches = [docs[i : i + size] for i in range(0, len(docs) - size + 1, size)]
            hits = sum(sum(exists_batch(b)) for b in key_batches[:5]) / (5 * size)
            with CpuMeter(server.pid) as cpu:
                lat, t = drive_calls(exists_batch, key_batches, 1, warmup, seconds)
            runs[f"exists_pipeline{size}_keys_precomputed"] = summarise(
                f"redis-exists{size}", 1, size, lat, t, hit_share=round(hits, 4), **cpu.result
            )
            with CpuMeter(server.pid) as cpu:
                lat, t = drive_calls(lambda b: exists_batch([server.key_of(x) for x in b]), doc_batches, 1, warmup, seconds)
            runs[f"exists_pipeline{size}_with_normalize_and_key"] = summarise(
                f"redis-exists{size}+key", 1, size, lat, t, **cpu.result
            )
        out["runs"] = runs
    return out


# --------------------------------------------------------------------------- the run


class Plan:
    def __init__(self, args):
        self.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
        self.warmup = 0.2 if args.quick else 0.5
        self.cold_unary = 300 if args.quick else 2000
        self.cold_batches = 20 if args.quick else 100
        self.stream_window = args.stream_window
        self.skip = set(filter(None, (args.skip or "").split(",")))


def line(name: str, r: dict) -> str:
    if "error" in r:
        return f"{name:44s} ERROR {r['error']}"
    lat = r.get("latency", {})
    return (
        f"{name:44s} {r.get('ids_per_second', 0):>10,.0f} IDs/s {r.get('requests_per_second', 0):>9,.0f} req/s"
        f"  p50 {lat.get('p50_ms', 0):7.2f}  p95 {lat.get('p95_ms', 0):7.2f}  p99 {lat.get('p99_ms', 0):7.2f} ms"
        f"  cpu srv {r.get('server_cpu_cores', 0):.2f} cli {r.get('client_cpu_cores', 0):.2f}"
        f" other {r.get('other_cpu_cores', 0):.2f}"
    )


def warm_matrix(
    server: Server,
    plan: Plan,
    unary: list[bytes],
    b100: list[bytes],
    b1000: list[bytes],
    stream: list[bytes],
    table: list[str],
    label: str,
) -> dict:
    out = {}
    w, s, pid, target = plan.warmup, plan.seconds, server.pid, server.target
    for c in (1, 8, 32):
        out[f"unary_c{c}"] = run_unary(target, unary, c, w, s, pid)
    out["batch100"] = run_batch(target, b100, 100, w, s, pid)
    out["batch1000"] = run_batch(target, b1000, 1000, w, s, pid)
    out["stream"] = run_stream(target, stream, plan.stream_window, w, s, pid)
    for name, r in out.items():
        table.append(line(f"{label} {name}", r))
        log(table[-1])
    return out


def cold_vs_warm(d: Path, extra: tuple[str, ...], method: str, payloads: list[bytes], ids_per_request: int) -> dict:
    """Stop nothing (the caller has no server running), evict, start, time a first pass, repeat it warm."""
    mdb = d / "data.mdb"
    eviction = evict(mdb)
    server = start_server(d, *extra)
    try:
        after_start = resident_share(mdb)
        cold = sequential_pass(server.target, method, payloads)
        after_cold = resident_share(mdb)
        warm = sequential_pass(server.target, method, payloads)
    finally:
        server.stop()
    cold_s, warm_s = sum(cold), sum(warm)
    return {
        "method": method,
        "requests": len(payloads),
        "ids": len(payloads) * ids_per_request,
        "eviction": {**eviction, "resident_after_server_start": after_start, "resident_after_cold_pass": after_cold},
        "server_start_seconds": server.start_seconds,
        "cold": {
            "seconds": round(cold_s, 3),
            "ids_per_second": round(len(payloads) * ids_per_request / cold_s, 1),
            "first_request_ms": round(cold[0] * 1000, 3),
            "latency": percentiles(cold),
        },
        "warm": {
            "seconds": round(warm_s, 3),
            "ids_per_second": round(len(payloads) * ids_per_request / warm_s, 1),
            "first_request_ms": round(warm[0] * 1000, 3),
            "latency": percentiles(warm),
        },
        "cold_over_warm": round(cold_s / warm_s, 2),
    }


def pinned_single(server: Server, plan: Plan, unary: list[bytes], miss_body: bytes, table: list[str]) -> dict:
    """The 1-worker server with all its threads on one core, then unpinned again."""
    cpus = sorted(os.sched_getaffinity(0))
    out: dict = {"cpu": cpus[0]}
    pin(server.pid, {cpus[0]})
    try:
        for c in (1, 8, 32):
            out[f"unary_c{c}"] = run_unary(server.target, unary, c, plan.warmup, plan.seconds, server.pid)
        if "h2load" not in plan.skip and shutil.which("h2load"):
            out["h2load_never_listed"] = run_h2load(server.target, miss_body, 8, 4, plan.warmup, plan.seconds, server.pid)
    finally:
        pin(server.pid, set(cpus))
    for name, r in out.items():
        if isinstance(r, dict):
            table.append(line(f"pinned_1core {name}", r))
            log(table[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="End-to-end load against real `sanction serve` processes.")
    parser.add_argument("--size", type=int, default=None, help="listings (default: BENCH_SIZE or 200000)")
    parser.add_argument("--quick", action="store_true", help="1 s per figure and short cold passes")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per figure (3; 1 with --quick)")
    parser.add_argument("--miss-ratio", type=float, default=0.99)
    parser.add_argument("--stream-window", type=int, default=32, help="stream messages in flight")
    parser.add_argument("--skip", default="", help="comma-separated: cold,off,workers,pin,redis,h2load")
    parser.add_argument("--out", default="load", help="result name: benchmarks/results/<name>.json")
    args = parser.parse_args()
    size = bench_size() if args.size is None else args.size
    plan = Plan(args)
    started = time.perf_counter()

    d = ensure_dataset(size)
    probes = probe_documents(d)
    pool = mix(probes, POOL, args.miss_ratio, seed=2)
    cold_docs = mix(probes, max(plan.cold_unary, plan.cold_batches * 100), args.miss_ratio, seed=3)
    unary = [request_bytes(doc) for doc in pool]
    b100, b1000 = batch_bytes(pool, 100), batch_bytes(pool, 1000)
    stream = stream_bytes(pool)
    listed_set = set(probes.listed)
    first_batch_listed = sum(doc in listed_set for doc in pool[:1000])
    miss_body, hit_body = request_bytes(probes.never[0]), request_bytes(probes.listed[0])

    result: dict = {
        **header(size),
        "data_dir": str(d),
        "dataset": json.loads((d / "bench.json").read_text()),
        "settings": {
            "seconds": plan.seconds,
            "warmup": plan.warmup,
            "miss_ratio": args.miss_ratio,
            "query_pool": POOL,
            "trip": "FLIGHT",
            "stream_window": plan.stream_window,
            "client": "grpcio raw unary_unary/stream_stream, pre-serialised requests, answers not decoded",
            "grpc_version": grpc.__version__,
            "server_threads": "default (16)",
        },
    }
    table: list[str] = []
    log(f"[load] {size:,} listings in {d}; {plan.seconds:g} s per figure")

    # (a) prefilter on / off, cold then warm.
    for label, extra in (("prefilter_on", ()), ("prefilter_off", ("--no-prefilter",))):
        if label == "prefilter_off" and "off" in plan.skip:
            continue
        part: dict = {}
        if "cold" not in plan.skip:
            part["cold_unary_sequential"] = cold_vs_warm(
                d, extra, "CheckRestriction", [request_bytes(x) for x in cold_docs[: plan.cold_unary]], 1
            )
            part["cold_batch100_sequential"] = cold_vs_warm(
                d, extra, "BatchCheckRestriction", batch_bytes(cold_docs, 100)[: plan.cold_batches], 100
            )
            for k in ("cold_unary_sequential", "cold_batch100_sequential"):
                c = part[k]
                table.append(
                    f"{label} {k:34s} cold {c['cold']['ids_per_second']:>9,.0f} IDs/s "
                    f"(first {c['cold']['first_request_ms']:.1f} ms, p99 {c['cold']['latency']['p99_ms']:.2f} ms)"
                    f"  warm {c['warm']['ids_per_second']:>9,.0f} IDs/s  cold/warm {c['cold_over_warm']}x"
                    f"  evicted {c['eviction']['eviction_worked']}: resident share "
                    f"{c['eviction']['resident_before']}->{c['eviction']['resident_after']}"
                    f"->{c['eviction']['resident_after_cold_pass']} after the pass"
                )
                log(table[-1])
        with start_server(d, *extra) as server:
            part["server_start_seconds"] = server.start_seconds
            part["answer_check"] = decode_check(server.target, b1000[0], first_batch_listed)
            part["warm"] = warm_matrix(server, plan, unary, b100, b1000, stream, table, label)
            if "h2load" not in plan.skip and shutil.which("h2load"):
                part["h2load"] = {}
                bodies = [("never_listed", miss_body)] + ([("listed", hit_body)] if label == "prefilter_on" else [])
                for which, body in bodies:
                    decision = verify_unary_body(server.target, body)
                    r = run_h2load(server.target, body, 8, 4, plan.warmup, plan.seconds, server.pid)
                    r["decision"] = decision
                    part["h2load"][which] = r
                    table.append(line(f"{label} h2load c8x4 {which}", r))
                    log(table[-1])
            part["metrics"] = server.metrics()
            if "workers" not in plan.skip and label == "prefilter_on":
                result["workers"] = {"1": workers_runs(server, plan, unary, b100, table, "workers=1")}
            if "pin" not in plan.skip and label == "prefilter_on" and len(os.sched_getaffinity(0)) > 1:
                result["pinned_1core"] = pinned_single(server, plan, unary, miss_body, table)
        result[label] = part

    # (b) 2 workers (the 1-worker figures were taken on the prefilter-on server above).
    if "workers" in result:
        with start_server(d, workers=2) as server:
            result["workers"]["2"] = workers_runs(server, plan, unary, b100, table, "workers=2")
            if "h2load" not in plan.skip and shutil.which("h2load"):
                r = run_h2load(server.target, miss_body, 8, 4, plan.warmup, plan.seconds, server.pid)
                result["workers"]["2"]["h2load_never_listed"] = r
                table.append(line("workers=2 h2load c8x4 never_listed", r))
                log(table[-1])
            result["workers"]["2"]["metrics"] = server.metrics()
            result["workers"]["2"]["server_start_seconds"] = server.start_seconds
            cpus = sorted(os.sched_getaffinity(0))
            if "pin" not in plan.skip and len(cpus) > 1:
                worker_pids = process_tree(server.pid)[1:]
                for i, wpid in enumerate(worker_pids):
                    pin(wpid, {cpus[i % len(cpus)]})
                pinned = workers_runs(server, plan, unary, b100, table, "workers=2 pinned")
                if "h2load" not in plan.skip and shutil.which("h2load"):
                    r = run_h2load(server.target, miss_body, 8, 4, plan.warmup, plan.seconds, server.pid)
                    pinned["h2load_never_listed"] = r
                    table.append(line("workers=2 pinned h2load c8x4 never_listed", r))
                    log(table[-1])
                pinned["worker_cpus"] = {wpid: cpus[i % len(cpus)] for i, wpid in enumerate(worker_pids)}
                result["workers"]["2_pinned"] = pinned

    # (c) Redis baseline.
    if "redis" not in plan.skip:
        missing = redis_missing()
        if missing:
            msg = f"Redis baseline skipped: {missing}"
            print(msg)
            result["redis"] = {"skipped": msg}
        else:
            result["redis"] = run_redis(d, pool, plan.warmup, plan.seconds)
            table.append(
                f"redis load: {result['redis']['keys_loaded']:,} keys by pipelined SET in "
                f"{result['redis']['load_seconds']} s ({result['redis']['load_keys_per_second']:,} keys/s)"
            )
            for name, r in result["redis"]["runs"].items():
                table.append(line(f"redis {name}", r))
            log("\n".join(table[-5:]))
    if "h2load" not in plan.skip and not shutil.which("h2load"):
        msg = "h2load runs skipped: h2load is not installed (apt-get install -y nghttp2-client)"
        print(msg)
        result["h2load"] = {"skipped": msg}

    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["machine_load_average_end"] = os.getloadavg()
    result["table"] = table
    path = write_result(args.out, result)
    print(
        f"\nBENCH_SIZE={size:,}  ({plan.seconds:g} s per figure, {args.miss_ratio:.0%} misses, FLIGHT)  "
        f"IDs/s, requests/s, latency per request, "
        f"CPU cores used by the server, the client and everything else on the machine"
    )
    print("\n".join(table))
    print(f"\ntotal {result['total_seconds']:.0f} s; wrote {path}")
    return 0


def workers_runs(server: Server, plan: Plan, unary: list[bytes], b100: list[bytes], table: list[str], label: str) -> dict:
    before = server.metrics()
    out = {
        "unary_2procs_c16": run_multiprocess(server.target, "unary", unary, 1, 2, 16, 4, plan.warmup, plan.seconds, server.pid),
        "batch100_2procs_c2": run_multiprocess(
            server.target, "batch100", b100, 100, 2, 2, 4, plan.warmup, plan.seconds, server.pid
        ),
    }
    after = server.metrics()
    out["rpcs_per_worker"] = [round(a - b) for a, b in zip(after.get("rpcs_per_worker", []), before.get("rpcs_per_worker", []))]
    for name in ("unary_2procs_c16", "batch100_2procs_c2"):
        table.append(line(f"{label} {name}", out[name]))
        log(table[-1])
    table.append(f"{label} RestrictionService calls started per worker: {out['rpcs_per_worker']}")
    log(table[-1])
    return out


if __name__ == "__main__":
    sys.exit(main())
