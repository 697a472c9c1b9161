"""BatchCheckRestriction's fast path: the serialized answer for a whole batch, equal byte
for byte to the reference (`RestrictionServicer.reference_batch`: `to_query`,
`check_many`, `check_response` item by item, then the message serialized).

What it skips, and why that is safe:
- Reading each request's fields through protobuf objects. The common item of a batch is a
  resident ID (no country, or CHN), an optional name, and the same trip and travel date
  as the others. Protobuf serializes a message's fields in number order, so such an
  item's bytes are a fixed document prefix, the 18-byte number, the name field, then
  bytes equal to every other such item's (trip, travel date). That shape is recognised
  on the bytes; everything else (another document type or country, another trip,
  unknown fields) goes through the reference unchanged. When every item of the batch
  has the shape and the same length (no names, or one name), the whole request is a
  table of equal rows and the numbers are read as one of its columns.
- Parsing the request at all, for such a table: it is read from the client's bytes as
  they arrived (`_client_table`), when nothing in them could read otherwise to a parse
  (ASCII numbers; the trip and date bytes exactly as protobuf writes them, so no field
  repeated, reordered or overriding the document or name). Any other request is parsed,
  re-serialized in protobuf's own order, and read as above.
- Building a result object and a message for an item the prefilter rules out: its answer
  is ALLOW, not restricted, no matches, the masked number, the batch's data version and
  day. Those items are written from a per-batch template made by the reference's own
  `check_response`, split around the masked number, a whole run of them at a time.
The checker answers every item of the batch from one snapshot (`check_plain_batch`).
tests/test_batch_fast.py compares the two paths on large random batches, and on batches
written the ways a hand-written client or an attacker could (repeated, reordered and
unknown fields, bad UTF-8, truncation).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from sanction.v1 import restriction_pb2 as pb

from ..checker import CheckQuery, CheckResult, PlainBatch
from ..decisions import ALLOW, Decision
from ..identity import InvalidDocument
from ..policy import InvalidTrip
from ..settings import MAX_BATCH, MAX_NAME_CHARS
from ..text import text_problem
from . import errors
from .convert import InvalidField, check_response, to_date, to_query, to_trip

# Answers already settled, by position in the batch: a result, or the item's own error.
Answers: TypeAlias = "dict[int, pb.CheckResponse | status_pb2.Status]"

CALLER_ERRORS = (InvalidDocument, InvalidTrip, InvalidField)

_NUMBER = "0" * 18


def _document_shape(country: str) -> tuple[bytes, bytes]:
    """The serialized CheckRequest's bytes before and after the number of a resident ID
    with this country (as protobuf itself writes them)."""
    raw = pb.CheckRequest(document=pb.Document(type=pb.RESIDENT_ID, number=_NUMBER, country=country)).SerializeToString()
    before, after = raw.split(_NUMBER.encode())
    return before, after


# A resident ID with no country, or with CHN spelled as the normaliser writes it; the
# length prefixes inside make the number exactly 18 bytes of UTF-8.
_SHAPES = (_document_shape(""), _document_shape("CHN"))
_NAME_TAG = pb.CheckRequest(name="x").SerializeToString()[:1]
_ITEM_TAG = pb.BatchCheckRequest(checks=[pb.CheckRequest()]).SerializeToString()[:1]
_PLACEHOLDER = "\x01" * 18  # never a masked number: control characters
_STAR = ord("*")


def answer_batch(checker, raw: bytes) -> tuple[bytes, list, int] | status_pb2.Status:
    """The serialized BatchCheckResponse for the serialized request `raw` (as the client
    sent it), the check results in it and the number of ALLOW answers given without one
    (never listed), for the caller to count once it has sent them; or one Status when
    nothing can be answered (too many items, not ready, store unreadable), exactly as the
    reference would. Raises DecodeError when `raw` is no BatchCheckRequest at all, as
    gRPC's own parse of the request did."""
    others: list[tuple[int, CheckQuery]] = []
    answers: Answers = {}
    shared: pb.CheckRequest | None
    table = _client_table(raw)
    if table is not None:
        count, numbers, name, shared = table
        if count > MAX_BATCH:
            return too_many_checks()
        plain_positions, names = list(range(count)), [name] * count
    else:
        request = pb.BatchCheckRequest.FromString(raw)
        checks = request.checks
        count = len(checks)
        if count > MAX_BATCH:
            return too_many_checks()
        # Protobuf's own bytes for the message: fields in order, repeats merged.
        raw = request.SerializeToString()
        uniform = _uniform_numbers(raw, count)
        if uniform is not None:
            numbers, name = uniform[0], uniform[1]
            plain_positions, names = list(range(count)), [name] * count
        else:
            plain_positions, numbers, names, others, answers = _sort_mostly_plain(raw, checks)
        shared = checks[plain_positions[0]] if plain_positions else None
    trip = travel_date = None
    if shared is not None:
        try:
            trip = to_trip(shared.trip) if shared.HasField("trip") else None
            travel_date = to_date(shared.travel_date, "travel_date") if shared.HasField("travel_date") else None
        except InvalidField as exc:
            # The reference's to_query fails each of them alike, before the checker.
            status = errors.bad_request(exc.field, exc.reason)
            answers.update((p, status) for p in plain_positions)
            plain_positions, numbers, names = [], [], []
    outcome = errors.guard(lambda: checker.check_plain_batch(plain_positions, numbers, names, trip, travel_date, others=others))
    if isinstance(outcome, status_pb2.Status):
        return outcome
    return (_serialize(count, numbers, outcome, answers), list(outcome.results.values()), len(outcome.never_listed))


