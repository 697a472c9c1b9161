"""A rail ticketing caller (12306-style): one order, several passengers, one train.

Checks all passengers in one BatchCheckRestriction call. A passenger whose check failed
is not sold a ticket (an error is never read as ALLOW); the others are unaffected.

    python -m sanction_service.clients.examples.rail_order --train G1234 --rail-class SECOND \
        --passenger RESIDENT_ID:110105198001010011:张伟 --passenger RESIDENT_ID:440305199009090882

The server is --target, by default SANCTION_LISTEN (as for `sanction check`). Exit codes:
0 every passenger sold, 1 at least one passenger denied or held, 69 the service gave no
answer at all (nothing sold), 64 a command line it does not accept, 78 a bad SANCTION_*
variable.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip

from sanction_service.cli import (
    DOCUMENT_TYPES,
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    RAIL_CLASSES,
    UsageParser,
    enum_type,
    iso_date,
)
from sanction_service.settings import Settings, SettingsError

EXIT_ALL_SOLD, EXIT_SOME_REFUSED = 0, 1


def parse_passenger(text: str) -> Passenger:
    doc_type, _, rest = text.partition(":")
    number, _, name = rest.partition(":")
    if not number:
        raise argparse.ArgumentTypeError(f"{text!r} is not TYPE:NUMBER[:NAME]")
    return Passenger(enum_type("document type", DOCUMENT_TYPES)(doc_type), number, name=name)


def sell(client: RestrictionClient, passengers: list[Passenger], trip: Trip, travel_date: date | None) -> int:
    results = client.check_batch(passengers, trip, travel_date)
    refused = 0
    for passenger, result in zip(passengers, results):
        if isinstance(result, ServiceError):
            refused += 1
            print(f"HOLD  {passenger.name or '-'}: cannot check ({result.code}: {result.message}); not sold")
        elif result.allowed:
            note = " (restricted, but this seat is not)" if result.restricted else ""
            print(f"SELL  {passenger.name or '-'} {result.masked_document}{note}")
        else:
            refused += 1
            print(f"DENY  {passenger.name or '-'} {result.masked_document}: {result.reason()}")
    return refused


def add_common(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    """The options both example callers share, named and defaulted as `sanction check` does."""
    parser.add_argument("--target", default=defaults.listen, help="server address host:port [SANCTION_LISTEN] (%(default)s)")
    parser.add_argument("--date", type=iso_date, help="travel date YYYY-MM-DD (default: today, Asia/Shanghai)")
    parser.add_argument(
        "--passenger",
        action="append",
        required=True,
        type=parse_passenger,
        help="TYPE:NUMBER[:NAME], repeatable; TYPE one of " + ", ".join(DOCUMENT_TYPES),
    )


def settings_or_exit() -> Settings:
    try:
        return Settings()
    except SettingsError as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def main(argv: list[str] | None = None) -> int:
    defaults = settings_or_exit()
    parser = UsageParser(prog="python -m sanction_service.clients.examples.rail_order", description=__doc__.split("\n\n")[0])
    add_common(parser, defaults)
    parser.add_argument("--train", required=True, help="e.g. G1234, D301, K1")
    rail_class = enum_type("rail class", RAIL_CLASSES)
    parser.add_argument(
        "--rail-class",
        type=rail_class,
        metavar="CLASS",
        help="seat class, one of " + ", ".join(RAIL_CLASSES) + ", any letter case",
    )
    parser.add_argument(
        "--class", dest="old_class", type=rail_class, metavar="CLASS", help="deprecated: the same as --rail-class"
    )
    args = parser.parse_args(argv)
    with RestrictionClient(args.target) as client:
        try:
            trip = Trip("RAIL", args.train, args.rail_class or args.old_class or "")
            refused = sell(client, args.passenger, trip, args.date)
        except ServiceError as exc:
            print(f"order held: restriction service gave no answer ({exc}); nothing sold", file=sys.stderr)
            return EXIT_UNAVAILABLE
    return EXIT_SOME_REFUSED if refused else EXIT_ALL_SOLD


if __name__ == "__main__":
    sys.exit(main())
