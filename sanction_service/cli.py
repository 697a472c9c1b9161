"""The `sanction` command: serve, init, load, check, lookup, listing, stats, synth.

Flags default to the environment variables of `settings` (named in each --help).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path

from .settings import PEPPER_FILE, PREFILTER_FILE, Settings, env_str

log = logging.getLogger("sanction")


def _common(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    parser.add_argument("--data-dir", default=defaults.data_dir, help="store directory [SANCTION_DATA_DIR] (%(default)s)")
    parser.add_argument("--pepper-file", default=defaults.pepper_file,
                        help="file holding the secret pepper [SANCTION_PEPPER_FILE] (default <data-dir>/pepper); "
                             "or set SANCTION_PEPPER to hex")
    parser.add_argument("--log-level", default=defaults.log_level, help="[SANCTION_LOG_LEVEL] (%(default)s)")


def _target(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    parser.add_argument("--target", default=defaults.listen, help="server address [SANCTION_LISTEN] (%(default)s)")
    parser.add_argument("--timeout", type=float, default=2.0, help="deadline per call in seconds (%(default)s)")
    parser.add_argument("--token", default=env_str("SANCTION_TOKEN"), help="bearer token [SANCTION_TOKEN]")
    parser.add_argument("--tls-ca", default="", help="PEM CA to verify a TLS server (enables TLS)")
    parser.add_argument("--tls-client-cert", default="", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-client-key", default="", help="PEM client key (mutual TLS)")


def _document(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--document-type", default="RESIDENT_ID",
                        help="RESIDENT_ID, USCC, PASSPORT, HK_MACAO_PERMIT, TAIWAN_PERMIT, "
                             "FOREIGN_PERMANENT_RESIDENT_ID (%(default)s)")
    parser.add_argument("--number", required=True, help="document number")
    parser.add_argument("--country", default="", help="issuing country (ISO alpha-3) for PASSPORT")


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="sanction", description="Defaulter-list restriction service.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve checks over gRPC")
    _common(p, defaults)
    p.add_argument("--listen", default=defaults.listen, help="host:port [SANCTION_LISTEN] (%(default)s)")
    p.add_argument("--metrics-port", type=int, default=defaults.metrics_port,
                   help="Prometheus /metrics port, 0 to disable [SANCTION_METRICS_PORT] (%(default)s)")
    p.add_argument("--workers", type=int, default=defaults.workers,
                   help="server processes sharing the port (SO_REUSEPORT); worker i serves metrics on "
                        "metrics-port + i [SANCTION_WORKERS] (%(default)s)")
    p.add_argument("--pin-cpus", action="store_true", default=defaults.pin_cpus,
                   help="pin each server process to one CPU (worker i to the i-th) [SANCTION_PIN_CPUS=on]")
    p.add_argument("--no-prefilter", action="store_true", help="answer every check from LMDB [SANCTION_PREFILTER=off]")
    p.add_argument("--threads", type=int, default=defaults.grpc_threads, help="gRPC worker threads (%(default)s)")
    p.add_argument("--tls-cert", default=defaults.tls_cert, help="PEM certificate chain: serve TLS [SANCTION_TLS_CERT]")
    p.add_argument("--tls-key", default=defaults.tls_key, help="PEM private key [SANCTION_TLS_KEY]")
    p.add_argument("--tls-client-ca", default=defaults.tls_client_ca,
                   help="PEM CA: require client certificates it signed [SANCTION_TLS_CLIENT_CA]")
    p.add_argument("--tokens-file", default=defaults.tokens_file,
                   help="JSON bearer tokens with roles check/admin [SANCTION_TOKENS_FILE]")

    p = sub.add_parser("init", help="create the pepper file (if none) and an empty store")
    _common(p, defaults)

    p = sub.add_parser("load", help="apply a JSON Lines feed to the store",
                       description="Apply a JSON Lines feed to the store, holding the store's writer lock for the "
                                   "whole feed. Exit codes: 0 every line applied or a duplicate, 1 some lines "
                                   "rejected (see the rejects file), 2 the store or feed cannot be opened (missing, "
                                   "corrupt, another pepper, an unfinished bulk load, not empty for --bulk), 3 another "
                                   "writer holds the store and --no-wait was given, 4 no room: the disk or the LMDB "
                                   "map is full (whole batches only were committed; free space and run again).")
    _common(p, defaults)
    p.add_argument("feed", help="feed file (JSON Lines; the format is in docs/FEED.md)")
    p.add_argument("--rejects", help="where to write rejected lines (default <feed>.rejects.jsonl)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="events per write transaction (default 10000; 50000 with --bulk)")
    p.add_argument("--create", action="store_true", help="create the store if it does not exist")
    p.add_argument("--bulk", action="store_true",
                   help="fast path for an empty store: sorted appends, indexes written at the end; the store is "
                        "marked incomplete (refuses to serve) until it finishes, and running it again after a "
                        "crash starts it over")
    p.add_argument("--no-wait", action="store_true",
                   help="if another writer holds the store, exit at once (code 3) instead of waiting for it")
    p.add_argument("--parse-workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                   help="processes that decode and validate lines while this one writes, each reading its own byte "
                        "ranges of the feed; 0: this process does it all (%(default)s)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")

    p = sub.add_parser("migrate", help="upgrade a store of an older schema in place (one transaction)",
                       description="Upgrade a store written by an older version to this version's schema, in one "
                                   "write transaction: a crash leaves the old store as it was. Exit codes: 0 done "
                                   "(or nothing to do), 2 the store cannot be opened, 3 another writer holds it "
                                   "(--no-wait), 4 no room to write.")
    _common(p, defaults)
    p.add_argument("--no-wait", action="store_true", help="exit at once (code 3) if another writer holds the store")

    p = sub.add_parser("backup", help="consistent, compacted copy of the store while it serves and loads")
    _common(p, defaults)
    p.add_argument("dest", help="empty or new directory to write data.mdb into")

    p = sub.add_parser("digest", help="canonical digest of the store's contents (compare two stores)")
    _common(p, defaults)

    p = sub.add_parser("check", help="ask the server whether a passenger may buy a ticket")
    _target(p, defaults)
    _document(p)
    p.add_argument("--name", default="", help="passenger name as booked")
    p.add_argument("--mode", choices=["FLIGHT", "RAIL", "SHIP"], help="travel mode (omit: restricted at all?)")
    p.add_argument("--train", default="", help="train number, e.g. G1234 (RAIL)")
    p.add_argument("--rail-class", default="", help="e.g. SECOND, FIRST, BUSINESS, SOFT_SLEEPER (RAIL)")
    p.add_argument("--cabin", default="", help="flight cabin (informational)")
    p.add_argument("--ship-class", default="", help="SPECIAL, FIRST, SECOND, THIRD, FOURTH, SEAT (SHIP)")
    p.add_argument("--date", type=date.fromisoformat,
                   help="travel date YYYY-MM-DD, yesterday to 366 days ahead (default: today, Asia/Shanghai)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")

    p = sub.add_parser("lookup", help="every listing (active and lifted) naming a document")
    _target(p, defaults)
    _document(p)

    p = sub.add_parser("listing", help="show one listing by listing_id")
    _target(p, defaults)
    p.add_argument("listing_id")

    p = sub.add_parser("stats", help="the list's figures: active listings, refusals, performances")
    _target(p, defaults)

    p = sub.add_parser("synth", help="write a deterministic synthetic feed (and a probe file)")
    p.add_argument("--seed", type=int, default=1, help="(%(default)s)")
    p.add_argument("--listings", type=int, default=20_000, help="LIST events to generate (%(default)s)")
    p.add_argument("--out", required=True, help="feed file to write")
    p.add_argument("--probes", help="also write probe documents with their expected status here")
    p.add_argument("--start", type=date.fromisoformat, default=None,
                   help="feed start date: listings fall in the 3 years before it (generator default 2024-01-01)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return COMMANDS[args.command](args)


def _settings(args) -> Settings:
    settings = Settings()
    settings.data_dir = args.data_dir
    settings.pepper_file = args.pepper_file
    return settings


def cmd_serve(args) -> int:
    from .grpc_api.auth import TokenFileError
    from .grpc_api.server import serve
    from .pepper import PepperError
    from .store import StoreError

    settings = _settings(args)
    settings.listen = args.listen
    settings.metrics_port = args.metrics_port
    settings.grpc_threads = args.threads
    settings.pin_cpus = args.pin_cpus
    settings.tls_cert, settings.tls_key, settings.tls_client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    settings.tokens_file = args.tokens_file
    if args.no_prefilter:
        settings.prefilter_enabled = False
    try:
        return serve(settings, workers=args.workers)
    except (StoreError, PepperError, TokenFileError, OSError) as exc:
        log.error("refusing to serve: %s", exc)
        return 2


def cmd_init(args) -> int:
    from .grpc_api.server import open_store
    from .pepper import create_pepper_file

    settings = _settings(args)
    if not settings.pepper_file and not settings.pepper_hex:
        path = Path(settings.data_dir) / PEPPER_FILE
        if create_pepper_file(path):
            log.info("created a new pepper in %s (keep it secret; the store is useless without it)", path)
    store, _ = open_store(settings, create=True)
    with store.read() as view:
        log.info("store at %s is ready (data version %d)", settings.data_dir, view.seq())
    store.close()
    return 0


# Exit codes of the commands that write a store (README "Exit codes").
EXIT_OK, EXIT_REJECTS, EXIT_STORE, EXIT_WRITER_BUSY, EXIT_STORE_FULL = 0, 1, 2, 3, 4


def cmd_load(args) -> int:
    from loaders.feed import load_feed

    from .bulk import BulkLedger
    from .grpc_api.server import open_store
    from .ledger import Ledger
    from .pepper import PepperError
    from .prefilter import Prefilter, PrefilterUnusable
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
                    ledger = BulkLedger(store, pepper, writer=what)
                    with ledger.session(f"{what}, pid {os.getpid()}"):
                        summary = load_feed(ledger, args.feed, rejects, batch_size=args.batch_size or BulkLedger.BATCH,
                                            show_progress=args.progress, parse_workers=args.parse_workers)
                        log.info("writing the person indexes and the prefilter")
                        ledger.finish(error_rate=settings.prefilter_error_rate,
                                      min_capacity=settings.prefilter_min_capacity, prefilter_path=prefilter_path,
                                      progress=lambda n, total: log.info("person index: %d of %d entries", n, total))
                else:
                    summary = load_feed(Ledger(store, pepper, writer=what), args.feed, rejects,
                                        batch_size=args.batch_size or 10_000, show_progress=args.progress,
                                        parse_workers=args.parse_workers)
                    # Refresh a persisted prefilter so the next server start need not replay the journal.
                    with store.read() as view:
                        try:
                            prefilter = Prefilter.load(prefilter_path, view)
                            prefilter.catch_up(view)
                            prefilter.save_or_warn(prefilter_path, view)
                        except PrefilterUnusable:
                            pass  # the server rebuilds it at start
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
    except (StoreError, PepperError) as exc:
        log.error("cannot migrate: %s", exc)
        return EXIT_STORE
    try:
        with store.writing("sanction migrate", wait=not args.no_wait, on_wait=log.warning):
            print(migrate(store))
    except WriterBusy as exc:
        log.error("cannot migrate: %s", exc)
        return EXIT_WRITER_BUSY
    except StoreFull as exc:
        log.error("migration not done (the store is unchanged): %s", exc)
        return EXIT_STORE_FULL
    finally:
        store.close()
    return EXIT_OK


def cmd_backup(args) -> int:
    from .grpc_api.server import open_store

    dest = Path(args.dest)
    if dest.exists() and any(dest.iterdir()):
        log.error("%s is not empty; refusing to overwrite", dest)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    store, _ = open_store(_settings(args))
    with store.read() as view:
        seq = view.seq()
    # LMDB copies from one read snapshot, so writers go on and the copy is consistent.
    store.env.copy(str(dest), compact=True)
    store.close()
    print(f"backup of data version >= {seq} written to {dest / 'data.mdb'}")
    return 0


def cmd_digest(args) -> int:
    from .digest import store_digest
    from .grpc_api.server import open_store

    store, _ = open_store(_settings(args))
    with store.read() as view:
        digests = store_digest(view)
        digests["data_version"] = view.seq()
    store.close()
    print(json.dumps(digests, indent=2))
    return 0


def _client(args):
    from clients.sanction_client import RestrictionClient, tls_credentials

    credentials = tls_credentials(args.tls_ca, args.tls_client_cert, args.tls_client_key) if args.tls_ca else None
    return RestrictionClient(args.target, timeout=args.timeout, credentials=credentials, token=args.token)


def _passenger(args):
    from clients.sanction_client import Passenger

    return Passenger(args.document_type, args.number, args.country, getattr(args, "name", ""))


def _run_client(action) -> int:
    from clients.sanction_client import ServiceError

    try:
        return action()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for field, description in exc.field_violations:
            if f"{field}: {description}" != exc.message:
                print(f"  {field}: {description}", file=sys.stderr)
        return 2


def cmd_check(args) -> int:
    from clients.sanction_client import Trip

    trip = Trip(args.mode, args.train, args.rail_class, args.cabin, args.ship_class) if args.mode else None

    def run() -> int:
        with _client(args) as client:
            outcome = client.check(_passenger(args), trip, args.date)
        if args.json:
            print(json.dumps(outcome, default=_jsonable, ensure_ascii=False, indent=2))
            return 0
        print(f"{outcome.decision}  {outcome.masked_document}  restricted={outcome.restricted}  "
              f"data_version={outcome.data_version}" + ("  NAME MISMATCH" if outcome.name_mismatch else ""))
        for m in outcome.matches:
            role = "" if m.role == "SUBJECT" else f" as {m.role} of {m.organization_name}"
            flags = " [caused denial]" if m.caused_denial else (" [exempted]" if m.exemption_applied else "")
            print(f"  {m.list_type}{role}: case {m.case_number}, {m.court}, listed {m.listed_on}, "
                  f"expires {m.expires_on or 'no fixed end'}{flags}")
        return 0

    return _run_client(run)


def _jsonable(value):
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value))


def _print_message(message) -> None:
    from google.protobuf import json_format

    print(json.dumps(json_format.MessageToDict(message), ensure_ascii=False, indent=2))


def cmd_lookup(args) -> int:
    def run() -> int:
        with _client(args) as client:
            _print_message(client.lookup_person(_passenger(args)))
        return 0

    return _run_client(run)


def cmd_listing(args) -> int:
    def run() -> int:
        with _client(args) as client:
            _print_message(client.get_listing(args.listing_id))
        return 0

    return _run_client(run)


def cmd_stats(args) -> int:
    def run() -> int:
        with _client(args) as client:
            _print_message(client.stats())
        return 0

    return _run_client(run)


def cmd_synth(args) -> int:
    from loaders import synth

    extra = {"start": args.start} if args.start else {}
    n = synth.write_feed(args.out, args.seed, args.listings, **extra)
    log.info("wrote %d events to %s", n, args.out)
    if args.probes:
        p = synth.write_probes(args.probes, args.seed, args.listings, **extra)
        log.info("wrote %d probes to %s", p, args.probes)
    return 0


COMMANDS = {
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
