"""An airline reservation caller: one booking (PNR), several passengers, one flight.

Streams the passengers' checks over StreamCheckRestriction, matching answers by
request id, as a reservation system holding one long-lived stream would. A missing or
failed answer holds the ticket: an error is never read as ALLOW.

    python -m sanction_service.clients.examples.airline_order --flight CA1501 --cabin Y \
        --passenger RESIDENT_ID:110105198001010011:张伟 --passenger PASSPORT:E12345678:王芳

The server is --target, by default SANCTION_LISTEN (as for `sanction check`). Exit codes:
0 every passenger ticketed, 1 at least one passenger denied or held, 69 the service gave
no answer at all (nothing ticketed), 64 a command line it does not accept, 78 a bad
SANCTION_* variable.
"""

from __future__ import annotations

import sys
from datetime import date

from sanction_service.clients.examples.rail_order import EXIT_ALL_SOLD, EXIT_SOME_REFUSED, add_common, settings_or_exit
from sanction_service.clients.sanction_client import Passenger, RestrictionClient, ServiceError, Trip, check_request

from sanction_service.cli import EXIT_UNAVAILABLE, UsageParser


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
    defaults = settings_or_exit()
    parser = UsageParser(prog="python -m sanction_service.clients.examples.airline_order", description=__doc__.split("\n\n")[0])
    add_common(parser, defaults)
    parser.add_argument("--flight", required=True, help="flight number (informational)")
    parser.add_argument("--cabin", default="Y", help="cabin (informational: every cabin is restricted) (%(default)s)")
    args = parser.parse_args(argv)
    with RestrictionClient(args.target) as client:
        try:
            refused = ticket(client, args.passenger, Trip("FLIGHT", cabin=args.cabin), args.date)
        except ServiceError as exc:
            print(f"booking held: restriction service gave no answer ({exc}); nothing ticketed", file=sys.stderr)
            return EXIT_UNAVAILABLE
    return EXIT_SOME_REFUSED if refused else EXIT_ALL_SOLD


if __name__ == "__main__":
    sys.exit(main())
