"""BatchCheckRestriction's fast path: the serialized answer for a whole batch, equal byte
for byte to the reference (`RestrictionServicer.answer_items`: `to_query`, `check_many`,
`check_response` item by item, then the message serialized).

What it skips, and why that is safe:
- Reading each request's fields through protobuf objects. The common item of a batch is a
  resident ID with no country, an optional name, and the same trip and travel date as
  the others. Its canonical serialization (protobuf writes fields in number order) is a
  fixed document prefix, the 18-character number, the name field, then bytes equal to
  every other such item's: that shape is recognised on the item's own serialized bytes,
  and everything else (another document type, a country, a different trip, unknown
  fields) goes through the reference unchanged.
- Building a result object and a message for an item the prefilter rules out: its
  answer is ALLOW, not restricted, no matches, the masked number, the batch's data
  version and day. Those items are written from a per-batch template made by the
  reference's own `check_response`, split around the masked number.
The checker answers every item of the batch from one snapshot (`check_plain_batch`).
tests/test_batch_fast.py compares the two paths on large random batches.
"""

from __future__ import annotations

from google.rpc import status_pb2
from sanction.v1 import restriction_pb2 as pb

from ..checker import CheckQuery, CheckResult, PlainBatch
from ..decisions import ALLOW, Decision
from ..identity import InvalidDocument
from ..policy import InvalidTrip
from ..settings import MAX_NAME_CHARS
from ..text import text_problem
from . import errors
from .convert import InvalidField, check_response, to_date, to_query, to_trip

CALLER_ERRORS = (InvalidDocument, InvalidTrip, InvalidField)

_NUMBER = "0" * 18
_SAMPLE = pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=_NUMBER)).SerializeToString()
# The serialized document of a resident ID without a country, up to its number.
_DOC_PREFIX = _SAMPLE[: _SAMPLE.index(_NUMBER.encode())]
_NUMBER_END = len(_DOC_PREFIX) + 18
_NAME_TAG = pb.CheckRequest(name="x").SerializeToString()[0]
_PLACEHOLDER = "\x01" * 18  # never a masked number: control characters


def plain_shape(raw: bytes) -> tuple[str, bytes, bytes] | None:
    """(number, name bytes, the rest) of an item of the common shape, else None."""
    if not raw.startswith(_DOC_PREFIX):
        return None
    end = _NUMBER_END
    name = b""
    if len(raw) > end and raw[end] == _NAME_TAG:
        length = raw[end + 1] if len(raw) > end + 1 else 0x80
        if length & 0x80:  # a name over 127 bytes: leave it to the reference
            return None
        name = raw[end + 2:end + 2 + length]
        end += 2 + length
    try:
        number = raw[len(_DOC_PREFIX):_NUMBER_END].decode("ascii")
    except UnicodeDecodeError:
        return None
    return number, name, raw[end:]


def answer_batch(checker, checks) -> bytes | status_pb2.Status:
    """The serialized BatchCheckResponse for `checks`, or one Status when nothing can be
    answered (not ready, store unreadable), exactly as the reference would."""
    plain_positions: list[int] = []
    numbers: list[str] = []
    names: list[str] = []
    others: list[tuple[int, CheckQuery]] = []
    answers: dict[int, object] = {}
    common_rest = None
    for position, check in enumerate(checks):
        shape = plain_shape(check.SerializeToString())
        if shape is not None:
            number, name_bytes, rest = shape
            if common_rest is None:
                common_rest = rest
            if rest == common_rest:
                name = name_bytes.decode("utf-8", "surrogatepass") if name_bytes else ""
                if not name or text_problem(name, MAX_NAME_CHARS, required=False) is None:
                    plain_positions.append(position)
                    numbers.append(number)
                    names.append(name)
                    continue
        try:
            others.append((position, to_query(check)))
        except CALLER_ERRORS as exc:
            answers[position] = errors.bad_request(exc.field, exc.reason)
    trip = travel_date = None
    if plain_positions:
        first = checks[plain_positions[0]]
        try:
            trip = to_trip(first.trip) if first.HasField("trip") else None
            travel_date = to_date(first.travel_date, "travel_date") if first.HasField("travel_date") else None
        except InvalidField as exc:
            # The reference's to_query fails each of them alike, before the checker.
            status = errors.bad_request(exc.field, exc.reason)
            answers.update((p, status) for p in plain_positions)
            plain_positions, numbers, names = [], [], []
    outcome = errors.guard(lambda: checker.check_plain_batch(
        plain_positions, numbers, names, trip, travel_date, others=others))
    if isinstance(outcome, status_pb2.Status):
        return outcome
    return _serialize(len(checks), plain_positions, numbers, outcome, answers)


def _serialize(count: int, plain_positions: list[int], numbers: list[str], batch: PlainBatch,
               answers: dict[int, object]) -> bytes:
    never = set(batch.never_listed)
    template = _allow_template(batch) if never else None
    parts: list[bytes] = []
    number_at = dict(zip(plain_positions, numbers))
    for position in range(count):
        if position in never:
            number = number_at[position]
            parts.append(template[0] + (number[:10] + "****" + number[14:]).encode() + template[1])
            continue
        answer = answers.get(position)
        if answer is None:
            result = batch.results[position]
            answer = check_response(result) if isinstance(result, CheckResult) else \
                errors.bad_request(result.field, result.reason)
        if isinstance(answer, status_pb2.Status):
            errors.count_error(answer)
            item = pb.BatchCheckItem(error=answer)
        else:
            item = pb.BatchCheckItem(result=answer)
        # A repeated field's elements serialize one after another: one item's bytes are
        # those of a response holding only it.
        parts.append(pb.BatchCheckResponse(items=[item]).SerializeToString())
    return b"".join(parts)


def _allow_template(batch: PlainBatch) -> tuple[bytes, bytes]:
    """The bytes of a never-listed item before and after its masked number."""
    result = CheckResult(Decision(ALLOW, False), _PLACEHOLDER, batch.seq, batch.day, batch.mode)
    raw = pb.BatchCheckResponse(items=[pb.BatchCheckItem(result=check_response(result))]).SerializeToString()
    before, after = raw.split(_PLACEHOLDER.encode())
    return before, after
