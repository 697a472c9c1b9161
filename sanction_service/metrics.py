"""Prometheus metrics. Labels carry modes, decisions and outcomes, never document numbers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHECK_LATENCY = Histogram(
    "sanction_check_seconds",
    "Time to answer one check inside the server (per item for batches and streams).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
DECISIONS = Counter("sanction_decisions_total", "Check answers by travel mode and decision.", ["mode", "decision"])
CHECK_ERRORS = Counter("sanction_check_errors_total", "Checks answered with an error, by gRPC code.", ["code"])
PREFILTER = Counter(
    "sanction_prefilter_total",
    "Prefilter answers: miss (skipped the store), hit (listed), false_positive (store found nothing).",
    ["result"],
)
ACTIVE_LISTINGS = Gauge("sanction_active_listings", "Listings in force, by list type.", ["list_type"])
JOURNAL_SEQUENCE = Gauge("sanction_journal_sequence", "Journal sequence (data version) the store is at.")
EVENTS = Counter("sanction_events_total", "Feed events by outcome (applied, duplicate, rejected).", ["outcome"])
