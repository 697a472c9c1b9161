"""A rail ticketing caller (12306-style): one order, several passengers, one train.

Checks all passengers in one BatchCheckRestriction call. A passenger whose check failed
is not sold a ticket (an error is never read as ALLOW); the others are unaffected.

    python -m clients.examples.rail_order --train G1234 --class SECOND \
        --passenger RESIDENT_ID:110105198001010011:张伟 --passenger RESIDENT_ID:440305199009090882
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from clients.sanction_client import DEFAULT_TARGET, Passenger, RestrictionClient, ServiceError, Trip


def parse_passenger(text: str) -> Passenger:
    doc_type, number, *rest = text.split(":")
    return Passenger(doc_type, number, name=rest[0] if rest else "")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--train", required=True, help="e.g. G1234, D301, K1")
    parser.add_argument("--class", dest="rail_class", default="", help="e.g. SECOND, FIRST, SOFT_SLEEPER")
    parser.add_argument("--date", type=date.fromisoformat, help="travel date (default today)")
    parser.add_argument("--passenger", action="append", required=True, type=parse_passenger,
                        help="TYPE:NUMBER[:NAME], repeatable")
    args = parser.parse_args(argv)
    with RestrictionClient(args.target) as client:
        try:
            refused = sell(client, args.passenger, Trip("RAIL", args.train, args.rail_class), args.date)
        except ServiceError as exc:
            print(f"order held: restriction service gave no answer ({exc}); nothing sold", file=sys.stderr)
            return 2
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
