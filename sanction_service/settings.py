"""Every setting the service reads, with its default. Nothing else reads os.environ.

CLI flags override these; each flag's help names its environment variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


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
    metrics_port: int = field(default_factory=lambda: env_int("SANCTION_METRICS_PORT", 9464))
    metrics_host: str = field(default_factory=lambda: env_str("SANCTION_METRICS_HOST", "127.0.0.1"))
    # The pepper: a file (default: <data_dir>/pepper) or hex in SANCTION_PEPPER.
    pepper_file: str = field(default_factory=lambda: env_str("SANCTION_PEPPER_FILE"))
    pepper_hex: str = field(default_factory=lambda: env_str("SANCTION_PEPPER"))
    # LMDB's map is address space, not disk (on Linux the file grows only as pages are
    # written), so a generous fixed map costs nothing and spares growing it at run time,
    # which would disturb concurrent readers. A write that finds it full fails clearly.
    map_size: int = field(default_factory=lambda: env_int("SANCTION_MAP_SIZE", 256 << 30))
    prefilter_error_rate: float = field(default_factory=lambda: env_float("SANCTION_PREFILTER_ERROR_RATE", 0.001))
    # The smallest prefilter built; it is rebuilt larger at 80 % full.
    prefilter_min_capacity: int = field(default_factory=lambda: env_int("SANCTION_PREFILTER_MIN_CAPACITY", 100_000))
    # How long ApplyEvents waits for another writer (a loader) before answering UNAVAILABLE.
    writer_wait_seconds: float = field(default_factory=lambda: env_float("SANCTION_WRITER_WAIT_SECONDS", 5.0))
    # BatchCheckRestriction's columnar fast path (grpc_api/batch_fast.py); off: item by item.
    fast_batches: bool = field(default_factory=lambda: env_str("SANCTION_FAST_BATCHES", "on") != "off")
    prefilter_enabled: bool = field(default_factory=lambda: env_str("SANCTION_PREFILTER", "on") != "off")
    workers: int = field(default_factory=lambda: env_int("SANCTION_WORKERS", 1))
    # Pin each server process (worker i to the i-th allowed CPU): less GIL contention.
    pin_cpus: bool = field(default_factory=lambda: env_str("SANCTION_PIN_CPUS", "off") == "on")
    grpc_threads: int = field(default_factory=lambda: env_int("SANCTION_GRPC_THREADS", 16))
    # How often refused-check counts are written to the store (they survive restarts).
    counter_flush_seconds: float = field(default_factory=lambda: env_float("SANCTION_COUNTER_FLUSH_SECONDS", 2.0))
    # TLS on the gRPC port; with a client CA, clients must present a certificate it signed.
    tls_cert: str = field(default_factory=lambda: env_str("SANCTION_TLS_CERT"))
    tls_key: str = field(default_factory=lambda: env_str("SANCTION_TLS_KEY"))
    tls_client_ca: str = field(default_factory=lambda: env_str("SANCTION_TLS_CLIENT_CA"))
    # Bearer tokens with roles (see grpc_api/auth.py); empty: no token required.
    tokens_file: str = field(default_factory=lambda: env_str("SANCTION_TOKENS_FILE"))
    log_level: str = field(default_factory=lambda: env_str("SANCTION_LOG_LEVEL", "INFO"))
