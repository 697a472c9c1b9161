"""A listing's life (docs/DECISIONS.md §5, docs/FEED.md "Rules") as pure functions on records.

A listing record is the JSON-ready dict the store keeps. Documents appear in it only as
masked numbers and keyed hashes (`key`, hex); the caller passes `key_of` so this module
never sees the pepper. Functions return new records or raise EventRejected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol, TypeVar

from .events import Event, EventRejected, ListingFields, NamedDocument, Role, SubjectKind, check_subject_shape
from .identity import Document

KeyOf = Callable[[Document], bytes]

ACTIVE = "ACTIVE"
LIFTED = "LIFTED"

# What an index entry stands for: a person's primary document (counted in
# "persons restricted"), another document of that person, or the organisation itself.
PRIMARY_PERSON = b"P"
EXTRA_DOCUMENT = b"E"
ORGANIZATION = b"O"
_KIND_RANK = {PRIMARY_PERSON: 0, EXTRA_DOCUMENT: 1, ORGANIZATION: 2}


def require_active(record: dict | None) -> dict:
    if record is None:
        raise EventRejected("listing_id", "unknown listing")
    if record["status"] != ACTIVE:
        raise EventRejected("listing_id", f"listing is no longer active ({record['lifted_reason']})")
    return record


_T = TypeVar("_T")


def _given(value: _T | None, name: str) -> _T:
    """A field the event's type requires: `events.parse_event` rejects the event without
    it, so None here is a caller's bug, refused rather than written."""
    if value is None:
        raise EventRejected(name, "is required")
    return value


def new_listing(event: Event, key_of: KeyOf) -> dict:
    record: dict[str, Any] = {
        "listing_id": event.listing_id,
        "list_type": _given(event.list_type, "list_type").value,
        "status": ACTIVE,
        "lifted_reason": None,
        "lifted_on": None,
        "event_ids": [],
    }
    return _with_fields(record, event.fields, key_of)


def corrected(record: dict, event: Event, key_of: KeyOf) -> dict:
    return _with_fields(dict(record), event.fields, key_of)


class Ending(Protocol):
    """What `lifted` and `extended` read of an event: a DELIST, PERFORM or EXTEND Event, or
    the writer's own parsed form of one (ledger._Followup)."""

    @property
    def reason(self) -> str | None: ...

    @property
    def effective_on(self) -> date | None: ...

    @property
    def expires_on(self) -> date | None: ...


def extended(record: dict, event: Ending) -> dict:
    current = record["expires_on"]
    if current is None:
        raise EventRejected("expires_on", "listing has no fixed end to extend")
    expires_on = _given(event.expires_on, "expires_on").isoformat()
    if expires_on <= current:
        raise EventRejected("expires_on", "must be later than the current expiry")
    return {**record, "expires_on": expires_on}


def lifted(record: dict, event: Ending) -> dict:
    lifted_on = _given(event.effective_on, "effective_on").isoformat()
    return {**record, "status": LIFTED, "lifted_reason": event.reason, "lifted_on": lifted_on}


def with_event(record: dict, event_id: str) -> dict:
    return {**record, "event_ids": [*record["event_ids"], event_id]}


def exemption(record: dict, event: Event, person_keys: list[bytes]) -> tuple[dict, list[bytes]]:
    """The exemption an EXEMPT grants: one listing, one person, some modes, a date window.
    `person_keys` are every document of the person the event names (`store.persons_of`);
    returns the exemption and the keys of the listing's entries for that person (a
    listing may name one person twice, e.g. as legal representative and as principal,
    under two of their documents: the exemption covers the person, so every entry).
    Never an organisation."""
    wanted = {k.hex() for k in person_keys}
    entries = [
        p["key"]
        for p in record["persons"]
        if p["key"] in wanted and p["slot"] != "extra" and p["kind"] != ORGANIZATION.decode()
    ]
    if not entries:
        raise EventRejected("document", "is not a person restricted by this listing")
    return {
        "listing_id": record["listing_id"],
        "reference": event.reference,
        "masked": _given(event.exempt_document, "document").masked(),
        "modes": [m.value for m in event.modes],
        "valid_from": _given(event.valid_from, "valid_from").isoformat(),
        "valid_to": _given(event.valid_to, "valid_to").isoformat(),
    }, [bytes.fromhex(k) for k in dict.fromkeys(entries)]


