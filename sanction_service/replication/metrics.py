"""The follower's Prometheus metrics (served by `sanction follow` on its own port,
SANCTION_FOLLOW_METRICS_PORT). Alert rules: docs/ops/replication-alerts.yml."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from .status import FollowerStatus

STATES = ("starting", "connecting", "catching_up", "following", "disconnected", "refused", "stopped")

APPLIED_SEQ = Gauge("sanction_follower_applied_sequence", "Last stream sequence applied to the store.")
HEAD_SEQ = Gauge("sanction_follower_stream_head", "The stream's last sequence as the follower last saw it.")
LAG_EVENTS = Gauge("sanction_follower_lag_events", "Stream messages not yet applied (head - applied).")
LAG_SECONDS = Gauge(
    "sanction_follower_lag_seconds", "While behind: now minus the publish time of the last applied message; 0 when caught up."
)
HEAD_CHECKED = Gauge(
    "sanction_follower_head_checked_timestamp_seconds",
    "When the follower last learnt the stream's head from the server (unix time).",
)
STATE = Gauge("sanction_follower_state", "1 for the follower's current state.", ["state"])
MESSAGES = Counter(
    "sanction_follower_messages_total", "Stream messages by outcome (applied, duplicate, rejected).", ["outcome"]
)
RESYNCS = Counter(
    "sanction_follower_resyncs_total",
    "Times the consumer was recreated at the store's position (start, reconnects, redeliveries).",
)


def observe(status: FollowerStatus) -> None:
    APPLIED_SEQ.set(status.applied_seq)
    HEAD_SEQ.set(status.head_seq)
    LAG_EVENTS.set(status.lag_events)
    LAG_SECONDS.set(status.lag_seconds)
    HEAD_CHECKED.set(status.head_checked_at)
    for state in STATES:
        STATE.labels(state).set(1 if state == status.state else 0)
