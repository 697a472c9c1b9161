"""The court feed's events (docs/FEED.md): parsing and validation into typed events.

Pure domain code: takes the decoded JSON object of one line and returns a typed event or
raises EventRejected naming the field. It knows nothing about the store; rules that need
the current state of a listing (unknown listing, EXTEND to an earlier date) live in
`lifecycle`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from .identity import Document, DocumentType, InvalidDocument, normalize, parse_document_type
from .policy import TravelMode


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

MAX_EVENT_ID_LENGTH = 200
MAX_LISTING_ID_LENGTH = 200
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


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
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


def parse_event(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise EventRejected("", "an event must be a JSON object")
    event_id = _text(raw, "event_id", max_length=MAX_EVENT_ID_LENGTH)
    try:
        event_type = EventType(raw.get("type"))
    except ValueError:
        raise EventRejected("type", "unknown event type") from None
    occurred_at = _timestamp(raw, "occurred_at")
    listing_id = _text(raw, "listing_id", max_length=MAX_LISTING_ID_LENGTH)
    common = dict(
        event_id=event_id,
        type=event_type,
        occurred_at=occurred_at,
        listing_id=listing_id,
        digest=content_digest(raw),
    )
    parser = _PARSERS[event_type]
    return Event(**common, **parser(raw))


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
    if reason not in DELIST_REASONS:
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
    reference = _text(raw, "reference", max_length=200)
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
    for name in ("case_number", "court"):
        if required or name in raw:
            values[name] = _text(raw, name, max_length=200)
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
        docs = _list(raw, "extra_documents")
        values["extra_documents"] = tuple(
            _document(d, f"extra_documents[{i}]", person_only=True) for i, d in enumerate(docs)
        )
    elif required:
        values["extra_documents"] = ()
    if "restricted_persons" in raw:
        persons = _list(raw, "restricted_persons")
        values["restricted_persons"] = tuple(_restricted_person(p, i) for i, p in enumerate(persons))
    elif required:
        values["restricted_persons"] = ()
    for name in ("grounds", "obligation", "amount_unperformed"):
        if name in raw and raw[name] is not None:
            values[name] = _scalar_text(raw, name)
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
    name = _text(raw, "name", prefix="subject.", max_length=200)
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
    name = _text(raw, "name", prefix=f"{where}.", max_length=200)
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
        return normalize(doc_type, number, raw.get("country") or "", where)
    except InvalidDocument as exc:
        raise EventRejected(exc.field, exc.reason) from None


def _list(raw: dict, name: str) -> list:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EventRejected(name, "must be a list")
    return value


def _text(raw: dict, name: str, *, prefix: str = "", max_length: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise EventRejected(prefix + name, "is required and must be a non-empty string")
    if len(value) > max_length:
        raise EventRejected(prefix + name, f"is longer than {max_length} characters")
    return value.strip()


def _scalar_text(raw: dict, name: str) -> str:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EventRejected(name, "must be a string or a number")
    return str(value)


def parse_date(value: Any, where: str) -> date:
    if not isinstance(value, str) or not _DATE.match(value):
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
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value.upper():
        raise EventRejected(name, "must be an RFC 3339 timestamp with an offset")
    return value
