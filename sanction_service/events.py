"""The court feed's events (docs/FEED.md): parsing and validation into typed events.

Pure domain code: takes the decoded JSON object of one line and returns a typed event or
raises EventRejected naming the field, whatever the JSON holds (wrong types, nulls, huge
numbers, nesting, control characters, sizes: the bounds are in settings.py and
docs/INPUT_LIMITS.md). It raises nothing else: one bad line must never stop a feed. It
knows nothing about the store; rules that need the current state of a listing (unknown
listing, EXTEND to an earlier date) live in `lifecycle`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from .identity import Document, DocumentType, InvalidDocument, normalize, parse_document_type
from .policy import TravelMode
from .settings import (
    MAX_AMOUNT_CHARS,
    MAX_CASE_NUMBER_CHARS,
    MAX_COURT_CHARS,
    MAX_EXTRA_DOCUMENTS,
    MAX_FREE_TEXT_CHARS,
    MAX_JSON_DEPTH,
    MAX_NAME_CHARS,
    MAX_RESTRICTED_PERSONS,
    MAX_TIMESTAMP_CHARS,
)
from .text import identifier_problem, is_identifier, text_problem


class EventRejected(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    def __reduce__(self):  # crosses process boundaries when workers parse a feed
        return (EventRejected, (self.field, self.reason))


class EventType(str, Enum):
    LIST = "LIST"
    DELIST = "DELIST"
    PERFORM = "PERFORM"
    EXTEND = "EXTEND"
    CORRECT = "CORRECT"
    EXEMPT = "EXEMPT"


class ListType(str, Enum):
    DISHONEST = "DISHONEST"
    CONSUMPTION_RESTRICTION = "CONSUMPTION_RESTRICTION"


class SubjectKind(str, Enum):
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"


class Role(str, Enum):
    SUBJECT = "SUBJECT"
    LEGAL_REPRESENTATIVE = "LEGAL_REPRESENTATIVE"
    PRINCIPAL = "PRINCIPAL"
    RESPONSIBLE_PERSON = "RESPONSIBLE_PERSON"
    ACTUAL_CONTROLLER = "ACTUAL_CONTROLLER"


ORGANIZATION_ROLES = frozenset(Role) - {Role.SUBJECT}

# 失信规定 art. 10 deletion reasons, plus art. 9 revocation of a wrongful listing.
DELIST_REASONS = frozenset(
    {
        "PERFORMED",
        "SETTLED",
        "CREDITOR_APPLICATION",
        "NO_ASSETS",
        "SUSPENDED",
        "NOT_ENFORCED",
        "TERMINATED",
        "EXPIRED",
        "REVOKED",
    }
)

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TEXT_LIMITS = {"case_number": MAX_CASE_NUMBER_CHARS, "court": MAX_COURT_CHARS}
_SCALAR_TEXT_LIMITS = {
    "grounds": MAX_FREE_TEXT_CHARS,
    "obligation": MAX_FREE_TEXT_CHARS,
    "amount_unperformed": MAX_AMOUNT_CHARS,
}


@dataclass(frozen=True, slots=True)
class NamedDocument:
    role: Role
    name: str
    document: Document


@dataclass(frozen=True, slots=True)
class ListingFields:
    """The LIST fields that CORRECT may replace. Absent in a CORRECT means unchanged."""

    case_number: str | None = None
    court: str | None = None
    listed_on: date | None = None
    expires_on: date | None = None
    expires_on_given: bool = False  # null is a value (no fixed end), so track presence
    subject_kind: SubjectKind | None = None
    subject: NamedDocument | None = None
    extra_documents: tuple[Document, ...] | None = None
    restricted_persons: tuple[NamedDocument, ...] | None = None
    grounds: str | None = None
    obligation: str | None = None
    amount_unperformed: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    type: EventType
    occurred_at: str
    listing_id: str
    digest: bytes  # identifies the content: same id + other digest is a conflict
    list_type: ListType | None = None
    fields: ListingFields = field(default_factory=ListingFields)
    reason: str | None = None
    effective_on: date | None = None
    expires_on: date | None = None
    exempt_document: Document | None = None
    modes: tuple[TravelMode, ...] = ()
    valid_from: date | None = None
    valid_to: date | None = None
    reference: str | None = None


def content_digest(raw: dict[str, Any]) -> bytes:
    try:
        canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    except (ValueError, TypeError, RecursionError):
        # Lone surrogates, integers too long to print, non-JSON objects from a Python
        # caller: find the field to name (slow, but only on this path).
        raise _unencodable(raw) from None
    return hashlib.blake2b(canonical, digest_size=16).digest()


def parse_event(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise EventRejected("", "an event must be a JSON object")
    _check_nesting(raw)
    event_id = _identifier(raw, "event_id")
    try:
        event_type = EventType(raw.get("type"))
    except ValueError:
        raise EventRejected("type", "unknown event type") from None
    occurred_at = _timestamp(raw, "occurred_at")
    listing_id = _identifier(raw, "listing_id")
    common: dict[str, Any] = dict(
        event_id=event_id,
        type=event_type,
        occurred_at=occurred_at,
        listing_id=listing_id,
    )
    parsed = _PARSERS[event_type](raw)
    # After the fields' own checks, which name a bad value more precisely than this can.
    return Event(**common, digest=content_digest(raw), **parsed)


def _parse_list(raw: dict) -> dict:
    try:
        list_type = ListType(raw.get("list_type"))
    except ValueError:
        raise EventRejected("list_type", "must be DISHONEST or CONSUMPTION_RESTRICTION") from None
    fields = _listing_fields(raw, required=True)
    return dict(list_type=list_type, fields=fields)


def _parse_correct(raw: dict) -> dict:
    if "list_type" in raw:
        raise EventRejected("list_type", "cannot be corrected; delist and list again")
    fields = _listing_fields(raw, required=False)
    if fields == ListingFields():
        raise EventRejected("", "CORRECT names no field to correct")
    return dict(fields=fields)


def _parse_delist(raw: dict) -> dict:
    reason = raw.get("reason")
    if not isinstance(reason, str) or reason not in DELIST_REASONS:
        raise EventRejected("reason", "must be one of " + ", ".join(sorted(DELIST_REASONS)))
    return dict(reason=reason, effective_on=_date(raw, "effective_on"))


def _parse_perform(raw: dict) -> dict:
    return dict(reason="PERFORMED", effective_on=_date(raw, "performed_on"))


def _parse_extend(raw: dict) -> dict:
    return dict(expires_on=_date(raw, "expires_on"))


def _parse_exempt(raw: dict) -> dict:
    document = _document(raw.get("document"), "document")
    modes_raw = raw.get("modes")
    if not isinstance(modes_raw, list) or not modes_raw:
        raise EventRejected("modes", "must be a non-empty list of FLIGHT, RAIL, SHIP")
    try:
        modes = tuple(sorted({TravelMode(m) for m in modes_raw}, key=lambda m: m.value))
    except (ValueError, TypeError):
        raise EventRejected("modes", "must be a non-empty list of FLIGHT, RAIL, SHIP") from None
    valid_from = _date(raw, "valid_from")
    valid_to = _date(raw, "valid_to")
    if valid_to < valid_from:
        raise EventRejected("valid_to", "is before valid_from")
    reference = _identifier(raw, "reference")
    return dict(exempt_document=document, modes=modes, valid_from=valid_from, valid_to=valid_to, reference=reference)


_PARSERS = {
    EventType.LIST: _parse_list,
    EventType.DELIST: _parse_delist,
    EventType.PERFORM: _parse_perform,
    EventType.EXTEND: _parse_extend,
    EventType.CORRECT: _parse_correct,
    EventType.EXEMPT: _parse_exempt,
}


def _listing_fields(raw: dict, *, required: bool) -> ListingFields:
    values: dict[str, Any] = {}
    for name, limit in _TEXT_LIMITS.items():
        if required or name in raw:
            values[name] = _text(raw, name, max_length=limit)
    if required or "listed_on" in raw:
        values["listed_on"] = _date(raw, "listed_on")
    if required or "expires_on" in raw:
        values["expires_on"] = _optional_date(raw, "expires_on")
        values["expires_on_given"] = True
    if values.get("listed_on") and values.get("expires_on") and values["expires_on"] <= values["listed_on"]:
        raise EventRejected("expires_on", "must be after listed_on")
    if required or "subject" in raw:
        kind, subject = _subject(raw.get("subject"))
        values["subject_kind"], values["subject"] = kind, subject
    if "extra_documents" in raw:
        docs = _list(raw, "extra_documents", MAX_EXTRA_DOCUMENTS)
        values["extra_documents"] = tuple(_document(d, f"extra_documents[{i}]", person_only=True) for i, d in enumerate(docs))
    elif required:
        values["extra_documents"] = ()
    if "restricted_persons" in raw:
        persons = _list(raw, "restricted_persons", MAX_RESTRICTED_PERSONS)
        values["restricted_persons"] = tuple(_restricted_person(p, i) for i, p in enumerate(persons))
    elif required:
        values["restricted_persons"] = ()
    for name, limit in _SCALAR_TEXT_LIMITS.items():
        if name in raw and raw[name] is not None:
            values[name] = _scalar_text(raw, name, limit)
    fields = ListingFields(**values)
    if required:
        check_subject_shape(fields.subject_kind, fields.extra_documents, fields.restricted_persons)
    return fields


def check_subject_shape(kind: SubjectKind | None, extra_documents, restricted_persons) -> None:
    """PERSON subjects carry extra documents; ORGANIZATION subjects carry restricted persons."""
    if kind is SubjectKind.PERSON and restricted_persons:
        raise EventRejected("restricted_persons", "only an ORGANIZATION subject has restricted persons")
    if kind is SubjectKind.ORGANIZATION and extra_documents:
        raise EventRejected("extra_documents", "only a PERSON subject has extra documents")


def _subject(raw: Any) -> tuple[SubjectKind, NamedDocument]:
    if not isinstance(raw, dict):
        raise EventRejected("subject", "is required and must be an object")
    try:
        kind = SubjectKind(raw.get("kind"))
    except ValueError:
        raise EventRejected("subject.kind", "must be PERSON or ORGANIZATION") from None
    name = _text(raw, "name", prefix="subject.", max_length=MAX_NAME_CHARS)
    document = _document(raw.get("document"), "subject.document")
    if kind is SubjectKind.ORGANIZATION and document.type is not DocumentType.USCC:
        raise EventRejected("subject.document.type", "an ORGANIZATION is identified by its USCC")
    if kind is SubjectKind.PERSON and document.type is DocumentType.USCC:
        raise EventRejected("subject.document.type", "a PERSON cannot be identified by a USCC")
    return kind, NamedDocument(Role.SUBJECT, name, document)


def _restricted_person(raw: Any, index: int) -> NamedDocument:
    where = f"restricted_persons[{index}]"
    if not isinstance(raw, dict):
        raise EventRejected(where, "must be an object")
    try:
        role = Role(raw.get("role"))
    except ValueError:
        role = None
    if role not in ORGANIZATION_ROLES:
        raise EventRejected(f"{where}.role", "must be " + ", ".join(sorted(r.value for r in ORGANIZATION_ROLES)))
    name = _text(raw, "name", prefix=f"{where}.", max_length=MAX_NAME_CHARS)
    return NamedDocument(role, name, _document(raw.get("document"), f"{where}.document", person_only=True))


def _document(raw: Any, where: str, *, person_only: bool = False) -> Document:
    if not isinstance(raw, dict) or not raw:
        raise EventRejected(where, "is required and must be an object with type and number")
    try:
        doc_type = parse_document_type(raw.get("type"), f"{where}.type")
        if person_only and doc_type is DocumentType.USCC:
            raise InvalidDocument(f"{where}.type", "a person's document cannot be a USCC")
        number = raw.get("number")
        if number is None:
            raise InvalidDocument(f"{where}.number", "is required")
        return normalize(doc_type, number, raw.get("country"), where)
    except InvalidDocument as exc:
        raise EventRejected(exc.field, exc.reason) from None


def _list(raw: dict, name: str, max_items: int) -> list:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventRejected(name, "must be a list")
    if len(value) > max_items:
        raise EventRejected(name, f"holds more than {max_items} entries")
    return value


def _identifier(raw: dict, name: str) -> str:
    problem = identifier_problem(raw.get(name))
    if problem:
        raise EventRejected(name, problem)
    return raw[name].strip()


def _text(raw: dict, name: str, *, prefix: str = "", max_length: int) -> str:
    value = raw.get(name)
    problem = text_problem(value, max_length)
    if problem or not isinstance(value, str):  # (text_problem names any non-string)
        raise EventRejected(prefix + name, problem or "must be a string")
    return value.strip()


def _scalar_text(raw: dict, name: str, max_length: int) -> str:
    value = raw[name]
    if isinstance(value, str):
        problem = text_problem(value, max_length, required=False)
        if problem:
            raise EventRejected(name, problem)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventRejected(name, "must be a string or a number")
    # Bounded before printing: str() of a huge int is slow, and above 4300 digits raises.
    if isinstance(value, int) and value.bit_length() > max_length * 3:
        raise EventRejected(name, f"is longer than {max_length} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise EventRejected(name, "must be a finite number")
    text = str(value)
    if len(text) > max_length:
        raise EventRejected(name, f"is longer than {max_length} characters")
    return text


def parse_date(value: Any, where: str) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise EventRejected(where, "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise EventRejected(where, "must be a date YYYY-MM-DD") from None


def _date(raw: dict, name: str) -> date:
    return parse_date(raw.get(name), name)


def _optional_date(raw: dict, name: str) -> date | None:
    return None if raw.get(name) is None else _date(raw, name)


def _timestamp(raw: dict, name: str) -> str:
    value = raw.get(name)
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= MAX_TIMESTAMP_CHARS else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or not isinstance(value, str) or "T" not in value.upper():
        raise EventRejected(name, "must be an RFC 3339 timestamp with an offset")
    return value


def _check_nesting(raw: dict) -> None:
    """Reject an event whose JSON nests deeper than MAX_JSON_DEPTH, naming the top-level
    field. Iterative, so a hostile depth cannot exhaust the stack here; only containers
    are walked, which keeps the cost small on a normal event."""
    for name, value in raw.items():
        if not isinstance(value, (dict, list)):
            continue
        stack = [(value, 2)]  # the event object itself is level 1
        while stack:
            item, depth = stack.pop()
            if depth > MAX_JSON_DEPTH:
                raise EventRejected(reported_field_name(name), f"nests deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


_JSON_SCALARS = (str, int, float, bool, type(None))


def _unencodable(raw: dict) -> EventRejected:
    """The rejection for an event that cannot be written as canonical UTF-8 JSON."""
    for name, value in raw.items():
        if not isinstance(name, str) or _bad_text(name):
            return EventRejected("", "a field name is not valid text")
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if any(not isinstance(k, str) or _bad_text(k) for k in item):
                    return EventRejected(reported_field_name(name), "holds a field name that is not valid text")
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif not isinstance(item, _JSON_SCALARS):
                return EventRejected(reported_field_name(name), "holds a value that is not JSON")
            elif isinstance(item, str) and _bad_text(item):
                return EventRejected(reported_field_name(name), "holds text that is not valid Unicode")
            elif isinstance(item, int) and item.bit_length() > 10_000:
                return EventRejected(reported_field_name(name), "holds a number too long to print")
    return EventRejected("", "cannot be encoded as JSON")


def _bad_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


UNPRINTABLE_FIELD = "(a field with an unprintable name)"


def reported_field_name(name: object) -> str:
    """A top-level key, fit to be echoed as a field name: unknown keys are the feed's text."""
    return name if is_identifier(name) and len(name) <= 64 else UNPRINTABLE_FIELD
