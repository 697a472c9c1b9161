"""CheckRestriction's fast path: the answer read straight from the request's bytes when
they hold the common check (a resident ID of 18 ASCII bytes, with no country or CHN, an
optional name, a trip and travel date written as protobuf writes them), without building
the request message, its query through `to_query`, or the `_answer` list machinery.

The answer is the reference's (`RestrictionServicer._answer`): the same CheckQuery goes to
the same `Checker.check_many`, and its result through the same `check_response`. Every
other request, and any the fast reading doubts (a bad trip or date), goes back to the
reference whole: None. tests/test_unary_fast.py
compares the two on random and mutated requests, byte for byte.
"""

from __future__ import annotations

from google.rpc import status_pb2

from ..checker import CheckQuery, CheckResult
from . import errors
from .batch_fast import plain_item, shared_fields
from .convert import InvalidField, check_response, to_date, to_trip


def answer_check(checker, raw: bytes) -> tuple[bytes, CheckResult] | status_pb2.Status | None:
    """The serialized CheckResponse and its result; a Status to end the call with (the
    checker cannot answer at all, or the item is a caller error); None for the reference
    to answer."""
    item = plain_item(raw)
    if item is None:
        return None
    number, name, rest, _ = item
    if not number.isascii():
        return None
    shared = shared_fields(rest)
    if shared is None:
        return None
    try:
        trip = to_trip(shared.trip) if shared.HasField("trip") else None
        travel_date = to_date(shared.travel_date, "travel_date") if shared.HasField("travel_date") else None
    except InvalidField:
        return None
    query = CheckQuery("RESIDENT_ID", number.decode(), "", name, trip, travel_date)
    outcome = errors.guard(lambda: checker.check_many([query], count_refusals=False))
    if isinstance(outcome, status_pb2.Status):
        return outcome
    result = outcome[0]
    if not isinstance(result, CheckResult):  # the reference's answer to a caller error
        status = errors.bad_request(result.field, result.reason)
        errors.count_error(status)
        return status
    return check_response(result).SerializeToString(), result
