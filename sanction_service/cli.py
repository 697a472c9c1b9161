"""The `sanction` command: serve, init, load, migrate, backup, digest, check, lookup,
listing, stats, synth; and replication through NATS JetStream: publish, follow, snapshot,
replica-status.

Flags default to the environment variables of `settings` (each --help names them in
[brackets]). A user's mistake never ends in a traceback: it is one line on stderr naming
what is wrong and what is accepted, and its own exit code (EXIT_* below; README "Exit codes").
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from . import logs
from .identity import DocumentType
from .policy import RailClass, ShipClass, TravelMode
from .settings import LOG_FORMATS, LOG_LEVELS, PEPPER_FILE, PREFILTER_FILE, NatsSettings, Settings, SettingsError, env_str

log = logging.getLogger("sanction")

# Exit codes (README "Exit codes"). 0-4 are those of the commands that write a store.
EXIT_OK, EXIT_REJECTS, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_STORE_FULL = 0, 1, 2, 3, 4
EXIT_GAP = 5  # `follow`: the stream no longer holds what comes after this replica's position
EXIT_NATS = 6  # `publish`, `follow --bootstrap`, `snapshot`: NATS did not answer in time
EXIT_UNPROTECTED = 7  # `serve`: a non-loopback address without a tokens file (exposure.py)
EXIT_DENY = 10  # `check --exit-code`: the answer is DENY
EXIT_USAGE = 64  # a command line the command does not accept (sysexits EX_USAGE)
EXIT_INVALID = 65  # the service refused the request as invalid: INVALID_ARGUMENT
EXIT_NOT_FOUND = 66  # no such listing: NOT_FOUND
EXIT_UNAVAILABLE = 69  # no answer: no server, UNAVAILABLE, DEADLINE_EXCEEDED
EXIT_SERVICE_ERROR = 70  # any other error status (UNKNOWN, INTERNAL, RESOURCE_EXHAUSTED, …)
EXIT_NO_PERMISSION = 77  # UNAUTHENTICATED, PERMISSION_DENIED
EXIT_CONFIG = 78  # a SANCTION_* environment variable holds a value it does not accept
EXIT_PIPE = 141  # stdout was closed before the output was written (`… | head`), as 128 + SIGPIPE

CLIENT_COMMANDS = ("check", "lookup", "listing", "stats")
_ANY = (EXIT_OK, EXIT_USAGE, EXIT_CONFIG, EXIT_PIPE)
_CLIENT = (EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_SERVICE_ERROR, EXIT_NO_PERMISSION)
# Every code each command may exit with (tests/test_readme_commands.py holds README's table to it).
EXIT_CODES: dict[str, tuple[int, ...]] = {
    # 1: a worker died; 3: port or data dir taken; 7: admin API open beyond loopback
    "serve": (*_ANY, EXIT_REJECTS, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_UNPROTECTED),
    "init": (*_ANY, EXIT_STORE),
    "load": (*_ANY, EXIT_REJECTS, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_STORE_FULL),
    "migrate": (*_ANY, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_STORE_FULL),
    "backup": (*_ANY, EXIT_STORE, EXIT_STORE_FULL),
    "digest": (*_ANY, EXIT_STORE),
    "check": (*_ANY, EXIT_DENY, *_CLIENT),
    "lookup": (*_ANY, *_CLIENT),
    "listing": (*_ANY, EXIT_NOT_FOUND, *_CLIENT),
    "stats": (*_ANY, *_CLIENT),
    "synth": (*_ANY, EXIT_STORE),
    "publish": (*_ANY, EXIT_REJECTS, EXIT_STORE, EXIT_NATS),
    "follow": (*_ANY, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_STORE_FULL, EXIT_GAP, EXIT_NATS),
    "snapshot": (*_ANY, EXIT_STORE, EXIT_NATS),
    "replica-status": (*_ANY, EXIT_STORE),
}


class UsageParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where the help is) and exit 64."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def enum_type(what: str, values: Sequence[str], prefix: str = "") -> Callable[[str], str]:
    """An argparse type: one of `values`, any letter case (a `prefix` such as SHIP_ may be given too)."""

    def parse(text: str) -> str:
        value = text.strip().upper()
        if prefix and value.startswith(prefix) and value.removeprefix(prefix) in values:
            value = value.removeprefix(prefix)
        if value not in values:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}; one of {', '.join(values)} (any letter case)")
        return value

    return parse


def _one_of(values: Sequence[str]) -> str:
    return "one of " + ", ".join(values) + ", any letter case"


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; YYYY-MM-DD") from None


def _number(kind: type, minimum: float) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value != value or value < minimum or value in (float("inf"),):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not accepted; {what} of at least {minimum}")
        return value

    return parse


DOCUMENT_TYPES = tuple(t.value for t in DocumentType)
MODES = tuple(m.value for m in TravelMode)
RAIL_CLASSES = tuple(c.value for c in RailClass)
SHIP_CLASSES = tuple(c.value for c in ShipClass)


def _common(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    parser.add_argument("--data-dir", default=defaults.data_dir, help="store directory [SANCTION_DATA_DIR] (%(default)s)")
    parser.add_argument(
        "--pepper-file",
        default=defaults.pepper_file,
        help="file holding the secret pepper [SANCTION_PEPPER_FILE] (<data-dir>/pepper); or set SANCTION_PEPPER to hex",
    )
    parser.add_argument(
        "--log-level",
        type=enum_type("log level", LOG_LEVELS),
        default=defaults.log_level,
        metavar="LEVEL",
        help=f"{_one_of(LOG_LEVELS)} [SANCTION_LOG_LEVEL] (%(default)s)",
    )
    parser.add_argument(
        "--log-format",
        type=enum_type("log format", LOG_FORMATS),
        default=defaults.log_format,
        metavar="FORMAT",
        help=f"{_one_of(LOG_FORMATS)}; JSON: one object per line [SANCTION_LOG_FORMAT] (%(default)s)",
    )


def _target(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    parser.add_argument("--target", default=defaults.listen, help="server address host:port [SANCTION_LISTEN] (%(default)s)")
    parser.add_argument("--timeout", type=_number(float, 0.001), default=2.0, help="deadline per call in seconds (%(default)s)")
    parser.add_argument("--token", default=env_str("SANCTION_TOKEN"), help="bearer token [SANCTION_TOKEN]")
    parser.add_argument("--tls-ca", default="", help="PEM CA to verify a TLS server (enables TLS)")
    parser.add_argument("--tls-client-cert", default="", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-client-key", default="", help="PEM client key (mutual TLS)")


def _nats(parser: argparse.ArgumentParser, nats: NatsSettings) -> None:
    parser.add_argument(
        "--nats",
        default=nats.url,
        help="NATS server URL(s), comma-separated [SANCTION_NATS_URL]; "
        "credentials and TLS: set SANCTION_NATS_USER/PASSWORD/TOKEN/CREDS/TLS_CA/TLS_CERT/TLS_KEY",
    )
    parser.add_argument("--stream", default=nats.stream, help="JetStream stream [SANCTION_NATS_STREAM] (%(default)s)")


def _document(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--document-type",
        type=enum_type("document type", DOCUMENT_TYPES),
        default="RESIDENT_ID",
        metavar="TYPE",
        help=f"{_one_of(DOCUMENT_TYPES)} (%(default)s)",
    )
    parser.add_argument("--number", required=True, help="document number")
    parser.add_argument("--country", default="", help="issuing country (ISO alpha-3) for PASSPORT (CHN)")


def _json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as JSON (snake_case proto field names, every field even when zero or "
        "empty, enums as names, dates YYYY-MM-DD or null)",
    )


CLIENT_EXIT_HELP = (
    "Exit codes: 0 answered, 65 the service refused the request as invalid, 69 no answer "
    "(no server, UNAVAILABLE, deadline), 70 another error status, 77 no or wrong token, 64 wrong "
    "command line, 78 a bad SANCTION_* variable, 141 stdout closed."
)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), as pip reports it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sanction-service")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser(defaults: Settings | None = None) -> argparse.ArgumentParser:
    defaults = defaults or Settings()
    nats = NatsSettings()
    parser = UsageParser(
        prog="sanction",
        description="Defaulter-list restriction service: serve purchase-time checks, load the court feed, ask the server.",
        epilog="Each command's --help has its options and exit codes; README.md has them all.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {package_version()}", help="print the installed version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="serve checks over gRPC")
    _common(p, defaults)
    p.add_argument("--listen", default=defaults.listen, help="host:port [SANCTION_LISTEN] (%(default)s)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="Prometheus /metrics port, 0 to disable [SANCTION_METRICS_PORT] (%(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="server processes sharing the port (SO_REUSEPORT); the parent serves the metrics of "
        "all of them on the one metrics port [SANCTION_WORKERS] (%(default)s)",
    )
    p.add_argument(
        "--pin-cpus",
        action="store_true",
        default=defaults.pin_cpus,
        help="pin each server process to one CPU (worker i to the i-th) [SANCTION_PIN_CPUS=on]",
    )
    p.add_argument("--no-prefilter", action="store_true", help="answer every check from LMDB [SANCTION_PREFILTER=off]")
    p.add_argument(
        "--threads",
        type=int,
        default=defaults.grpc_threads,
        help="gRPC threads for checks and admin reads; streams, admin writes and health "
        "have their own [SANCTION_GRPC_THREADS] (%(default)s)",
    )
    p.add_argument(
        "--max-streams",
        type=int,
        default=defaults.max_streams,
        help="open check streams per process; more get RESOURCE_EXHAUSTED [SANCTION_MAX_STREAMS] (%(default)s)",
    )
    p.add_argument(
        "--stream-idle-seconds",
        type=float,
        default=defaults.stream_idle_seconds,
        help="end a stream idle this long with UNAVAILABLE, 0 never [SANCTION_STREAM_IDLE_SECONDS] (%(default)s)",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=defaults.drain_seconds,
        help="on SIGTERM/SIGINT keep serving this long with health NOT_SERVING [SANCTION_DRAIN_SECONDS] (%(default)s)",
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=defaults.shutdown_grace_seconds,
        help="then give in-flight calls this long to finish [SANCTION_SHUTDOWN_GRACE_SECONDS] (%(default)s)",
    )
    p.add_argument("--tls-cert", default=defaults.tls_cert, help="PEM certificate chain: serve TLS [SANCTION_TLS_CERT]")
    p.add_argument("--tls-key", default=defaults.tls_key, help="PEM private key [SANCTION_TLS_KEY]")
    p.add_argument(
        "--tls-client-ca",
        default=defaults.tls_client_ca,
        help="PEM CA: require client certificates it signed [SANCTION_TLS_CLIENT_CA]",
    )
    p.add_argument(
        "--tokens-file",
        default=defaults.tokens_file,
        help="JSON bearer tokens with roles check/admin, re-read on SIGHUP [SANCTION_TOKENS_FILE]",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=defaults.allow_unauthenticated,
        help="without --tokens-file, listen on a non-loopback address anyway (the admin API is then "
        "open to anyone reaching it) [SANCTION_ALLOW_UNAUTHENTICATED=on]",
    )
    p.add_argument(
        "--audit-log",
        default=defaults.audit_log,
        help="append-only JSON Lines log of admin calls [SANCTION_AUDIT_LOG] (<data-dir>/audit.log)",
    )
    p.add_argument(
        "--follow-lag-max",
        type=int,
        default=defaults.follow_lag_max,
        help="the store is fed by `sanction follow`: health NOT_SERVING while the follower is more than N "
        "events behind the stream or silent for --follow-stale-seconds; -1: no follower "
        "[SANCTION_FOLLOW_LAG_MAX] (%(default)s)",
    )
    p.add_argument(
        "--follow-stale-seconds",
        type=float,
        default=defaults.follow_stale_seconds,
        help="with --follow-lag-max: how old the follower's status may be [SANCTION_FOLLOW_STALE_SECONDS] (%(default)s)",
    )

    p = sub.add_parser(
        "init",
        help="create the pepper file (if none) and an empty store",
        description="Create the pepper file <data-dir>/pepper (unless SANCTION_PEPPER or "
        "SANCTION_PEPPER_FILE is set, or it exists) and an empty store. Exit codes: 0 "
        "done, 2 the store cannot be created or opened (no pepper, another pepper, not "
        "writable), 64 wrong command line, 78 a bad SANCTION_* variable.",
    )
    _common(p, defaults)

    p = sub.add_parser(
        "load",
        help="apply a JSON Lines feed to the store",
        description="Apply a JSON Lines feed to the store, holding the store's writer lock for the "
        "whole feed. Exit codes: 0 every line applied or a duplicate, 1 some lines "
        "rejected (see the rejects file), 2 the store or feed cannot be opened (missing, "
        "corrupt, another pepper, an unfinished bulk load, not empty for --bulk), 3 another "
        "writer holds the store and --no-wait was given, 4 no room: the disk or the LMDB "
        "map is full (whole batches only were committed; free space and run again), "
        "64 wrong command line, 78 a bad SANCTION_* variable, 141 stdout closed.",
    )
    _common(p, defaults)
    p.add_argument("feed", help="feed file (JSON Lines; the format is in docs/FEED.md)")
    p.add_argument("--rejects", help="where to write rejected lines (<feed>.rejects.jsonl)")
    p.add_argument(
        "--batch-size",
        type=_number(int, 1),
        default=None,
        help="events per write transaction (default 10000; 50000 with --bulk)",
    )
    p.add_argument("--create", action="store_true", help="create the store if it does not exist")
    p.add_argument(
        "--bulk",
        action="store_true",
        help="fast path for an empty store: sorted appends, indexes written at the end; the store is "
        "marked incomplete (refuses to serve) until it finishes, and running it again after a "
        "crash starts it over",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="if another writer holds the store, exit at once (code 3) instead of waiting for it",
    )
    p.add_argument(
        "--parse-workers",
        type=_number(int, 0),
        default=max(1, (os.cpu_count() or 2) - 1),
        help="processes that decode and validate lines while this one writes, each reading its own byte "
        "ranges of the feed (this one parses a range itself rather than wait for one); 0: this process "
        "does it all (%(default)s)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )

    p = sub.add_parser(
        "migrate",
        help="upgrade a store of an older schema in place (one transaction)",
        description="Upgrade a store written by an older version to this version's schema, in one "
        "write transaction: a crash leaves the old store as it was. Exit codes: 0 done "
        "(or nothing to do), 2 the store cannot be opened, 3 another writer holds it "
        "(--no-wait), 4 no room to write, 64 wrong command line, 78 a bad SANCTION_* "
        "variable, 141 stdout closed.",
    )
    _common(p, defaults)
    p.add_argument("--no-wait", action="store_true", help="exit at once (code 3) if another writer holds the store")

    p = sub.add_parser(
        "backup",
        help="consistent, compacted copy of the store while it serves and loads",
        description="Write a consistent, compacted copy of the store (DEST/data.mdb) from one read "
        "snapshot, while servers and loaders go on. The pepper is not copied: keep it "
        "apart. Exit codes: 0 written, 2 the store cannot be opened or DEST is not an "
        "empty directory, 4 no room at DEST, 64 wrong command line, 78 a bad SANCTION_* "
        "variable, 141 stdout closed.",
    )
    _common(p, defaults)
    p.add_argument("dest", help="empty or new directory to write data.mdb into")

    p = sub.add_parser(
        "digest",
        help="canonical digest of the store's contents (compare two stores)",
        description="Print a canonical digest of the store's contents as JSON, to compare two "
        "stores (e.g. a backup with its original: give the backup its pepper with "
        "--pepper-file or SANCTION_PEPPER). Exit codes: 0 printed, 2 the store cannot be "
        "opened (missing, no pepper, another pepper), 64 wrong command line, 78 a bad "
        "SANCTION_* variable, 141 stdout closed.",
    )
    _common(p, defaults)

    p = sub.add_parser(
        "publish",
        help="validate a feed as `load` does and append its valid events to the stream",
        description="Validate a JSON Lines feed exactly as `sanction load` does (rejects file, same "
        "reasons) and publish its valid events to the JetStream stream in feed order, "
        "each once (docs/REPLICATION.md). Exit codes: 0 every line published or a "
        "duplicate, 1 some lines rejected (the rest published), 2 the feed, the pepper or "
        "the stream cannot be used, 6 NATS did not acknowledge for --timeout seconds "
        "(what was acknowledged stays published: run the same feed again).",
    )
    _common(p, defaults)
    _nats(p, nats)
    p.add_argument("feed", help="feed file (JSON Lines; docs/FEED.md)")
    p.add_argument("--rejects", help="where to write rejected lines (default <feed>.rejects.jsonl)")
    p.add_argument("--window", type=int, default=256, help="messages in flight before their acks (%(default)s)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="give up after this many seconds without an acknowledgement (%(default)s)"
    )

    p = sub.add_parser(
        "follow",
        help="apply the stream to this replica's store (runs beside `serve`)",
        description="Follow the JetStream stream: apply its events in order through the Ledger, each "
        "batch with its stream sequence in one transaction, holding the store's writer "
        "lock (docs/REPLICATION.md). Exit codes: 0 stopped by SIGTERM/SIGINT, 2 refused "
        "(store missing or corrupt, another pepper, a store not fed by this stream, no "
        "snapshot or a bad one for --bootstrap), 3 another writer holds the store and "
        "--no-wait was given, 4 the store is full, 5 the stream no longer holds what comes "
        "after this replica's position: bootstrap it again, 6 the --bootstrap download "
        "failed (NATS error or time-out; nothing was installed).",
    )
    _common(p, defaults)
    _nats(p, nats)
    p.add_argument(
        "--bootstrap", action="store_true", help="if the data dir holds no store, install the latest snapshot first (verified)"
    )
    p.add_argument(
        "--consumer",
        default=nats.consumer,
        help="durable consumer name [SANCTION_FOLLOW_CONSUMER] (default: replica-<host>-<dir hash>)",
    )
    p.add_argument("--batch-size", type=int, default=500, help="messages per fetch and transaction (%(default)s)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=nats.follow_metrics_port,
        help="Prometheus port of the follower, 0 to disable [SANCTION_FOLLOW_METRICS_PORT] (%(default)s)",
    )
    p.add_argument("--no-wait", action="store_true", help="exit at once (code 3) if another writer holds the store")

    p = sub.add_parser(
        "snapshot",
        help="put a consistent copy of this replica into the NATS object store",
        description="Copy this replica's store from one read snapshot, describe it (stream sequence, "
        "digest) and upload it to the snapshot bucket for `follow --bootstrap`. Exit "
        "codes: 0 done, 2 the store cannot be opened or is not a replica, 6 NATS "
        "unavailable.",
    )
    _common(p, defaults)
    _nats(p, nats)
    p.add_argument("--keep", type=int, default=3, help="snapshots kept in the bucket (%(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for NATS (%(default)s)")

    p = sub.add_parser(
        "replica-status",
        help="a replica's stream position, rejected messages and follower status",
        description="Print, as JSON, a replica's stream position, the messages its ledger rejected "
        "and its follower's last status. Exit codes: 0 printed, 2 the store cannot be "
        "opened.",
    )
    _common(p, defaults)

    p = sub.add_parser(
        "check",
        help="ask the server whether a passenger may buy a ticket",
        description="Ask the server whether a passenger may buy a ticket (CheckRestriction). "
        "Without --mode: is the person restricted at all? " + CLIENT_EXIT_HELP + " With --exit-code, a DENY exits 10.",
    )
    _target(p, defaults)
    _document(p)
    p.add_argument("--name", default="", help="passenger name as booked")
    p.add_argument(
        "--mode",
        type=enum_type("travel mode", MODES),
        metavar="MODE",
        help=f"travel mode, {_one_of(MODES)} (omit: restricted at all?)",
    )
    p.add_argument("--train", default="", help="train number, e.g. G1234 (RAIL)")
    p.add_argument(
        "--rail-class",
        type=enum_type("rail class", RAIL_CLASSES),
        metavar="CLASS",
        help=f"seat class (RAIL; may be left out on a G train), {_one_of(RAIL_CLASSES)}",
    )
    p.add_argument("--cabin", default="", help="flight cabin (informational)")
    p.add_argument(
        "--ship-class",
        type=enum_type("ship class", SHIP_CLASSES, prefix="SHIP_"),
        metavar="CLASS",
        help=f"ship class (SHIP), {_one_of(SHIP_CLASSES)}",
    )
    p.add_argument(
        "--date", type=iso_date, help="travel date YYYY-MM-DD, yesterday to 366 days ahead (default: today, Asia/Shanghai)"
    )
    _json_flag(p, "the whole answer")
    p.add_argument("--exit-code", action="store_true", help="exit 10 when the answer is DENY (0 for ALLOW), for shell scripts")

    p = sub.add_parser(
        "lookup",
        help="every listing (active and lifted) naming a document",
        description="Every listing of the person a document stands for, active and lifted "
        "(LookupPerson; needs the admin role when the server has a tokens file). " + CLIENT_EXIT_HELP,
    )
    _target(p, defaults)
    _document(p)
    _json_flag(p, "the answer")

    p = sub.add_parser(
        "listing",
        help="show one listing by listing_id",
        description="One listing by listing_id, active or lifted, with its persons, extra "
        "documents, exemptions and event ids (GetListing; admin role). "
        + CLIENT_EXIT_HELP.replace("70 another", "66 no such listing, 70 another"),
    )
    _target(p, defaults)
    p.add_argument("listing_id")
    _json_flag(p, "the listing")

    p = sub.add_parser(
        "stats",
        help="the list's figures: active listings, refusals, performances",
        description="The list's figures: active listings by type, persons restricted, refused "
        "checks by mode, voluntary performances, delistings by reason, data version and "
        "last event time (GetStats; admin role). " + CLIENT_EXIT_HELP,
    )
    _target(p, defaults)
    _json_flag(p, "the figures")

    p = sub.add_parser(
        "synth",
        help="write a deterministic synthetic feed (and a probe file)",
        description="Write a deterministic synthetic feed (valid checksums, every event type, the "
        "showcase listings) and optionally a probe file of documents with their expected "
        "status. Exit codes: 0 written, 2 a file cannot be written, 64 wrong command "
        "line, 78 a bad SANCTION_* variable.",
    )
    p.add_argument("--seed", type=int, default=1, help="(%(default)s)")
    p.add_argument("--listings", type=_number(int, 1), default=20_000, help="LIST events to generate (%(default)s)")
    p.add_argument("--out", required=True, help="feed file to write")
    p.add_argument("--probes", help="also write probe documents with their expected status here")
    p.add_argument(
        "--start",
        type=iso_date,
        default=None,
        help="feed start date: listings fall in the 3 years before it (generator default 2024-01-01)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        defaults = Settings()
    except SettingsError as exc:
        if argv == ["--version"]:  # which version is installed is worth knowing even then
            print(f"sanction {package_version()}")
            return 0
        print(f"sanction: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args = build_parser(defaults).parse_args(argv)
    logs.setup(getattr(args, "log_level", defaults.log_level), getattr(args, "log_format", defaults.log_format))
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except SettingsError as exc:
        print(f"sanction {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # The reader went away (`sanction lookup … | head`): nothing more to say. Point
        # stdout at /dev/null so the interpreter's own last flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def _settings(args) -> Settings:
    settings = Settings()
    settings.data_dir = args.data_dir
    settings.pepper_file = args.pepper_file
    return settings


def cmd_serve(args) -> int:
    """Exit codes: 0 stopped by SIGTERM/SIGINT, 1 a worker died, 2 refused to serve (store,
    pepper, tokens, TLS files, audit log, address), 3 (EXIT_IN_USE) port or data dir taken,
    7 (EXIT_UNPROTECTED) a non-loopback address without a tokens file."""
    from .signals import Interrupted, StopSignals

    signals = StopSignals()  # first: a signal while grpc is still being imported stops cleanly too
    try:
        # Everything after it is inside: a signal can land anywhere from here on, even in
        # the middle of this log call.
        log.debug("start-up: SIGTERM/SIGINT now stop the server cleanly")
        with contextlib.ExitStack() as stack:
            if args.workers > 1:  # before prometheus_client is imported (multiproc.py)
                from .multiproc import private_directory

                stack.enter_context(private_directory())
            return _serve(args, signals)
    except Interrupted as exc:  # serve() handles its own start-up; this covers the imports before it
        log.info("%s during start-up: stopped", exc)
        return 0


def _serve(args, signals) -> int:
    from .exposure import Unprotected, admin_exposure
    from .grpc_api.auth import TokenFileError
    from .grpc_api.server import EXIT_IN_USE, AddressInUse, serve
    from .pepper import PepperError
    from .store import StoreError

    settings = _settings(args)
    settings.listen = args.listen
    settings.metrics_port = args.metrics_port
    settings.grpc_threads = args.threads
    settings.max_streams = args.max_streams
    settings.stream_idle_seconds = args.stream_idle_seconds
    settings.drain_seconds = args.drain_seconds
    settings.shutdown_grace_seconds = args.grace_seconds
    settings.pin_cpus = args.pin_cpus
    settings.tls_cert, settings.tls_key, settings.tls_client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    settings.tokens_file = args.tokens_file
    settings.allow_unauthenticated, settings.audit_log = args.allow_unauthenticated, args.audit_log
    settings.follow_lag_max, settings.follow_stale_seconds = args.follow_lag_max, args.follow_stale_seconds
    if args.no_prefilter:
        settings.prefilter_enabled = False
    try:
        warning = admin_exposure(settings)
    except Unprotected as exc:
        log.error("refusing to serve: %s", exc)
        return EXIT_UNPROTECTED
    if warning:
        log.warning("%s", warning)
    try:
        return serve(settings, workers=args.workers, signals=signals)
    except AddressInUse as exc:
        log.error("refusing to serve: %s", exc)
        return EXIT_IN_USE
    except (StoreError, PepperError, TokenFileError, OSError) as exc:
        log.error("refusing to serve: %s", exc)
        return 2


def _store_errors():
    """The exceptions that mean "this store (or file) cannot be used", not a bug."""
    import lmdb

    from .pepper import PepperError
    from .store import StoreError

    return StoreError, PepperError, lmdb.Error, OSError


def _no_room(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)


def cmd_init(args) -> int:
    from .grpc_api.server import open_store
    from .pepper import create_pepper_file

    settings = _settings(args)
    try:
        if not settings.pepper_file and not settings.pepper_hex:
            path = Path(settings.data_dir) / PEPPER_FILE
            if create_pepper_file(path):
                log.info("created a new pepper in %s (keep it secret; the store is useless without it)", path)
        store, _ = open_store(settings, create=True)
    except _store_errors() as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        log.error("cannot create the store at %s: %s", settings.data_dir, exc)
        return EXIT_STORE
    with store.read() as view:
        log.info("store at %s is ready (data version %d)", settings.data_dir, view.seq())
    store.close()
    return EXIT_OK


def _refresh_prefilter(store, prefilter_path: Path) -> None:
    """Bring a persisted prefilter up to the store's journal (imported only when there is
    one: numpy and pybloom-live are ~70 ms of a daily load's start-up)."""
    from .prefilter import Prefilter, PrefilterUnusable

    with store.read() as view:
        try:
            prefilter = Prefilter.load(prefilter_path, view)
            prefilter.catch_up(view)
            prefilter.save_or_warn(prefilter_path, view)
        except PrefilterUnusable:
            pass  # the server rebuilds it at start


