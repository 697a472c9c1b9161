"""Assembles and runs the gRPC server: servicers, standard health and reflection, metrics.

Start-up order is fail-closed: the store is opened (and its pepper verified) before the
port is bound, so a missing, corrupt or foreign store never serves at all; health stays
NOT_SERVING until the prefilter covers the store. For a replica (`--follow-lag-max N`),
health also follows the follower: NOT_SERVING while it is more than N events behind the
stream or silent (replication/status.py).

Server model: grpc's sync server (a call runs on a pool thread), with separate pools so
no kind of call can take the threads another needs:
  - checks, admin reads, reflection: the main pool (`--threads`);
  - StreamCheckRestriction: a pool of `max_streams` threads plus a few to refuse more
    (restriction.py: bound, idle limit, UNAVAILABLE at shutdown);
  - ApplyEvents and GetStats, which may wait for LMDB's write lock: a pool of their own;
  - health Check and Watch: two threads of their own, so probes answer whatever else runs.
A method is put on a pool through grpc's per-handler `experimental_thread_pool`. grpc's
`maximum_concurrent_rpcs` is not used: one bound over every call, health included, would
refuse health probes during a burst of checks. grpc.aio was measured as the alternative
(idle streams cost no thread there) but costs ~80 us more CPU per unary check, 28 % fewer
unary checks per second pinned; the check is what this service is for (BENCHMARKS.md,
benchmarks/server_model.py).

Port: one process binds exclusively (grpc.so_reuseport=0: gRPC's default of 1 let a second
server with another store start on the same port and answer a share of the checks). With
--workers the parent holds the port with SO_REUSEPORT for its workers only, after making
sure nobody else has it (see `_reserve_for_workers`). Either way a second instance exits
with EXIT_IN_USE and one line saying why.

Shutdown (SIGTERM/SIGINT): health NOT_SERVING, keep serving `drain_seconds` so load
balancers move away, then stop accepting calls, end open streams with UNAVAILABLE (a
client opens a new one, elsewhere), give in-flight calls `shutdown_grace_seconds`, persist
counters and the prefilter, exit 0. A second signal skips the rest of the drain delay.
SIGHUP re-reads the tokens file (caller.py names the caller, checks tokens and writes the
audit log); with --workers the parent passes it on to each worker.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sanction.v1 import admin_pb2, admin_pb2_grpc, restriction_pb2

from .. import logs, metrics
from ..checker import Checker
from ..ledger import Ledger
from ..opening import open_store
from ..settings import MAX_MESSAGE_BYTES, PREFILTER_FILE, Settings
from ..signals import Interrupted, SignalFlag, StopSignals
from ..store import Store
from .admin import ListAdminServicer
from .caller import CallerInterceptor, caller_interceptor
from .restriction import RestrictionServicer
from .restriction import register as register_restriction
from .rpc_metrics import MetricsInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    restriction_pb2.DESCRIPTOR.services_by_name["RestrictionService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["ListAdminService"].full_name,
)
# Exit code of `sanction serve` when the port (or, with --workers, the data dir) is taken.
EXIT_IN_USE = 3
SERVE_LOCK_FILE = "serve.lock"
# Threads beyond max_streams on the stream pool: they only refuse streams, which is quick.
STREAM_SPARE_THREADS = 4
WRITE_THREADS = 2
HEALTH_THREADS = 2


class AddressInUse(Exception):
    """Another process has the port, or another `serve --workers` the data dir."""


def make_checker(settings: Settings, store: Store, pepper: bytes) -> Checker:
    return Checker(
        store,
        pepper,
        prefilter_path=Path(settings.data_dir) / PREFILTER_FILE,
        error_rate=settings.prefilter_error_rate,
        use_prefilter=settings.prefilter_enabled,
        min_capacity=settings.prefilter_min_capacity,
    )


@dataclass
class Service:
    """One server process: store, checker, gRPC server and health."""

    settings: Settings
    store: Store
    checker: Checker
    server: grpc.Server
    health: health.HealthServicer
    restriction: RestrictionServicer
    pools: list[futures.ThreadPoolExecutor]
    port: int
    # For a replica: (serving?, why) from the follower's status; None: no follower.
    follower_gate: Callable[[], tuple[bool, str]] | None = None
    worker: str = "0"  # the `worker` label of this process's metrics
    # Names callers, checks tokens (re-read on SIGHUP), writes the audit log (caller.py).
    gate: CallerInterceptor | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.server.start()

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, status)
        metrics.SERVING.labels(self.worker).set(1 if serving else 0)

    def warm_up(self) -> str:
        how = self.checker.warm_up()
        self.set_serving(self.follower_gate()[0] if self.follower_gate else True)
        return how

    def watch_follower(self, every: float = 0.5) -> None:
        """Keep health in step with the follower (after warm_up); logs each change."""
        gate = self.follower_gate
        if gate is None:
            return

        last = None

        def evaluate() -> None:
            nonlocal last
            try:
                serving, why = gate()
            except Exception as exc:  # an unreadable store or status: not serving
                serving, why = False, f"cannot read the follower's state: {exc}"
            kind = (serving, re.sub(r"[\d.]+", "N", why))  # a new reason, not every new lag figure
            if kind != last:
                log.info("health %s: %s", "SERVING" if serving else "NOT_SERVING", why)
                last = kind
            self.set_serving(serving)

        def loop() -> None:
            while not self._stopping.wait(every):
                evaluate()

        evaluate()
        threading.Thread(target=loop, name="follower-health", daemon=True).start()

    def flush_counters_periodically(self) -> None:
        def loop() -> None:
            while not self._stopping.wait(self.settings.counter_flush_seconds):
                try:
                    self.checker.refusals.flush(self.store)
                except Exception:  # keep counting; the next flush retries
                    log.exception("could not persist refused-check counters")

        threading.Thread(target=loop, name="counter-flush", daemon=True).start()

    def drain_and_close(self, hurry: SignalFlag | threading.Event | None = None) -> None:
        """Health NOT_SERVING, keep serving for the drain delay (cut short by `hurry`), then close."""
        self.health.enter_graceful_shutdown()
        metrics.SERVING.labels(self.worker).set(0)
        log.info("health NOT_SERVING; serving %g s more while load balancers move away", self.settings.drain_seconds)
        (hurry or threading.Event()).wait(self.settings.drain_seconds)
        self.close(self.settings.shutdown_grace_seconds)

    def close(self, grace: float = 0.0) -> None:
        """Stop the server (in-flight calls get `grace` seconds), then persist and release everything."""
        self._stopping.set()
        self.stop_server(grace)
        if not self.checker.refusals.flush(self.store, wait=grace):
            log.warning("could not persist refused-check counts %s: a loader held the store", self.checker.refusals.pending())
        try:
            self.checker.save_prefilter()
        except Exception:
            log.exception("could not persist the prefilter (it will be rebuilt at next start)")
        self.store.close()

    def stop_server(self, grace: float = 0.0) -> None:
        """Stop accepting calls, end open streams with UNAVAILABLE, give in-flight calls
        `grace` seconds, and wait for any write still running (the store stays open)."""
        started = time.monotonic()
        self.restriction.close_streams()
        self.server.stop(grace).wait()
        # A write (ApplyEvents) cut off by the grace period still runs in its thread and
        # must finish before anyone closes the store.
        for pool in self.pools:
            pool.shutdown(wait=True)
        log.info("server stopped in %.1f s", time.monotonic() - started)


def run_on(pool: futures.ThreadPoolExecutor, servicer, *names: str) -> None:
    """Have grpc run these methods of `servicer` on `pool` instead of the main pool: grpc
    reads a handler function's `experimental_thread_pool`, and an instance attribute wins
    over the class's method when the generated add_*_to_server looks the handler up."""
    for name in names:
        method = getattr(servicer, name)

        def handler(*args, method=method, **kwargs):
            return method(*args, **kwargs)

        # Attributes grpc looks for on a handler function (set as such, not declared anywhere).
        setattr(handler, "experimental_thread_pool", pool)  # noqa: B010
        # Non-blocking handlers (health's Watch) get a send_response_callback and hold no thread.
        setattr(handler, "experimental_non_blocking", getattr(method, "experimental_non_blocking", False))  # noqa: B010
        setattr(servicer, name, handler)


