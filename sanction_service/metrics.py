"""Prometheus metrics. Labels carry modes, decisions, outcomes, RPC names and codes, never
document numbers.

Per-RPC metrics follow the conventions of the gRPC Prometheus middlewares
(go-grpc-prometheus): grpc_server_started_total, grpc_server_handled_total,
grpc_server_handling_seconds; grpc_api/rpc_metrics.py records them. The store's figures
are not kept here: `StoreCollector` reads them from the store at scrape time, once per
scrape endpoint, so `sum()` over a server never counts them twice.

With `serve --workers N` the workers record into prometheus-client's multiprocess files
(multiproc.py sets PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported) and the
parent serves one endpoint for all of them (`multiprocess_registry`).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

# Multiprocess values ask for the process id at every update, to notice a fork; getpid is
# a system call (~0.4 us here, ten updates per check call). The id is kept instead, and
# renewed in a forked child before anything else runs there.
_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)
if getattr(values.ValueClass, "_multiprocess", False):  # before any metric below is made
    values.ValueClass = values.MultiProcessValue(lambda: _pid)

# Server-side handling time of an RPC, as measured here by benchmarks/rpc_metrics.py
# (BENCHMARKS.md): a unary check ~70 us (97 % between 50 and 100 us), a health check ~3 us,
# a batch of 100 ~0.5 ms, of 1000 a few ms; a stream lasts as long as its client keeps it.
RPC_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.000075,
    0.0001,
    0.00015,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
# One check inside the checker: ~85 % take 10-25 us (a prefilter miss), a store lookup 50-250 us.
CHECK_BUCKETS = (
    0.000005,
    0.00001,
    0.000015,
    0.00002,
    0.000025,
    0.000035,
    0.00005,
    0.000075,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
)

RPC_STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.", ["grpc_type", "grpc_service", "grpc_method", "worker"]
)
RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by gRPC status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC's handler to its end (a stream: its whole life).",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=RPC_BUCKETS,
)
# livesum: a dead worker's calls are no longer in flight.
RPC_IN_FLIGHT = Gauge(
    "sanction_rpcs_in_flight",
    "RPCs being handled now, by worker process.",
    ["grpc_service", "grpc_method", "worker"],
    multiprocess_mode="livesum",
)
SERVING = Gauge(
    "sanction_serving",
    "1 while this process's health answers SERVING, 0 while NOT_SERVING (start-up, replica behind, draining).",
    ["worker"],
    multiprocess_mode="livemax",
)

CHECK_LATENCY = Histogram(
    "sanction_check_seconds",
    "Time to answer one check inside the checker (per item of unary calls, streams and item-by-item batches).",
    buckets=CHECK_BUCKETS,
)
DECISIONS = Counter("sanction_decisions_total", "Check answers by travel mode and decision.", ["mode", "decision"])
CHECK_ERRORS = Counter("sanction_check_errors_total", "Checks answered with an error, by gRPC code.", ["code"])
PREFILTER = Counter(
    "sanction_prefilter_total",
    "Prefilter answers: miss (skipped the store), hit (listed), false_positive (store found nothing).",
    ["result"],
)
EVENTS = Counter("sanction_events_total", "Feed events by outcome (applied, duplicate, rejected).", ["outcome"])
for _outcome in ("applied", "duplicate", "rejected"):  # at 0 from the start, so rate() and dashboards see them
    EVENTS.labels(_outcome)


def multiprocess() -> bool:
    """Whether this process records into PROMETHEUS_MULTIPROC_DIR (decided when
    prometheus_client was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class StoreCollector:
    """The store's figures, read from one snapshot at each scrape."""

    def __init__(self, store):
        self.store = store

    def collect(self):
        from .stats import read_stats

        try:
            with self.store.read() as view:
                stats = read_stats(view)
        except Exception as exc:  # closed or unreadable: the scrape still answers, without these
            log.warning("metrics: cannot read the store: %s", exc)
            return
        active = GaugeMetricFamily("sanction_active_listings", "Listings in force, by list type.", labels=["list_type"])
        for list_type, count in sorted(stats.active_listings_by_type.items()):
            active.add_metric([list_type], count)
        yield active
        yield GaugeMetricFamily(
            "sanction_journal_sequence", "Journal sequence (data version) the store is at.", value=stats.data_version
        )
        yield GaugeMetricFamily(
            "sanction_last_event_timestamp_seconds",
            "occurred_at of the last feed event applied to the store (unix time); 0: none yet.",
            value=event_timestamp(stats.last_event_time),
        )

    def describe(self):
        return []  # nothing at registration: the store is read only when scraped


def event_timestamp(occurred_at: str) -> float:
    if not occurred_at:
        return 0.0
    return datetime.fromisoformat(occurred_at).timestamp()  # events.py admits only RFC 3339 with an offset


_store_collector: StoreCollector | None = None


def register_store(store, registry=None) -> None:
    """Export the store's figures on `registry` (default: the process's), in place of any
    store registered before (in-process tests serve several stores one after another)."""
    global _store_collector
    from prometheus_client import REGISTRY

    registry = registry or REGISTRY
    if registry is REGISTRY and _store_collector is not None:
        REGISTRY.unregister(_store_collector)
        _store_collector = None
    collector = StoreCollector(store)
    registry.register(collector)
    if registry is REGISTRY:
        _store_collector = collector


def multiprocess_registry(path: str) -> CollectorRegistry:
    """The parent's registry with --workers: every worker's metrics from `path`, summed
    (counters, histograms, livesum gauges) or per worker (the `worker` label)."""
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry, path=path)
    return registry