def too_many_checks() -> status_pb2.Status:
    return errors.bad_request("checks", f"a batch holds at most {MAX_BATCH} checks")


def _client_table(raw: bytes) -> tuple[int, list[bytes], str, pb.CheckRequest] | None:
    """The uniform table reading (`_uniform_numbers`) straight from the client's bytes,
    without parsing the message: (item count, numbers, the shared name, a message holding
    the shared trip and travel date). Only where a parse could not read the bytes
    otherwise: numbers in ASCII (valid UTF-8, as protobuf requires of a string), and the
    bytes after the name exactly what protobuf writes for their fields
    (`shared_fields`). Anything else is parsed as a whole (None)."""
    uniform = _uniform_numbers(raw, None)
    if uniform is None or not uniform[3].isascii():
        return None
    numbers, name, rest, _ = uniform
    shared = shared_fields(rest)
    return None if shared is None else (len(numbers), numbers, name, shared)


# The bytes after the name that items carried, and what they hold (False: not protobuf's
# own writing of them). A client sends few distinct trips and dates. Only short ones are
# kept: a CheckRestriction may carry megabytes of unknown fields there, and a thousand of
# them held would be gigabytes.
_SHARED: dict[bytes, pb.CheckRequest | bool] = {}
_SHARED_MAX = 1024
_SHARED_BYTES = 256


def shared_fields(rest: bytes) -> pb.CheckRequest | None:
    """The trip and travel date held in the bytes after an item's name, when they are
    exactly protobuf's serialization of those fields: no document or name again (a parse
    would merge or replace them), no field repeated or out of order. Unknown fields stay
    (the reference ignores them too).

    They are parsed where a batch holds them, inside an item: protobuf's nesting limit
    counts from the top, so unknown groups nested to the limit parse alone but not in a
    batch (and a check alone, one level up, parses whatever an item does)."""
    known = _SHARED.get(rest)
    if known is None:
        try:
            parsed = pb.BatchCheckRequest.FromString(_ITEM_TAG + _varint(len(rest)) + rest).checks[0]
        except DecodeError:
            parsed = None
        fits = parsed is not None and not parsed.HasField("document") and not parsed.name and parsed.SerializeToString() == rest
        known = parsed if fits and parsed is not None else False
        if len(rest) <= _SHARED_BYTES:
            if len(_SHARED) >= _SHARED_MAX:
                _SHARED.clear()
            _SHARED[rest] = known
    return None if known is False else known  # type: ignore[return-value]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def plain_item(raw: bytes) -> tuple[bytes, str, bytes, int] | None:
    """(number, name, the bytes after them, where the number starts) of an item of the
    common shape, else None."""
    for before, after in _SHAPES:
        start = len(before)
        if raw.startswith(before) and raw.startswith(after, start + 18):
            number, end = raw[start : start + 18], start + 18 + len(after)
            break
    else:
        return None
    name = ""
    if raw.startswith(_NAME_TAG, end):
        if end + 2 > len(raw):  # cut short (only a client's bytes can be)
            return None
        length = raw[end + 1]
        if length >= 0x80:  # a name of 128 bytes or more is left to the reference
            return None
        if end + 2 + length > len(raw):
            return None
        try:
            name = raw[end + 2 : end + 2 + length].decode()
        except UnicodeDecodeError:  # only from a client's bytes: protobuf refuses it too
            return None
        end += 2 + length
        if text_problem(name, MAX_NAME_CHARS, required=False) is not None:
            return None
    return number, name, raw[end:], start