def server_options(settings: Settings, *, reuse_port: bool) -> list[tuple[str, int]]:
    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_time_ms", ms(settings.keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_seconds)),
        # On a server these two only govern the client's pings: how often, and whether also
        # with no call open. gRPC's defaults (5 min, no) answer a client that keeps an idle
        # connection warm with GOAWAY too_many_pings after its third ping.
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.client_ping_min_seconds)),
        ("grpc.keepalive_permit_without_calls", int(settings.client_ping_without_calls)),
    ]
    if settings.max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", ms(settings.max_connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_seconds)),
        ]
    return options


def build_service(
    settings: Settings, *, store: Store | None = None, pepper: bytes | None = None, reuse_port: bool = False, worker: str = "0"
) -> Service:
    """Open the store (unless given), bind the port, leave health NOT_SERVING; not started.

    reuse_port: share the port with sibling workers (only serve_workers asks for it).
    worker: the `worker` label of this process's metrics."""
    owns_store = store is None
    if store is None:
        store, pepper = open_store(settings)
    if pepper is None:
        raise TypeError("build_service: a store given without its pepper")
    pools: list[futures.ThreadPoolExecutor] = []
    try:
        checker = make_checker(settings, store, pepper)
        # Metrics first (outermost): it also counts the calls the token check refuses.
        gate = caller_interceptor(settings)
        interceptors = [MetricsInterceptor(worker), gate]
        if not reuse_port:
            _check_port_free(settings.listen)
        main, streams, writes, probes = pools = [
            futures.ThreadPoolExecutor(max(1, settings.grpc_threads), thread_name_prefix="grpc"),
            futures.ThreadPoolExecutor(max(0, settings.max_streams) + STREAM_SPARE_THREADS, thread_name_prefix="stream"),
            futures.ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="admin-write"),
            futures.ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="health"),
        ]
        server = grpc.server(main, options=server_options(settings, reuse_port=reuse_port), interceptors=interceptors)
        restriction = RestrictionServicer(
            checker,
            fast_batches=settings.fast_batches,
            max_streams=settings.max_streams,
            stream_idle_seconds=settings.stream_idle_seconds,
        )
        run_on(streams, restriction, "StreamCheckRestriction")
        register_restriction(restriction, server)
        admin = ListAdminServicer(checker, Ledger(store, pepper), writer_wait_seconds=settings.writer_wait_seconds)
        run_on(writes, admin, "ApplyEvents", "GetStats")
        admin_pb2_grpc.add_ListAdminServiceServicer_to_server(admin, server)
        health_servicer = health.HealthServicer()
        run_on(probes, health_servicer, "Check", "Watch")
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            port = _bind(server, settings)
        except RuntimeError:  # grpc says only "Failed to bind"; _check_port_free saw it free just before
            raise AddressInUse(f"cannot listen on {settings.listen}: taken by another process meanwhile") from None
        if port == 0:
            raise AddressInUse(f"cannot listen on {settings.listen}")
    except BaseException:
        for pool in pools:
            pool.shutdown(wait=False)
        if owns_store:
            store.close()
        raise
    service = Service(
        settings,
        store,
        checker,
        server,
        health_servicer,
        restriction,
        pools,
        port,
        follower_gate=make_follower_gate(settings, store) if settings.follow_lag_max >= 0 else None,
        worker=worker,
        gate=gate,
    )
    service.set_serving(False)
    return service