def cmd_load(args) -> int:
    from sanction_service.loaders.feed import load_feed

    from .ledger import Ledger
    from .opening import open_store
    from .pepper import PepperError
    from .store import StoreError, StoreFull, StoreMissing
    from .writer_lock import WriterBusy, writer_lock_for

    settings = _settings(args)
    data = Path(settings.data_dir)
    if not Path(args.feed).is_file():
        log.error("cannot load: no feed file at %s", args.feed)
        return EXIT_STORE
    rejects = args.rejects or f"{args.feed}.rejects.jsonl"
    prefilter_path = data / PREFILTER_FILE
    what = f"sanction load{' --bulk' if args.bulk else ''} {args.feed}"
    try:
        if args.create:
            data.mkdir(parents=True, exist_ok=True)
        if not data.is_dir():
            raise StoreMissing(f"no store at {data} (run `sanction init` or `sanction load --create`)")
        # The lock is taken before the store is verified, so a load that arrives during a
        # bulk load waits for it instead of finding its incomplete mark; and it covers the
        # whole feed, so another loader cannot slip its batches in between.
        with writer_lock_for(data).hold(what, wait=not args.no_wait, on_wait=log.warning):
            # A bulk load may start over a store that an interrupted bulk load left marked.
            store, pepper = open_store(settings, create=args.create, allow_incomplete=args.bulk)
            try:
                if args.bulk:
                    from .bulk import BulkLedger  # (numpy, the prefilter: not a daily load's start-up)

                    ledger = BulkLedger(store, pepper, writer=what)
                    with ledger.session(f"{what}, pid {os.getpid()}"):
                        summary = load_feed(
                            ledger,
                            args.feed,
                            rejects,
                            batch_size=args.batch_size or BulkLedger.BATCH,
                            show_progress=args.progress,
                            parse_workers=args.parse_workers,
                        )
                        log.info("writing the person indexes and the prefilter")
                        ledger.finish(
                            error_rate=settings.prefilter_error_rate,
                            min_capacity=settings.prefilter_min_capacity,
                            prefilter_path=prefilter_path,
                            progress=lambda n, total: log.info("person index: %d of %d entries", n, total),
                        )
                else:
                    summary = load_feed(
                        Ledger(store, pepper, writer=what),
                        args.feed,
                        rejects,
                        batch_size=args.batch_size or 10_000,
                        show_progress=args.progress,
                        parse_workers=args.parse_workers,
                    )
                    # Refresh a persisted prefilter so the next server start need not replay the journal.
                    if prefilter_path.exists():
                        _refresh_prefilter(store, prefilter_path)
            finally:
                store.close()
    except WriterBusy as exc:
        log.error("cannot load: %s (without --no-wait the load waits for it)", exc)
        return EXIT_WRITER_BUSY
    except StoreFull as exc:
        log.error("load stopped: %s", exc)
        return EXIT_STORE_FULL
    except (StoreError, PepperError) as exc:
        log.error("cannot load: %s", exc)
        return EXIT_STORE
    except OSError as exc:  # the feed or the rejects file cannot be read or written
        if isinstance(exc, BrokenPipeError):
            raise
        if _no_room(exc):
            log.error("load stopped: no room: %s", exc)
            return EXIT_STORE_FULL
        log.error("cannot load: %s", exc)
        return EXIT_STORE
    print(summary.describe())
    return EXIT_REJECTS if summary.rejected else EXIT_OK


