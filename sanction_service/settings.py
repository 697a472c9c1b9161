"""Every setting the service reads, with its default. Nothing else reads os.environ.

CLI flags override these; each flag's help names its environment variable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field


class SettingsError(ValueError):
    """An environment variable holds a value its setting does not accept. The message is
    one line naming the variable and what it accepts (the CLI prints it and exits 78)."""


def _refuse(name: str, raw: str, accepted: str) -> SettingsError:
    shown = raw if len(raw) <= 40 else raw[:37] + "..."
    return SettingsError(f"{name}={shown!r} is not accepted: {accepted}")


def _range(low: float | None, high: float | None, exclusive: bool = False) -> str:
    above, below = ("greater than", "less than") if exclusive else ("at least", "at most")
    if low is not None and high is not None:
        return f" {above} {low} and {below} {high}" if exclusive else f" from {low} to {high}"
    if low is not None:
        return f" {above} {low}"
    return f" {below} {high}" if high is not None else ""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _refuse(name, raw, "a whole number" + _range(minimum, maximum))
    return value


def env_float(
    name: str, default: float, minimum: float | None = None, maximum: float | None = None, *, exclusive: bool = False
) -> float:
    """A finite number within the bounds; `exclusive`: the bounds themselves are refused."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    low_ok = minimum is None or (value > minimum if exclusive else value >= minimum)
    high_ok = maximum is None or (value < maximum if exclusive else value <= maximum)
    if not (math.isfinite(value) and low_ok and high_ok):
        raise _refuse(name, raw, "a number" + _range(minimum, maximum, exclusive))
    return value