def make_follower_gate(settings: Settings, store: Store) -> Callable[[], tuple[bool, str]]:
    from ..replication.position import read_position
    from ..replication.status import follower_health, read_status, status_path

    path = status_path(settings.data_dir)

    def gate() -> tuple[bool, str]:
        with store.read() as view:
            where = read_position(view)
        return follower_health(
            read_status(path),
            where.seq if where else None,
            lag_max=settings.follow_lag_max,
            stale_seconds=settings.follow_stale_seconds,
        )

    return gate


def _bind(server: grpc.Server, settings: Settings) -> int:
    if not settings.tls_cert:
        return server.add_insecure_port(settings.listen)
    key, cert = Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes()
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return server.add_secure_port(settings.listen, credentials)


def _split_listen(listen: str) -> tuple[str, int] | None:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        return None  # not host:port (e.g. unix:path): grpc's own bind reports any problem
    return host.strip("[]"), int(port)


def _check_port_free(listen: str, what: str = "") -> None:
    """Refuse, with a clear message, a port that something else listens on: gRPC would
    only say "Failed to bind" (and with its default SO_REUSEPORT would even succeed)."""
    parsed = _split_listen(listen)
    if parsed is None or parsed[1] == 0:
        return
    host, port = parsed
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {listen}: {exc.strerror}") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # SO_REUSEADDR as gRPC sets it: connections of a previous run in TIME_WAIT are no conflict.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind_or_refuse(probe, address, listen, what)


def _bind_or_refuse(sock: socket.socket, address, listen: str, what: str = "") -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{what + ' ' if what else ''}{listen} is already in use (another `sanction serve`?)") from None
        raise OSError(f"cannot listen on {listen}: {exc.strerror}") from None