def cmd_migrate(args) -> int:
    from .grpc_api.server import open_store
    from .migrate import migrate
    from .pepper import PepperError
    from .store import StoreError, StoreFull
    from .writer_lock import WriterBusy

    try:
        store, _ = open_store(_settings(args), allow_outdated=True)
    except (StoreError, PepperError, OSError) as exc:
        log.error("cannot migrate: %s", exc)
        return EXIT_STORE
    try:
        with store.writing("sanction migrate", wait=not args.no_wait, on_wait=log.warning):
            done = migrate(store)
    except WriterBusy as exc:
        log.error("cannot migrate: %s", exc)
        return EXIT_WRITER_BUSY
    except StoreFull as exc:
        log.error("migration not done (the store is unchanged): %s", exc)
        return EXIT_STORE_FULL
    finally:
        store.close()
    print(done)
    return EXIT_OK


def cmd_backup(args) -> int:
    from .grpc_api.server import open_store

    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        log.error("cannot back up: %s is not an empty directory; refusing to overwrite", dest)
        return EXIT_STORE
    try:
        store, _ = open_store(_settings(args))
    except _store_errors() as exc:
        log.error("cannot back up: %s", exc)
        return EXIT_STORE
    try:
        with store.read() as view:
            seq = view.seq()
        dest.mkdir(parents=True, exist_ok=True)
        # LMDB copies from one read snapshot, so writers go on and the copy is consistent.
        store.env.copy(str(dest), compact=True)
    except _store_errors() as exc:
        log.error("backup not written: %s", exc)
        return EXIT_STORE_FULL if _no_room(exc) else EXIT_STORE
    finally:
        store.close()
    print(f"backup of data version >= {seq} written to {dest / 'data.mdb'}")
    return EXIT_OK


