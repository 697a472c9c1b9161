"""One feed line (a line of a feed file, or one event of ApplyEvents) to a FeedLine: the
parsed event, or why the line was rejected. Never raises: whatever the line holds, the
loader and ApplyEvents go on with the next one.

The event id reported with a rejection is the line's own only when it is a valid
identifier, so a hostile id (a megabyte long, control characters, lone surrogates) is
never copied into a rejects file or an ApplyEvents answer.
"""

from __future__ import annotations

import json
import re

from .events import EventRejected, parse_event, reported_field_name
from .fastdecode import decode_event
from .ledger import FeedLine
from .settings import MAX_FEED_LINE_BYTES, MAX_JSON_DEPTH
from .text import is_identifier

_NOT_JSON = EventRejected("", "not valid JSON")
# The tokens that matter for nesting: strings (whose brackets do not count) and brackets.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:]')


def parse_text(number: int, text: str) -> FeedLine:
    """The FeedLine for one event given as text (already known to be valid UTF-8): the
    fast decoder's event when it takes the line, else the reference parser's answer."""
    event = decode_event(text)
    if event is not None:
        return FeedLine(number, event=event, event_id=event.event_id)
    return parse_text_reference(number, text)


def parse_text_reference(number: int, text: str) -> FeedLine:
    """The reference parser of one line: decode_json + events.parse_event."""
    if len(text) > MAX_FEED_LINE_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_FEED_LINE_BYTES:
        return FeedLine(number, error=EventRejected("", f"line longer than {MAX_FEED_LINE_BYTES} bytes"))
    try:
        raw = decode_json(text)
    except EventRejected as exc:
        return FeedLine(number, error=exc)
    return parse_raw(number, raw)


def parse_raw(number: int, raw: object) -> FeedLine:
    """The FeedLine for one decoded JSON value."""
    try:
        event = parse_event(raw)
    except EventRejected as exc:
        return FeedLine(number, error=exc, event_id=reported_event_id(raw))
    return FeedLine(number, event=event, event_id=event.event_id)


def reported_event_id(raw: object) -> str:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return event_id.strip() if is_identifier(event_id) else ""


def decode_json(text: str) -> object:
    """Strict JSON (no NaN or Infinity) or EventRejected; never anything else."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        # The stdlib decoder recurses once per level; the depth that breaks it is far
        # beyond MAX_JSON_DEPTH, so say so and name the field if one can be found.
        return _too_deep(text)
    except Exception:  # json raises ValueError, but nothing may escape from one line
        raise _NOT_JSON from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _too_deep(text: str) -> object:
    """Raise the rejection for JSON nested too deeply to decode, naming the top-level field
    whose value goes deeper than MAX_JSON_DEPTH (scanned without recursion)."""
    depth, key, last_string = 0, "", ""
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                break
        elif token in "]}":
            depth -= 1
        elif token == ":":
            if depth == 1:
                key = last_string
        else:
            last_string = token
    raise EventRejected(reported_field_name(_string_value(key)) if key else "", f"nests deeper than {MAX_JSON_DEPTH} levels")


def _string_value(token: str) -> str:
    try:
        value = json.loads(token) if token else ""
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