def serve(settings: Settings, workers: int = 1, signals: StopSignals | None = None) -> int:
    """Run until SIGINT/SIGTERM. Raises StoreError/PepperError before binding if the store
    is unusable, AddressInUse if another instance has the port (or the data dir)."""
    signals = signals or StopSignals()
    if workers > 1:
        return serve_workers(settings, workers, signals)
    return serve_one(settings, signals=signals)


def serve_one(settings: Settings, worker: str = "", *, signals: StopSignals, reuse_port: bool = False, index: int = 0) -> int:
    """One server process; with `worker` (its log prefix) and `index`, worker `index` of
    serve_workers, whose parent serves the metrics."""
    service = None
    try:
        if settings.pin_cpus and not worker:
            log.info("pinned to CPU %d", pin_to_cpu(0))
        service = build_service(settings, reuse_port=reuse_port, worker=str(index))
        if service.gate is not None:
            signals.on_hangup(service.gate.reload_tokens)
        service.start()
        host = settings.listen.rsplit(":", 1)[0]
        log.info("listening on %s:%d (health NOT_SERVING until the prefilter is ready)", host, service.port)
        if settings.metrics_port:
            start_metrics_server(settings)
            metrics.register_store(service.store)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
        how = service.warm_up()
        with service.store.read() as view:
            log.info("%sSERVING at data version %d; prefilter %s", worker, view.seq(), how)
        service.flush_counters_periodically()
        service.watch_follower()
        signals.serving()
    except BaseException as exc:
        if service is not None:
            service.close(grace=0)
        if isinstance(exc, Interrupted):
            log.info("%s%s during start-up: stopped", worker, exc)
            return 0
        raise
    signals.stop.wait()
    log.info("%s%s: shutting down", worker, signals.name)
    service.drain_and_close(signals.hurry)
    log.info("%sstopped", worker)
    return 0


def start_metrics_server(settings: Settings, registry=None):
    """The /metrics endpoint on SANCTION_METRICS_HOST:PORT (default registry: this process's)."""
    from prometheus_client import REGISTRY, start_http_server

    try:
        server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry or REGISTRY)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"metrics port {settings.metrics_port} is already in use") from None
        raise
    return server


def serve_workers(settings: Settings, workers: int, signals: StopSignals) -> int:
    """N processes on one port (SO_REUSEPORT), after grpc's multiprocessing example.

    The parent reserves the port and the data dir (a second instance exits EXIT_IN_USE),
    verifies the store and makes the persisted prefilter current, closes everything, and
    only then forks: no gRPC server and no LMDB environment may cross a fork. Each worker
    opens LMDB itself. If one worker dies the others are stopped too, so a supervisor sees
    the failure. On SIGTERM/SIGINT each worker drains (see serve_one); a second signal is
    passed on to hurry them.

    Metrics: ONE endpoint for the whole server, served by the parent on the metrics port.
    The workers record into prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
    a private directory that `sanction serve` sets before prometheus_client is imported and
    removes at exit: multiproc.py); the parent's collector sums their counters and
    histograms, keeps the `worker` label of the per-worker gauges (RPCs in flight,
    serving), and reads the store's gauges (active listings, journal sequence, last event
    time) itself at each scrape from its own read-only view, so they appear once, not once
    per worker. An exited worker's live gauges are dropped (`mark_process_dead`).
    """
    import multiprocessing
    from dataclasses import replace

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if metrics.multiprocess() else None
    if settings.metrics_port and path is None:
        raise RuntimeError("serve_workers needs prometheus-client's multiprocess mode (multiproc.private_directory)")
    processes: list = []
    metrics_server = store = None
    try:
        with _reserve_for_workers(settings) as bound:
            if settings.metrics_port:  # refuse a taken metrics port before forking anything
                _check_port_free(f"{settings.metrics_host}:{settings.metrics_port}", "metrics port")
            store, pepper = open_store(settings)
            try:
                checker = make_checker(settings, store, pepper)
                log.info("prefilter for the workers: %s", checker.warm_up())
            finally:
                store.close()
                store = None
            host = settings.listen.rsplit(":", 1)[0]
            context = multiprocessing.get_context("fork")
            signals.on_hangup(functools.partial(_pass_on_hangup, processes, os.getpid()))
            for index in range(workers):
                worker_settings = replace(settings, listen=f"{host}:{bound}", metrics_port=0)
                process = context.Process(target=_worker_main, args=(worker_settings, index), name=f"worker-{index}")
                process.start()
                processes.append(process)
            log.info("%d workers on %s:%d (pids %s)", workers, host, bound, [p.pid for p in processes])
            if settings.metrics_port:
                # Opened after the forks: the store's gauges, read here once per scrape.
                store, _ = open_store(settings)
                assert path is not None  # refused above when missing
                registry = metrics.multiprocess_registry(path)
                metrics.register_store(store, registry)
                metrics_server = start_metrics_server(settings, registry)
                log.info(
                    "metrics of all workers on http://%s:%d/metrics (files in %s)",
                    settings.metrics_host,
                    settings.metrics_port,
                    path,
                )
            signals.serving()
            while not signals.stop.wait(0.5):
                if any(not p.is_alive() for p in processes):
                    log.error("a worker exited; stopping the others")
                    break
            _stop_workers(processes, settings, signals)
    except Interrupted as exc:
        log.info("%s during start-up: stopped", exc)
        _stop_workers(processes, settings, signals)
        return 0
    except BaseException:
        _stop_workers(processes, settings, signals)
        raise
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        if store is not None:
            store.close()
    return 0 if signals.stop.is_set() else 1