def cmd_digest(args) -> int:
    from .digest import store_digest
    from .grpc_api.server import open_store

    try:
        store, _ = open_store(_settings(args))
    except _store_errors() as exc:
        log.error("cannot digest the store at %s: %s", args.data_dir, exc)
        return EXIT_STORE
    try:
        with store.read() as view:
            digests: dict[str, str | int] = dict(store_digest(view))
            digests["data_version"] = view.seq()
    finally:
        store.close()
    print(json.dumps(digests, indent=2))
    return EXIT_OK


# --------------------------------------------------------------------------- client commands


class _CannotAsk(Exception):
    """A client-side problem before any call (a TLS file that cannot be read): a usage error."""


def _client(args):
    from sanction_service.clients.sanction_client import RestrictionClient, tls_credentials

    credentials = None
    if args.tls_ca:
        try:
            credentials = tls_credentials(args.tls_ca, args.tls_client_cert, args.tls_client_key)
        except OSError as exc:
            raise _CannotAsk(f"cannot read a TLS file: {exc.filename}: {exc.strerror}") from None
    return RestrictionClient(args.target, timeout=args.timeout, credentials=credentials, token=args.token)


def _passenger(args):
    from sanction_service.clients.sanction_client import Passenger

    return Passenger(args.document_type, args.number, args.country, getattr(args, "name", ""))