def env_bool(name: str, default: bool) -> bool:
    """`on` or `off` (also true/false, yes/no, 1/0), any letter case."""
    raw = os.environ.get(name)
    if not raw:
        return default
    word = raw.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise _refuse(name, raw, "on or off")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (upper case), any letter case."""
    raw = os.environ.get(name)
    if not raw:
        return default
    if raw.strip().upper() not in choices:
        raise _refuse(name, raw, "one of " + ", ".join(choices) + " (any letter case)")
    return raw.strip().upper()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("TEXT", "JSON")
AUDIT_LOG_FILE = "audit.log"


# Fixed limits of the API. docs/INPUT_LIMITS.md lists each with its rejection text.
MAX_BATCH = 1000
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_FEED_LINE_BYTES = 1024 * 1024
# LMDB keys hold at most 511 bytes and an exemption key carries a listing id and a
# reference, so identifiers are bounded in bytes, with room to spare.
MAX_IDENTIFIER_BYTES = 128
MAX_NAME_CHARS = 200
MAX_CASE_NUMBER_CHARS = 100
MAX_COURT_CHARS = 100
MAX_FREE_TEXT_CHARS = 2000
MAX_AMOUNT_CHARS = 64
MAX_TIMESTAMP_CHARS = 64
# Raw length before separators are stripped: real numbers are at most 20 characters.
MAX_DOCUMENT_NUMBER_CHARS = 64
MAX_COUNTRY_CHARS = 8
MAX_EXTRA_DOCUMENTS = 20
MAX_RESTRICTED_PERSONS = 50
# An event nests four levels (event, restricted_persons, person, document); deeper JSON
# is refused before anything recursive walks it.
MAX_JSON_DEPTH = 32
# The travel dates a check may ask about (docs/DECISIONS.md), counted from today in Asia/Shanghai.
TRAVEL_DAYS_BEFORE_TODAY = 1
TRAVEL_DAYS_AFTER_TODAY = 366
PREFILTER_FILE = "prefilter.bloom"
# Tests only: seconds a loader sleeps after each committed batch, so that a test can act
# (kill it, back up, check) while a load that is otherwise over in a blink is under way.
TEST_BATCH_PAUSE = env_float("SANCTION_TEST_BATCH_PAUSE", 0.0)
PEPPER_FILE = "pepper"


@dataclass
class Settings:
    data_dir: str = field(default_factory=lambda: env_str("SANCTION_DATA_DIR", "data/demo"))
    listen: str = field(default_factory=lambda: env_str("SANCTION_LISTEN", "127.0.0.1:50051"))
    # 0 disables the metrics endpoint.
    metrics_port: int = field(default_factory=lambda: env_int("SANCTION_METRICS_PORT", 9464, 0, 65535))
    metrics_host: str = field(default_factory=lambda: env_str("SANCTION_METRICS_HOST", "127.0.0.1"))
    # The pepper: a file (default: <data_dir>/pepper) or hex in SANCTION_PEPPER.
    pepper_file: str = field(default_factory=lambda: env_str("SANCTION_PEPPER_FILE"))
    pepper_hex: str = field(default_factory=lambda: env_str("SANCTION_PEPPER"))
    # LMDB's map is address space, not disk (on Linux the file grows only as pages are
    # written), so a generous fixed map costs nothing and spares growing it at run time,
    # which would disturb concurrent readers. A write that finds it full fails clearly.
    map_size: int = field(default_factory=lambda: env_int("SANCTION_MAP_SIZE", 256 << 30, 1 << 20))
    prefilter_error_rate: float = field(
        default_factory=lambda: env_float("SANCTION_PREFILTER_ERROR_RATE", 0.001, 0, 1, exclusive=True)
    )
    # The smallest prefilter built; it is rebuilt larger at 80 % full.
    prefilter_min_capacity: int = field(default_factory=lambda: env_int("SANCTION_PREFILTER_MIN_CAPACITY", 100_000, 1))
    # How long ApplyEvents waits for another writer (a loader) before answering UNAVAILABLE.
    writer_wait_seconds: float = field(default_factory=lambda: env_float("SANCTION_WRITER_WAIT_SECONDS", 5.0, 0))
    # BatchCheckRestriction's columnar fast path (grpc_api/batch_fast.py); off: item by item.
    fast_batches: bool = field(default_factory=lambda: env_bool("SANCTION_FAST_BATCHES", True))
    prefilter_enabled: bool = field(default_factory=lambda: env_bool("SANCTION_PREFILTER", True))
    workers: int = field(default_factory=lambda: env_int("SANCTION_WORKERS", 1, 1))
    # Pin each server process (worker i to the i-th allowed CPU): less GIL contention.
    pin_cpus: bool = field(default_factory=lambda: env_bool("SANCTION_PIN_CPUS", False))
    # Threads for checks and admin reads; streams, admin writes and health have their own.
    grpc_threads: int = field(default_factory=lambda: env_int("SANCTION_GRPC_THREADS", 16, 1))
    # Open StreamCheckRestriction streams per process (each holds two threads, mostly
    # asleep); more get RESOURCE_EXHAUSTED with a RetryInfo.
    max_streams: int = field(default_factory=lambda: env_int("SANCTION_MAX_STREAMS", 100))
    # A stream that sends nothing for this long is ended with UNAVAILABLE (frees its slot); 0: never.
    stream_idle_seconds: float = field(default_factory=lambda: env_float("SANCTION_STREAM_IDLE_SECONDS", 60.0))
    # On SIGTERM/SIGINT: health NOT_SERVING, keep serving this long so load balancers move
    # away, then stop accepting and give in-flight calls the grace period to finish.
    drain_seconds: float = field(default_factory=lambda: env_float("SANCTION_DRAIN_SECONDS", 5.0))
    shutdown_grace_seconds: float = field(default_factory=lambda: env_float("SANCTION_SHUTDOWN_GRACE_SECONDS", 10.0))
    # HTTP/2 keepalive: the server pings an idle connection this often and drops it when
    # no answer comes within the timeout (a dead client or a silent NAT).
    keepalive_seconds: float = field(default_factory=lambda: env_float("SANCTION_KEEPALIVE_SECONDS", 60.0))
    keepalive_timeout_seconds: float = field(default_factory=lambda: env_float("SANCTION_KEEPALIVE_TIMEOUT_SECONDS", 20.0))
    # Clients may ping this often, also with no call open (keeps connections warm through
    # NATs and load balancers); faster pingers get GOAWAY too_many_pings.
    client_ping_min_seconds: float = field(default_factory=lambda: env_float("SANCTION_CLIENT_PING_MIN_SECONDS", 0.5))
    client_ping_without_calls: bool = field(
        default_factory=lambda: env_str("SANCTION_CLIENT_PING_WITHOUT_CALLS", "on") != "off"
    )
    # Connections get GOAWAY after this age (gRPC adds ±10 % jitter) and then the grace to
    # finish their calls, so clients reconnect and spread over --workers; 0: no limit.
    max_connection_age_seconds: float = field(default_factory=lambda: env_float("SANCTION_MAX_CONNECTION_AGE_SECONDS", 300.0))
    max_connection_age_grace_seconds: float = field(
        default_factory=lambda: env_float("SANCTION_MAX_CONNECTION_AGE_GRACE_SECONDS", 30.0)
    )
    # How often refused-check counts are written to the store (they survive restarts).
    counter_flush_seconds: float = field(
        default_factory=lambda: env_float("SANCTION_COUNTER_FLUSH_SECONDS", 2.0, 0, exclusive=True)
    )
    # TLS on the gRPC port; with a client CA, clients must present a certificate it signed.
    tls_cert: str = field(default_factory=lambda: env_str("SANCTION_TLS_CERT"))
    tls_key: str = field(default_factory=lambda: env_str("SANCTION_TLS_KEY"))
    tls_client_ca: str = field(default_factory=lambda: env_str("SANCTION_TLS_CLIENT_CA"))
    # Bearer tokens with roles (see grpc_api/auth.py); empty: no token required.
    tokens_file: str = field(default_factory=lambda: env_str("SANCTION_TOKENS_FILE"))
    log_level: str = field(default_factory=lambda: env_choice("SANCTION_LOG_LEVEL", "INFO", LOG_LEVELS))
    # TEXT or JSON (one object per line); either way each line names its process (logs.py).
    log_format: str = field(default_factory=lambda: env_choice("SANCTION_LOG_FORMAT", "TEXT", LOG_FORMATS))
    # serve: without a tokens file the admin API (ApplyEvents can DELIST anyone) is open to
    # whoever reaches the port, so a non-loopback listen address is refused unless this is on.
    allow_unauthenticated: bool = field(default_factory=lambda: env_bool("SANCTION_ALLOW_UNAUTHENTICATED", False))
    # serve: the append-only log of admin calls (audit.py); empty: <data_dir>/audit.log.
    audit_log: str = field(default_factory=lambda: env_str("SANCTION_AUDIT_LOG"))
    # serve: with a follower feeding the store, health is NOT_SERVING while the follower's
    # lag exceeds this many events or its status is older than follow_stale_seconds
    # (docs/REPLICATION.md). -1: the store has no follower, health ignores it.
    follow_lag_max: int = field(default_factory=lambda: env_int("SANCTION_FOLLOW_LAG_MAX", -1))
    follow_stale_seconds: float = field(default_factory=lambda: env_float("SANCTION_FOLLOW_STALE_SECONDS", 30.0))


@dataclass
class NatsSettings:
    """Replication through NATS JetStream (sanction publish / follow / snapshot). Nothing
    here is read unless one of those commands runs."""

    # Comma-separated server URLs (nats:// or tls://).
    url: str = field(default_factory=lambda: env_str("SANCTION_NATS_URL"))
    user: str = field(default_factory=lambda: env_str("SANCTION_NATS_USER"))
    password: str = field(default_factory=lambda: env_str("SANCTION_NATS_PASSWORD"))
    token: str = field(default_factory=lambda: env_str("SANCTION_NATS_TOKEN"))
    # A .creds file (user JWT + nkey seed) of a decentralised-auth account.
    creds: str = field(default_factory=lambda: env_str("SANCTION_NATS_CREDS"))
    # TLS: the CA that signed the servers' certificates; a client certificate and key
    # where the servers require one.
    tls_ca: str = field(default_factory=lambda: env_str("SANCTION_NATS_TLS_CA"))
    tls_cert: str = field(default_factory=lambda: env_str("SANCTION_NATS_TLS_CERT"))
    tls_key: str = field(default_factory=lambda: env_str("SANCTION_NATS_TLS_KEY"))
    stream: str = field(default_factory=lambda: env_str("SANCTION_NATS_STREAM", "SANCTION_FEED"))
    subject_prefix: str = field(default_factory=lambda: env_str("SANCTION_NATS_SUBJECT_PREFIX", "sanction.feed"))
    snapshot_bucket: str = field(default_factory=lambda: env_str("SANCTION_NATS_SNAPSHOT_BUCKET", "sanction-snapshots"))
    # Used only when `sanction publish` creates the stream (an existing one is not changed).
    duplicate_window_seconds: float = field(default_factory=lambda: env_float("SANCTION_NATS_DUPLICATE_WINDOW", 3600.0))
    max_age_seconds: float = field(default_factory=lambda: env_float("SANCTION_NATS_MAX_AGE", 0.0))
    replicas: int = field(default_factory=lambda: env_int("SANCTION_NATS_REPLICAS", 1))
    # The follower's durable consumer; default: one per host and data directory.
    consumer: str = field(default_factory=lambda: env_str("SANCTION_FOLLOW_CONSUMER"))
    follow_metrics_port: int = field(default_factory=lambda: env_int("SANCTION_FOLLOW_METRICS_PORT", 9465))