def index_entries(record: dict) -> dict[bytes, bytes]:
    """Person key -> entry kind, for every person (or organisation) this listing names.
    A subject's extra documents are not entries: they are bindings (see `declared_bindings`)
    and reach the listing through the person they are bound to."""
    entries: dict[bytes, bytes] = {}
    for person in record["persons"]:
        if person["slot"] == "extra":
            continue
        key, kind = bytes.fromhex(person["key"]), person["kind"].encode()
        if key not in entries or _KIND_RANK[kind] < _KIND_RANK[entries[key]]:
            entries[key] = kind
    return entries


def declared_bindings(record: dict) -> set[tuple[bytes, bytes]]:
    """(document key, person key) for each extra document this listing binds to its subject.
    A declaration outlives the listing's lifting: only a correction withdraws it."""
    subject = next(p for p in record["persons"] if p["slot"] == "subject")
    return {
        (bytes.fromhex(p["key"]), bytes.fromhex(subject["key"]))
        for p in record["persons"]
        if p["slot"] == "extra" and p["key"] != subject["key"]
    }


def _with_fields(record: dict, fields: ListingFields, key_of: KeyOf) -> dict:
    for name in ("case_number", "court", "grounds", "obligation", "amount_unperformed"):
        value = getattr(fields, name)
        if value is not None:
            record[name] = value
        else:
            record.setdefault(name, None)
    if fields.listed_on is not None:
        record["listed_on"] = fields.listed_on.isoformat()
    if fields.expires_on_given:
        record["expires_on"] = fields.expires_on.isoformat() if fields.expires_on else None
    if record["expires_on"] is not None and record["expires_on"] <= record["listed_on"]:
        raise EventRejected("expires_on", "must be after listed_on")

    kind = fields.subject_kind or SubjectKind(record["subject_kind"])
    old: dict[str, list[dict]] = {"subject": [], "extra": [], "restricted": []}
    for person in record.get("persons", []):
        old[person["slot"]].append(person)
    subject = [_person(fields.subject, "subject", kind, key_of)] if fields.subject else old["subject"]
    # Extra documents are the subject's: a correction that names another subject and no
    # extra documents withdraws the old subject's, never hands them to the new one.
    same_subject = bool(old["subject"]) and old["subject"][0]["key"] == subject[0]["key"]
    extra = (
        [_person(NamedDocument(Role.SUBJECT, subject[0]["name"], d), "extra", kind, key_of) for d in fields.extra_documents]
        if fields.extra_documents is not None
        else old["extra"]
        if same_subject
        else []
    )
    restricted = (
        [_person(p, "restricted", kind, key_of) for p in fields.restricted_persons]
        if fields.restricted_persons is not None
        else old["restricted"]
    )
    # A corrected subject of another kind must not keep the other kind's people.
    check_subject_shape(kind, extra, restricted)
    for person in extra:
        person["name"] = subject[0]["name"]
    record["subject_kind"] = kind.value
    record["organization_name"] = subject[0]["name"] if kind is SubjectKind.ORGANIZATION else None
    record["persons"] = subject + extra + restricted
    return record


def _person(named: NamedDocument, slot: str, kind: SubjectKind, key_of: KeyOf) -> dict:
    doc = named.document
    if slot == "subject" and kind is SubjectKind.ORGANIZATION:
        entry_kind = ORGANIZATION
    elif slot == "extra":
        entry_kind = EXTRA_DOCUMENT
    else:
        entry_kind = PRIMARY_PERSON
    return {
        "slot": slot,
        "role": named.role.value,
        "name": named.name,
        "doc_type": doc.type.value,
        "country": doc.country,
        "masked": doc.masked(),
        "key": key_of(doc).hex(),
        "kind": entry_kind.decode(),
    }
