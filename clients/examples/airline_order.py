"""An airline reservation caller: one booking (PNR), several passengers, one flight.

Streams the passengers' checks over StreamCheckRestriction, matching answers by
request id, as a reservation system holding one long-lived stream would. A missing or
failed answer holds the ticket: an error is never read as ALLOW.

    python -m clients.examples.airline_order --flight CA1501 --cabin Y \
        --passenger RESIDENT_ID:110105198001010011:张伟 --passenger PASSPORT:E12345678:王芳
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from clients.examples.rail_order import parse_passenger
from clients.sanction_client import DEFAULT_TARGET, Passenger, RestrictionClient, ServiceError, Trip, check_request


def ticket(client: RestrictionClient, passengers: list[Passenger], trip: Trip, travel_date: date | None) -> int:
    by_id = {f"pax-{i}": p for i, p in enumerate(passengers, 1)}
    requests = ((rid, check_request(p, trip, travel_date)) for rid, p in by_id.items())
    answers = dict(client.check_stream(requests, timeout=10))
    refused = 0
    for rid, passenger in by_id.items():
        result = answers.get(rid)
        if result is None or isinstance(result, ServiceError):
            refused += 1
            print(f"HOLD  {rid} {passenger.name or '-'}: no answer ({result}); not ticketed")
        elif result.allowed:
            print(f"TICKET {rid} {passenger.name or '-'} {result.masked_document}")
        else:
            refused += 1
            print(f"DENY  {rid} {passenger.name or '-'} {result.masked_document}: {result.reason()}")
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--flight", required=True, help="flight number (informational)")
    parser.add_argument("--cabin", default="Y")
    parser.add_argument("--date", type=date.fromisoformat, help="travel date (default today)")
    parser.add_argument("--passenger", action="append", required=True, type=parse_passenger,
                        help="TYPE:NUMBER[:NAME], repeatable")
    args = parser.parse_args(argv)
    with RestrictionClient(args.target) as client:
        try:
            refused = ticket(client, args.passenger, Trip("FLIGHT", cabin=args.cabin), args.date)
        except ServiceError as exc:
            print(f"booking held: restriction service gave no answer ({exc}); nothing ticketed", file=sys.stderr)
            return 2
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
