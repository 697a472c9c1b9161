"""The fast decoder of one feed line: msgspec typed decoding (types, tags and shapes
checked in C) into the same `Event` the reference parser (`feedline` + `events.parse_event`)
builds, or None.

None means only "not this fast way": the caller then runs the reference parser, which
applies the event or rejects it with its own field and reason. This module never rejects
anything itself, so every rejection text stays the reference's. It accepts a line only
when every field is one of the shapes below, every field of every object is known (no
unknown fields: those count in the content digest in ways this path does not reproduce),
and every value passes the reference's own checks (the same helper functions, called on
the same values); anything else falls back.

The content digest is the reference's (BLAKE2b of the event as JSON with sorted keys,
no spaces, UTF-8): msgspec encodes the decoded struct with its fields sorted, which gives
the same bytes for the values accepted here (strings, integers of at most 64 bits, null,
lists and objects of them; no floats). tests/test_fastdecode.py holds the two parsers to
each other field by field on large random feeds of valid and mutated lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from .events import (
    _DATE,
    DELIST_REASONS,
    ORGANIZATION_ROLES,
    Event,
    EventType,
    ListingFields,
    ListType,
    NamedDocument,
    Role,
    SubjectKind,
)
from .identity import DocumentType, InvalidDocument, normalize, parse_document_type
from .policy import TravelMode
from .settings import (
    MAX_AMOUNT_CHARS,
    MAX_CASE_NUMBER_CHARS,
    MAX_COURT_CHARS,
    MAX_EXTRA_DOCUMENTS,
    MAX_FEED_LINE_BYTES,
    MAX_FREE_TEXT_CHARS,
    MAX_NAME_CHARS,
    MAX_RESTRICTED_PERSONS,
    MAX_TIMESTAMP_CHARS,
)
from .text import identifier_problem, text_problem

Opt = UnsetType


class _Doc(Struct, forbid_unknown_fields=True):
    type: str
    number: str
    country: str | None | Opt = UNSET


class _Subject(Struct, forbid_unknown_fields=True):
    kind: str
    name: str
    document: _Doc


class _Person(Struct, forbid_unknown_fields=True):
    role: str
    name: str
    document: _Doc


Scalar = str | int | None | Opt


class _Common(Struct, forbid_unknown_fields=True, tag_field="type"):
    event_id: str
    occurred_at: str
    listing_id: str


class _List(_Common, tag="LIST"):
    list_type: str
    case_number: str
    court: str
    listed_on: str
    subject: _Subject
    expires_on: str | None | Opt = UNSET
    extra_documents: list[_Doc] | None | Opt = UNSET
    restricted_persons: list[_Person] | None | Opt = UNSET
    grounds: Scalar = UNSET
    obligation: Scalar = UNSET
    amount_unperformed: Scalar = UNSET


class _Correct(_Common, tag="CORRECT"):
    case_number: str | Opt = UNSET
    court: str | Opt = UNSET
    listed_on: str | Opt = UNSET
    subject: _Subject | Opt = UNSET
    expires_on: str | None | Opt = UNSET
    extra_documents: list[_Doc] | None | Opt = UNSET
    restricted_persons: list[_Person] | None | Opt = UNSET
    grounds: Scalar = UNSET
    obligation: Scalar = UNSET
    amount_unperformed: Scalar = UNSET


class _Delist(_Common, tag="DELIST"):
    reason: str
    effective_on: str


class _Perform(_Common, tag="PERFORM"):
    performed_on: str


class _Extend(_Common, tag="EXTEND"):
    expires_on: str


class _Exempt(_Common, tag="EXEMPT"):
    document: _Doc
    modes: list[Literal["FLIGHT", "RAIL", "SHIP"]]
    valid_from: str
    valid_to: str
    reference: str


_DECODER = msgspec.json.Decoder(_List | _Correct | _Delist | _Perform | _Extend | _Exempt)
_ENCODER = msgspec.json.Encoder(order="sorted")
_LIST_TYPES = {t.value: t for t in ListType}
_KINDS = {k.value: k for k in SubjectKind}
_ROLES = {r.value: r for r in ORGANIZATION_ROLES}
_MODES = {m.value: m for m in TravelMode}
_TEXT_LIMITS = (("case_number", MAX_CASE_NUMBER_CHARS), ("court", MAX_COURT_CHARS))
_SCALARS = (("grounds", MAX_FREE_TEXT_CHARS), ("obligation", MAX_FREE_TEXT_CHARS), ("amount_unperformed", MAX_AMOUNT_CHARS))
_date_fromisoformat = __import__("datetime").date.fromisoformat


class _Fallback(Exception):
    """This line is not for the fast path; the reference parser decides."""


_FALLBACK = _Fallback()


def decode_event(line: bytes | str) -> Event | None:
    """The Event of one feed line, exactly as the reference parser builds it, or None
    when the reference parser must look at the line. Never raises."""
    if len(line) > MAX_FEED_LINE_BYTES // 4:
        return None  # long lines (and the 1 MiB bound) are the reference's business
    try:
        parsed = _DECODER.decode(line)
        return _BUILDERS[type(parsed)](parsed)
    except Exception:  # noqa: BLE001 - anything unexpected: the reference decides
        return None


def _identifier(value: str) -> str:
    if identifier_problem(value) is not None:
        raise _FALLBACK
    return value.strip()


def _text(value: str, limit: int) -> str:
    if text_problem(value, limit) is not None:
        raise _FALLBACK
    return value.strip()


def _date(value: object):
    if type(value) is not str or not _DATE.fullmatch(value):
        raise _FALLBACK
    return _date_fromisoformat(value)


def _timestamp(value: str) -> str:
    if len(value) > MAX_TIMESTAMP_CHARS or "T" not in value.upper():
        raise _FALLBACK
    if datetime.fromisoformat(value).tzinfo is None:
        raise _FALLBACK
    return value


def _document(doc: _Doc, where: str, person_only: bool = False):
    try:
        doc_type = parse_document_type(doc.type, f"{where}.type")
        if person_only and doc_type is DocumentType.USCC:
            raise _FALLBACK
        country = None if doc.country is UNSET else doc.country
        return normalize(doc_type, doc.number, country, where)
    except InvalidDocument:
        raise _FALLBACK from None


def _scalar(value, limit: int) -> str:
    if type(value) is str:
        if text_problem(value, limit, required=False) is not None:
            raise _FALLBACK
        return value
    if type(value) is not int:
        raise _FALLBACK
    text = str(value)
    if len(text) > limit:
        raise _FALLBACK
    return text


def _common(parsed: _Common, event_type: EventType) -> dict:
    return dict(
        event_id=_identifier(parsed.event_id),
        type=event_type,
        occurred_at=_timestamp(parsed.occurred_at),
        listing_id=_identifier(parsed.listing_id),
    )


def _digest(parsed: Struct) -> bytes:
    return hashlib.blake2b(_ENCODER.encode(parsed), digest_size=16).digest()


def _fields(p: _List | _Correct, required: bool) -> ListingFields:
    values: dict = {}
    for name, limit in _TEXT_LIMITS:
        value = getattr(p, name)
        if value is not UNSET:
            values[name] = _text(value, limit)
    if p.listed_on is not UNSET:
        values["listed_on"] = _date(p.listed_on)
    if required or p.expires_on is not UNSET:
        values["expires_on"] = None if p.expires_on is UNSET or p.expires_on is None else _date(p.expires_on)
        values["expires_on_given"] = True
    if values.get("listed_on") and values.get("expires_on") and values["expires_on"] <= values["listed_on"]:
        raise _FALLBACK
    kind = None
    if p.subject is not UNSET:
        subject = p.subject
        kind = _KINDS.get(subject.kind)
        if kind is None:
            raise _FALLBACK
        name = _text(subject.name, MAX_NAME_CHARS)
        document = _document(subject.document, "subject.document")
        if (kind is SubjectKind.ORGANIZATION) is not (document.type is DocumentType.USCC):
            raise _FALLBACK
        values["subject_kind"], values["subject"] = kind, NamedDocument(Role.SUBJECT, name, document)
    if p.extra_documents is not UNSET:
        docs = p.extra_documents or ()
        if len(docs) > MAX_EXTRA_DOCUMENTS:
            raise _FALLBACK
        values["extra_documents"] = tuple(_document(d, f"extra_documents[{i}]", True) for i, d in enumerate(docs))
    elif required:
        values["extra_documents"] = ()
    if p.restricted_persons is not UNSET:
        persons = p.restricted_persons or ()
        if len(persons) > MAX_RESTRICTED_PERSONS:
            raise _FALLBACK
        named = []
        for i, person in enumerate(persons):
            role = _ROLES.get(person.role)
            if role is None:
                raise _FALLBACK
            named.append(
                NamedDocument(
                    role,
                    _text(person.name, MAX_NAME_CHARS),
                    _document(person.document, f"restricted_persons[{i}].document", True),
                )
            )
        values["restricted_persons"] = tuple(named)
    elif required:
        values["restricted_persons"] = ()
    for name, limit in _SCALARS:
        value = getattr(p, name)
        if value is not UNSET and value is not None:
            values[name] = _scalar(value, limit)
    fields = ListingFields(**values)
    if required:
        if kind is SubjectKind.PERSON and fields.restricted_persons:
            raise _FALLBACK
        if kind is SubjectKind.ORGANIZATION and fields.extra_documents:
            raise _FALLBACK
    return fields


def _build_list(p: _List) -> Event:
    list_type = _LIST_TYPES.get(p.list_type)
    if list_type is None:
        raise _FALLBACK
    common = _common(p, EventType.LIST)
    return Event(**common, digest=_digest(p), list_type=list_type, fields=_fields(p, True))


def _build_correct(p: _Correct) -> Event:
    common = _common(p, EventType.CORRECT)
    fields = _fields(p, False)
    if fields == ListingFields():
        raise _FALLBACK
    return Event(**common, digest=_digest(p), fields=fields)


def _build_delist(p: _Delist) -> Event:
    if p.reason not in DELIST_REASONS:
        raise _FALLBACK
    common = _common(p, EventType.DELIST)
    return Event(**common, digest=_digest(p), reason=p.reason, effective_on=_date(p.effective_on))


def _build_perform(p: _Perform) -> Event:
    common = _common(p, EventType.PERFORM)
    return Event(**common, digest=_digest(p), reason="PERFORMED", effective_on=_date(p.performed_on))


def _build_extend(p: _Extend) -> Event:
    common = _common(p, EventType.EXTEND)
    return Event(**common, digest=_digest(p), expires_on=_date(p.expires_on))


def _build_exempt(p: _Exempt) -> Event:
    common = _common(p, EventType.EXEMPT)
    document = _document(p.document, "document")
    if not p.modes:
        raise _FALLBACK
    modes = tuple(sorted({_MODES[m] for m in p.modes}, key=lambda m: m.value))
    valid_from, valid_to = _date(p.valid_from), _date(p.valid_to)
    if valid_to < valid_from:
        raise _FALLBACK
    return Event(
        **common,
        digest=_digest(p),
        exempt_document=document,
        modes=modes,
        valid_from=valid_from,
        valid_to=valid_to,
        reference=_identifier(p.reference),
    )


_BUILDERS: dict[type, Callable[[Any], Event]] = {
    _List: _build_list,
    _Correct: _build_correct,
    _Delist: _build_delist,
    _Perform: _build_perform,
    _Extend: _build_extend,
    _Exempt: _build_exempt,
}