def _stop_workers(processes: list, settings: Settings, signals: StopSignals) -> None:
    """SIGTERM each worker (it drains), pass a second signal on, kill what outlives drain + grace."""
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + settings.drain_seconds + settings.shutdown_grace_seconds + 10
    hurried = False
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        if signals.hurry.is_set() and not hurried:
            hurried = True
            for p in processes:
                if p.is_alive():
                    p.terminate()
        time.sleep(0.05)
    for p in processes:
        if p.is_alive():
            log.error("worker %s did not stop in time; killing it", p.name)
            p.kill()
        p.join()
        if p.pid is not None and metrics.multiprocess():
            from prometheus_client import multiprocess as mp

            mp.mark_process_dead(p.pid)  # its in-flight and serving gauges no longer count


@contextlib.contextmanager
def _reserve_for_workers(settings: Settings) -> Iterator[int]:
    """Hold the data dir and the port for this instance's workers; yields the port.

    gRPC binds with SO_REUSEPORT, which lets any process of this user share a port, so a
    second `serve --workers` would quietly take half the connections. Instead: a lock file
    in the data dir; a plain bind that fails if anything listens on the port; a lock named
    after the port (an abstract Unix socket, released when the last holder exits) so two
    instances starting together cannot both pass that probe; and only then the
    SO_REUSEPORT socket the workers share (not listening: it only keeps the port ours, also
    when port 0 asked for any free one). The workers inherit the locks.
    """
    parsed = _split_listen(settings.listen)
    if parsed is None:
        raise OSError(f"--workers needs host:port to listen on, not {settings.listen}")
    host, port = parsed
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as stack:
        stack.enter_context(_data_dir_lock(settings.data_dir))
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind_or_refuse(probe, (host, port), settings.listen)
            port = probe.getsockname()[1]
            lock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            try:
                lock.bind(f"\0sanction-serve {host}:{port}")
            except OSError:
                raise AddressInUse(f"{host}:{port} is being taken by another `sanction serve`") from None
        holder = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _bind_or_refuse(holder, (host, port), settings.listen)
        yield port


@contextlib.contextmanager
def _data_dir_lock(data_dir: str) -> Iterator[None]:
    """flock on <data dir>/serve.lock (holding our pid, for the message of the next one)."""
    path = Path(data_dir) / SERVE_LOCK_FILE
    if not path.parent.is_dir():
        yield  # no store there: open_store refuses with its own message
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AddressInUse(f"data dir {data_dir} is served by another `sanction serve --workers` (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _worker_main(settings: Settings, index: int) -> None:
    # SIGINT is ignored: a Ctrl-C reaches the whole process group, and the parent decides
    # (it sends SIGTERM). SIGTERM drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signals = StopSignals((signal.SIGTERM,))
    logs.set_worker(index)
    if settings.pin_cpus:
        pin_to_cpu(index)
    raise SystemExit(serve_one(settings, worker=f"worker {index} ", signals=signals, reuse_port=True, index=index))


def _pass_on_hangup(processes: list, parent: int) -> None:
    """SIGHUP to the parent: each worker re-reads the tokens file. (A worker just forked
    still has this handler: it passes nothing on.)"""
    if os.getpid() != parent:
        return
    for p in processes:
        if p.is_alive():
            os.kill(p.pid, signal.SIGHUP)
    log.info("SIGHUP passed on to %d workers", len(processes))


def pin_to_cpu(index: int) -> int:
    """Keep this process on one CPU. gRPC's threads contend for the GIL; spread over
    several cores they spend the difference bouncing it (BENCHMARKS.md: pinned, one
    process answers nearly twice the unary calls)."""
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    return cpu