SERVICE_ERROR_EXITS = {
    "INVALID_ARGUMENT": EXIT_INVALID,
    "OUT_OF_RANGE": EXIT_INVALID,
    "NOT_FOUND": EXIT_NOT_FOUND,
    "UNAVAILABLE": EXIT_UNAVAILABLE,
    "DEADLINE_EXCEEDED": EXIT_UNAVAILABLE,
    "UNAUTHENTICATED": EXIT_NO_PERMISSION,
    "PERMISSION_DENIED": EXIT_NO_PERMISSION,
}


def _run_client(command: str, action: Callable[[], int]) -> int:
    from sanction_service.clients.sanction_client import ServiceError

    try:
        return action()
    except _CannotAsk as exc:
        print(f"sanction {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        extra = [f"{f}: {d}" for f, d in exc.field_violations if f"{f}: {d}" != exc.message]
        message = "; ".join([exc.message or "(no message)", *extra])
        print(f"sanction {command}: {exc.code}: {' '.join(message.split())}", file=sys.stderr)
        return SERVICE_ERROR_EXITS.get(exc.code, EXIT_SERVICE_ERROR)


def cmd_check(args) -> int:
    from sanction_service.clients.sanction_client import Trip

    trip = Trip(args.mode, args.train, args.rail_class or "", args.cabin, args.ship_class or "") if args.mode else None

    def run() -> int:
        with _client(args) as client:
            outcome = client.check(_passenger(args), trip, args.date)
        if args.json:
            _print_json(outcome_json(outcome))
        else:
            print(describe_outcome(outcome))
        return EXIT_DENY if args.exit_code and outcome.decision == "DENY" else EXIT_OK

    return _run_client("check", run)


def cmd_lookup(args) -> int:
    def run() -> int:
        with _client(args) as client:
            answer = client.lookup_person(_passenger(args))
        _print_json(message_json(answer)) if args.json else print(describe_lookup(answer))
        return EXIT_OK

    return _run_client("lookup", run)


def cmd_listing(args) -> int:
    def run() -> int:
        with _client(args) as client:
            listing = client.get_listing(args.listing_id)
        _print_json(message_json(listing)) if args.json else print(describe_listing(listing))
        return EXIT_OK

    return _run_client("listing", run)


def cmd_stats(args) -> int:
    def run() -> int:
        with _client(args) as client:
            stats = client.stats()
        _print_json(message_json(stats)) if args.json else print(describe_stats(stats))
        return EXIT_OK

    return _run_client("stats", run)


def cmd_synth(args) -> int:
    from sanction_service.loaders import synth

    extra = {"start": args.start} if args.start else {}
    try:
        n = synth.write_feed(args.out, args.seed, args.listings, **extra)
        log.info("wrote %d events to %s", n, args.out)
        if args.probes:
            p = synth.write_probes(args.probes, args.seed, args.listings, **extra)
            log.info("wrote %d probes to %s", p, args.probes)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        log.error("cannot write: %s", exc)
        return EXIT_STORE
    return EXIT_OK


# --------------------------------------------------------------------------- output
#
# JSON (--json) is stable for programs: the proto's snake_case field names, every field
# even when zero, empty or unset (unset dates are null), enums as their names, dates as
# YYYY-MM-DD, 64-bit counts as numbers, and GetStats' key/value lists as objects.
# Without --json: a table for people.


def _print_json(value) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def _iso(d) -> str | None:
    return d.isoformat() if d is not None else None


def outcome_json(outcome) -> dict:
    """A CheckOutcome as the JSON of its CheckResponse: every field, in the proto's order."""
    from dataclasses import asdict

    from sanction.v1 import restriction_pb2 as pb

    def plain(d: dict) -> dict:
        return {k: _iso(v) if isinstance(v, date) else v for k, v in d.items()}

    match_fields = [f.name for f in pb.ListingMatch.DESCRIPTOR.fields]
    matches = [plain(asdict(m)) for m in outcome.matches]
    whole = plain({**asdict(outcome), "matches": [{name: m[name] for name in match_fields} for m in matches]})
    return {f.name: whole[f.name] for f in pb.CheckResponse.DESCRIPTOR.fields}


def message_json(message) -> dict:
    """Any message of the API as JSON (the rules above)."""
    out: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        value = getattr(message, fd.name)
        kind = fd.message_type.full_name if fd.message_type else ""
        if fd.is_repeated:
            if kind == "sanction.v1.Count":
                out[fd.name] = {c.key: c.value for c in value}
            else:
                out[fd.name] = [_field_json(fd, v) for v in value]
        elif fd.message_type is not None and not message.HasField(fd.name):
            out[fd.name] = None
        else:
            out[fd.name] = _field_json(fd, value)
    return out


def _field_json(fd, value):
    if fd.message_type is not None:
        if fd.message_type.full_name == "sanction.v1.Date":
            return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        return message_json(value)
    if fd.enum_type is not None:
        known = fd.enum_type.values_by_number.get(value)
        return known.name if known else value
    return value


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned for a terminal (CJK characters count two cells); empty cells as '-'."""
    rows = [[str(cell) if cell not in ("", None) else "-" for cell in row] for row in rows]
    widths = [max(_width(str(c)) for c in column) for column in zip(headers, *rows)]
    lines = ["  ".join(_pad(str(c), w) for c, w in zip(line, widths)).rstrip() for line in [headers, *rows]]
    return "\n".join(lines)


def _pairs(rows: Sequence[tuple[str, object]]) -> str:
    """Name and value per line; a value of None makes the name a heading."""
    width = max(_width(k) for k, _ in rows)
    return "\n".join(k if v is None else f"{_pad(k, width)}  {v if v != '' else '-'}" for k, v in rows)


def _role(role: str, organization: str) -> str:
    return role if role in ("SUBJECT", "ROLE_UNSPECIFIED") or not organization else f"{role} of {organization}"


def describe_outcome(outcome) -> str:
    lines = [
        f"{outcome.decision}  {outcome.masked_document}  restricted={outcome.restricted}  "
        f"data_version={outcome.data_version}" + ("  NAME MISMATCH" if outcome.name_mismatch else "")
    ]
    for m in outcome.matches:
        role = "" if m.role == "SUBJECT" else f" as {m.role} of {m.organization_name}"
        under = f" (listed under {m.matched_document})" if m.matched_document else ""
        flags = (
            " [caused denial]" if m.caused_denial else f" [exempted: {m.exemption_reference}]" if m.exemption_applied else ""
        )
        lines.append(
            f"  {m.list_type}{role}: case {m.case_number}, {m.court}, listed {m.listed_on}, "
            f"expires {m.expires_on or 'no fixed end'}{under}{flags}"
        )
    return "\n".join(lines)


def _date_text(message, name: str) -> str:
    return _field_json(message.DESCRIPTOR.fields_by_name[name], getattr(message, name)) if message.HasField(name) else ""


def _status(message) -> str:
    if message.active:
        return "active"
    return " ".join(filter(None, ["lifted", message.lifted_reason, _date_text(message, "lifted_on")]))


def describe_lookup(answer) -> str:
    from sanction.v1 import restriction_pb2 as pb

    head = f"{answer.masked_document}: {len(answer.listings)} listing(s)  data_version={answer.data_version}"
    if not answer.listings:
        return head
    rows = [
        [
            m.listing_id,
            pb.ListType.Name(m.list_type),
            _role(pb.Role.Name(m.role), m.organization_name),
            m.listed_name,
            m.case_number,
            m.court,
            _date_text(m, "listed_on"),
            _date_text(m, "expires_on") or "no fixed end",
            _status(m),
            m.matched_document,
        ]
        for m in answer.listings
    ]
    return (
        head
        + "\n"
        + table(["LISTING", "TYPE", "ROLE", "NAME", "CASE", "COURT", "LISTED", "EXPIRES", "STATUS", "LISTED UNDER"], rows)
    )


def describe_listing(listing) -> str:
    from sanction.v1 import restriction_pb2 as pb

    def person(p) -> list[str]:
        return [pb.Role.Name(p.role), p.name, pb.DocumentType.Name(p.document_type), p.masked_document, p.country]

    s = listing.subject
    subject = (
        " ".join(
            filter(None, [listing.subject_kind, s.name, pb.DocumentType.Name(s.document_type), s.masked_document, s.country])
        )
        if listing.HasField("subject")
        else ""
    )
    parts = [
        _pairs(
            [
                ("listing", listing.listing_id),
                ("list type", pb.ListType.Name(listing.list_type)),
                ("case", listing.case_number),
                ("court", listing.court),
                ("listed on", _date_text(listing, "listed_on")),
                ("expires on", _date_text(listing, "expires_on") or "no fixed end"),
                ("status", _status(listing)),
                ("subject", subject),
                ("grounds", listing.grounds),
                ("obligation", listing.obligation),
                ("amount unperformed", listing.amount_unperformed),
                ("event ids", ", ".join(listing.event_ids)),
                ("data version", listing.data_version),
            ]
        )
    ]
    headers = ["ROLE", "NAME", "DOCUMENT TYPE", "DOCUMENT", "COUNTRY"]
    if listing.restricted_persons:
        parts.append("restricted persons:\n" + table(headers, [person(p) for p in listing.restricted_persons]))
    if listing.extra_documents:
        parts.append("extra documents:\n" + table(headers, [person(p) for p in listing.extra_documents]))
    if listing.exemptions:
        rows = [
            [
                e.reference,
                e.masked_document,
                ",".join(pb.TravelMode.Name(m) for m in e.modes),
                _date_text(e, "valid_from"),
                _date_text(e, "valid_to"),
            ]
            for e in listing.exemptions
        ]
        parts.append("exemptions:\n" + table(["REFERENCE", "DOCUMENT", "MODES", "FROM", "TO"], rows))
    return "\n\n".join(parts)


def describe_stats(stats) -> str:
    rows: list[tuple[str, object]] = [("active listings", stats.active_listings)]
    rows += [(f"  {c.key}", c.value) for c in stats.active_listings_by_type]
    rows += [("persons restricted", stats.persons_restricted), ("refused checks", None)]
    rows += [(f"  {c.key}", c.value) for c in stats.refused_checks_by_mode]
    rows += [("voluntary performances", stats.voluntary_performances), ("delistings", None)]
    rows += [(f"  {c.key}", c.value) for c in stats.delistings_by_reason]
    rows += [("data version", stats.data_version), ("last event time", stats.last_event_time or "none")]
    return _pairs(rows)


def _nats_settings(args) -> NatsSettings:
    nats = NatsSettings()
    nats.url, nats.stream = args.nats, args.stream
    if getattr(args, "consumer", None):
        nats.consumer = args.consumer
    return nats


def _pepper(settings: Settings) -> bytes:
    from .pepper import load_pepper

    pepper_file = settings.pepper_file or str(Path(settings.data_dir) / PEPPER_FILE)
    return load_pepper(pepper_hex=settings.pepper_hex, pepper_file=pepper_file)


def cmd_publish(args) -> int:
    import asyncio

    from .identity import pepper_fingerprint
    from .pepper import PepperError
    from .replication.connect import NatsError, NatsUnavailable
    from .replication.publisher import publish_feed
    from .replication.stream import StreamRefused

    if not Path(args.feed).is_file():
        log.error("cannot publish: no feed file at %s", args.feed)
        return EXIT_STORE
    try:
        fingerprint = pepper_fingerprint(_pepper(_settings(args)))
        summary = asyncio.run(
            publish_feed(
                args.feed,
                args.rejects or f"{args.feed}.rejects.jsonl",
                _nats_settings(args),
                fingerprint,
                window=args.window,
                give_up_after=args.timeout,
            )
        )
    except (PepperError, StreamRefused, ValueError) as exc:
        log.error("cannot publish: %s", exc)
        return EXIT_STORE
    except NatsUnavailable as exc:
        log.error("publish stopped: %s; run the same feed again (nothing is published twice)", exc)
        return EXIT_NATS
    except NatsError as exc:
        log.error(
            "publish stopped: NATS answered %s: %s (permissions? see docs/REPLICATION.md); run the same feed "
            "again (nothing is published twice)",
            type(exc).__name__,
            exc,
        )
        return EXIT_NATS
    print(summary.describe())
    return EXIT_REJECTS if summary.rejected else EXIT_OK


def cmd_follow(args) -> int:
    import asyncio
    import signal

    from .grpc_api.server import open_store
    from .identity import pepper_fingerprint
    from .ledger import Ledger
    from .pepper import PepperError
    from .replication.connect import NatsError
    from .replication.follower import Follower, default_consumer
    from .replication.snapshot import SnapshotRefused, bootstrap
    from .replication.status import status_path
    from .store import StoreError, StoreFull
    from .writer_lock import WriterBusy

    settings = _settings(args)
    nats = _nats_settings(args)
    consumer = nats.consumer or default_consumer(settings.data_dir)
    what = f"sanction follow {nats.stream} as {consumer}"

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.bootstrap and not (Path(settings.data_dir) / "data.mdb").exists():
            await bootstrap(Path(settings.data_dir), nats, pepper_fingerprint(_pepper(settings)), settings.map_size, stop=stop)
        store, pepper = open_store(settings)
        try:
            with store.writing(what, wait=not args.no_wait, on_wait=log.warning):
                follower = Follower(
                    store,
                    Ledger(store, pepper, writer=what),
                    pepper_fingerprint(pepper),
                    nats,
                    status_path(settings.data_dir),
                    consumer=consumer,
                    batch=args.batch_size,
                )
                return await follower.run(stop)
        finally:
            store.close()

    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=settings.metrics_host)
        log.info("follower metrics on http://%s:%d/metrics", settings.metrics_host, args.metrics_port)
    try:
        return asyncio.run(run())
    except WriterBusy as exc:
        log.error("cannot follow: %s", exc)
        return EXIT_WRITER_BUSY
    except StoreFull as exc:
        log.error("follower stopped: %s", exc)
        return EXIT_STORE_FULL
    except (StoreError, PepperError, SnapshotRefused, ValueError) as exc:
        log.error("refusing to follow: %s", exc)
        return EXIT_STORE
    except NatsError as exc:  # the bootstrap's download (the follower itself retries for ever)
        log.error("bootstrap failed: NATS answered %s: %s; run it again", type(exc).__name__, exc)
        return EXIT_NATS


def cmd_snapshot(args) -> int:
    import asyncio

    from .grpc_api.server import open_store
    from .identity import pepper_fingerprint
    from .pepper import PepperError
    from .replication.connect import NatsError, NatsUnavailable
    from .replication.position import NotAReplica
    from .replication.snapshot import take_snapshot
    from .store import StoreError

    settings = _settings(args)
    try:
        store, pepper = open_store(settings)
    except (StoreError, PepperError) as exc:
        log.error("cannot take a snapshot: %s", exc)
        return EXIT_STORE
    try:
        manifest = asyncio.run(
            take_snapshot(
                store, _nats_settings(args), pepper_fingerprint(pepper), settings.map_size, keep=args.keep, wait=args.timeout
            )
        )
    except (NotAReplica, StoreError, ValueError) as exc:
        log.error("cannot take a snapshot: %s", exc)
        return EXIT_STORE
    except (NatsUnavailable, NatsError) as exc:
        log.error("snapshot not stored: %s: %s", type(exc).__name__, exc)
        return EXIT_NATS
    finally:
        store.close()
    print(json.dumps(manifest, indent=2))
    return EXIT_OK


def cmd_replica_status(args) -> int:
    from dataclasses import asdict

    from .grpc_api.server import open_store
    from .replication.position import read_position, rejections
    from .replication.status import read_status, status_path

    settings = _settings(args)
    store, _ = open_store(settings)
    try:
        with store.read() as view:
            where = read_position(view)
            report = {"data_version": view.seq(), "position": asdict(where) if where else None, "rejected": rejections(view)}
    finally:
        store.close()
    status = read_status(status_path(settings.data_dir))
    report["follower"] = asdict(status) if status else None
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return EXIT_OK


COMMANDS = {
    "publish": cmd_publish,
    "follow": cmd_follow,
    "snapshot": cmd_snapshot,
    "replica-status": cmd_replica_status,
    "serve": cmd_serve,
    "init": cmd_init,
    "load": cmd_load,
    "migrate": cmd_migrate,
    "backup": cmd_backup,
    "digest": cmd_digest,
    "check": cmd_check,
    "lookup": cmd_lookup,
    "listing": cmd_listing,
    "stats": cmd_stats,
    "synth": cmd_synth,
}

if __name__ == "__main__":
    sys.exit(main())