def _uniform_numbers(raw: bytes, count: int | None) -> tuple[list[bytes], str, bytes, bytes] | None:
    """When every item is of the common shape with the same bytes but its number, the
    request is equal-length rows (`count` of them, or as many as the length says when
    None): the numbers, the shared name and the bytes after it, and the numbers' column
    joined; else None."""
    if count == 0 or len(raw) < 2 or not raw.startswith(_ITEM_TAG):
        return None
    width, length_bytes = raw[1], 1
    if width >= 0x80:
        if len(raw) < 3 or raw[2] >= 0x80:
            return None
        width, length_bytes = (width & 0x7F) | (raw[2] << 7), 2
    row = 1 + length_bytes + width
    if count is None:
        count = len(raw) // row
    if row * count != len(raw):
        return None
    item = plain_item(raw[1 + length_bytes : row])
    if item is None:
        return None
    start = 1 + length_bytes + item[3]
    table = np.frombuffer(raw, dtype=np.uint8).reshape(count, row)
    others = np.r_[0:start, start + 18 : row]
    if not (table[:, others] == table[0, others]).all():
        return None
    column = table[:, start : start + 18].tobytes()
    return [column[i : i + 18] for i in range(0, 18 * count, 18)], item[1], item[2], column


def _item_spans(raw: bytes, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each of the `count` items' bytes start in the serialized request, and their
    lengths; None when the request holds anything else (or an item of 16 KiB or more)."""
    starts, lengths = [0] * count, [0] * count
    tag, at, size = _ITEM_TAG[0], 0, len(raw)
    for i in range(count):
        if at + 2 > size or raw[at] != tag:
            return None
        length = raw[at + 1]
        if length < 0x80:
            at += 2
        else:
            if at + 3 > size or raw[at + 2] >= 0x80:
                return None
            length, at = (length & 0x7F) | (raw[at + 2] << 7), at + 3
        starts[i], lengths[i] = at, length
        at += length
    if at != size:
        return None
    return np.array(starts), np.array(lengths)


def _sort_mostly_plain(raw: bytes, checks):
    """`_sort_items`'s answer for a batch that is mostly one table: the largest group of
    items of one length whose bytes equal its first item's but for the number (that item
    being of the common shape) is read as a column, as `_uniform_numbers` reads a whole
    batch; the other items go through `_sort_items`'s item-by-item sorting. Which route
    a plain item takes changes nothing in its answer (tests/test_batch_fast.py)."""
    count = len(checks)
    spans = _item_spans(raw, count) if count else None
    if spans is None:
        return _sort_items(checks)
    starts, lengths = spans
    width = int(np.bincount(lengths).argmax())
    rows = np.flatnonzero(lengths == width)
    first = int(starts[rows[0]])
    item = plain_item(raw[first : first + width])
    if item is None:
        return _sort_items(checks)
    number_at = item[3]
    table = np.frombuffer(raw, dtype=np.uint8)[starts[rows][:, None] + np.arange(width)]
    fixed = np.r_[0:number_at, number_at + 18 : width]
    same = (table[:, fixed] == table[0, fixed]).all(axis=1)
    column = table[same][:, number_at : number_at + 18].tobytes()
    plain_positions = rows[same].tolist()
    numbers = [column[i : i + 18] for i in range(0, len(column), 18)]
    names = [item[1]] * len(numbers)
    rest = np.ones(count, dtype=bool)
    rest[plain_positions] = False
    more_positions, more_numbers, more_names, others, answers = _sort_items(checks, np.flatnonzero(rest).tolist(), item[2])
    if more_positions:  # plain items outside the table (another name): merged in batch order
        merged = sorted(zip(plain_positions + more_positions, numbers + more_numbers, names + more_names))
        plain_positions, numbers, names = (list(part) for part in zip(*merged))
    return plain_positions, numbers, names, others, answers


def _sort_items(checks, positions: list[int] | None = None, common_rest: bytes | None = None):
    """Item by item (all, or those at `positions`): the common-shape items (positions,
    numbers, names) whose trip and date bytes are `common_rest` (by default the first such
    item's), and the others' queries, or their caller errors."""
    plain_positions: list[int] = []
    numbers: list[bytes] = []
    names: list[str] = []
    others: list[tuple[int, CheckQuery]] = []
    answers: Answers = {}
    for position in range(len(checks)) if positions is None else positions:
        check = checks[position]
        item = plain_item(check.SerializeToString())
        if item is not None:
            if common_rest is None:
                common_rest = item[2]
            if item[2] == common_rest:
                plain_positions.append(position)
                numbers.append(item[0])
                names.append(item[1])
                continue
        try:
            others.append((position, to_query(check)))
        except CALLER_ERRORS as exc:
            answers[position] = errors.bad_request(exc.field, exc.reason)
    return plain_positions, numbers, names, others, answers


def _serialize(count: int, numbers: list[bytes], batch: PlainBatch, answers: Answers) -> bytes:
    parts: list[bytes] = []
    never = batch.never_listed
    cursor = 0
    if never:
        before, after = _allow_template(batch)
        # Every never-listed item's bytes at once: template, masked number, template.
        table = np.frombuffer(b"".join(numbers), dtype=np.uint8).reshape(-1, 18)[batch.never_listed_plain]
        rows = np.empty((len(never), len(before) + 18 + len(after)), dtype=np.uint8)
        rows[:, : len(before)] = np.frombuffer(before, dtype=np.uint8)
        rows[:, len(before) : len(before) + 18] = table
        rows[:, len(before) + 10 : len(before) + 14] = _STAR  # canonical numbers are ASCII: masked as text
        rows[:, len(before) + 18 :] = np.frombuffer(after, dtype=np.uint8)
        blob, width = rows.tobytes(), rows.shape[1]
        # Runs of consecutive never-listed positions are copied whole.
        breaks = (np.flatnonzero(np.diff(never) != 1) + 1).tolist()
        for first, end in zip([0, *breaks], [*breaks, len(never)]):
            parts.extend(_answer_bytes(p, batch, answers) for p in range(cursor, never[first]))
            parts.append(blob[first * width : end * width])
            cursor = never[end - 1] + 1
    parts.extend(_answer_bytes(p, batch, answers) for p in range(cursor, count))
    return b"".join(parts)


def _answer_bytes(position: int, batch: PlainBatch, answers: Answers) -> bytes:
    answer = answers.get(position)
    if answer is None:
        result = batch.results[position]
        answer = check_response(result) if isinstance(result, CheckResult) else errors.bad_request(result.field, result.reason)
    if isinstance(answer, status_pb2.Status):
        errors.count_error(answer)
        item = pb.BatchCheckItem(error=answer)
    else:
        item = pb.BatchCheckItem(result=answer)
    # A repeated field's elements serialize one after another: one item's bytes are
    # those of a response holding only it.
    return pb.BatchCheckResponse(items=[item]).SerializeToString()


def _allow_template(batch: PlainBatch) -> tuple[bytes, bytes]:
    """The bytes of a never-listed item before and after its masked number."""
    result = CheckResult(Decision(ALLOW, False), _PLACEHOLDER, batch.seq, batch.day, batch.mode)
    raw = pb.BatchCheckResponse(items=[pb.BatchCheckItem(result=check_response(result))]).SerializeToString()
    before, after = raw.split(_PLACEHOLDER.encode())
    return before, after
