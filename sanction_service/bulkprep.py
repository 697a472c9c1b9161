"""The bulk loader's parse workers' fast path for a LIST line: from the msgspec struct
straight to the bytes the writer stores (record, journal entry without its chain, index
entries, bindings), without building the Event and the record through the reference
objects (events.Event, lifecycle.new_listing): the same values, a third of the time.

Like fastdecode, it never rejects: a line it does not take in full (anything the fast
decoder does not take, or any value it is not sure of) returns None and goes the
reference way (`bulk.prepare_line`: decode_line, then lifecycle). What it builds is held
to the reference by tests/test_bulk.py (bulk vs event path vs reference ledger, digest
for digest, on random feeds with hostile lines) and by tests/test_fastdecode.py
(`prepare_list` vs lifecycle on every LIST of a large random feed).
"""

from __future__ import annotations

import re

from .fastdecode import (
    _DATE,
    _DECODER,
    _FALLBACK,
    _KINDS,
    _LIST_TYPES,
    _ROLES,
    _SCALARS,
    UNSET,
    _date_fromisoformat,
    _digest,
    _Fallback,
    _identifier,
    _List,
    _scalar,
    _text,
    _timestamp,
)
from .identity import DocumentType, InvalidDocument, mask_number, normalize, parse_document_type
from .settings import (
    MAX_CASE_NUMBER_CHARS,
    MAX_COURT_CHARS,
    MAX_EXTRA_DOCUMENTS,
    MAX_FEED_LINE_BYTES,
    MAX_NAME_CHARS,
    MAX_RESTRICTED_PERSONS,
)
from .store import dumps

_USCC = DocumentType.USCC


def _iso_date(value) -> str:
    if type(value) is not str or not _DATE.fullmatch(value):
        raise _FALLBACK
    _date_fromisoformat(value)  # a real day; its isoformat() is the text itself
    return value


def _document(doc, where: str, person_only: bool):
    try:
        doc_type = parse_document_type(doc.type, where)
        if person_only and doc_type is _USCC:
            raise _FALLBACK
        return normalize(doc_type, doc.number, None if doc.country is UNSET else doc.country, where)
    except InvalidDocument:
        raise _FALLBACK from None


_RESIDENT_ID = DocumentType.RESIDENT_ID.value
_RIC18 = re.compile("[0-9]{17}[0-9X]")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _canonical_resident_id(doc) -> str | None:
    """The number of a resident ID that `normalize` would return unchanged (18 characters,
    the right ISO 7064 check character, a birth date that can be a date, country absent
    or CHN), else None: `normalize` decides."""
    number = doc.number
    if doc.type != _RESIDENT_ID or doc.country not in (UNSET, None, "", "CHN") or not _RIC18.fullmatch(number):
        return None
    # stdnum.cn.ric.calc_check_digit, as identity.resident_id_check_char uses it.
    check = (1 - 2 * int(number[:17], 13)) % 11
    if number[17] != ("X" if check == 10 else str(check)):
        return None
    month, day = int(number[10:12]), int(number[12:14])
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]):
        return None
    return number


def _person_doc(doc, where: str, person_only: bool, key_of, of) -> tuple[str, str, str, bytes]:
    """(type, country, masked number, key) of a document, as normalize + document_key give them."""
    if of is not None:
        number = _canonical_resident_id(doc)
        if number is not None:
            return _RESIDENT_ID, "CHN", number[:10] + "****" + number[14:], of(_RESIDENT_ID, "CHN", number)
    document = _document(doc, where, person_only)
    return document.type.value, document.country, mask_number(document.type, document.number), key_of(document)


def prepare_list(line: bytes, key_of) -> tuple | None:
    """(event_id, listing_id, digest, occurred_at, list_type, record, index log records
    (key + listing id + kind + "+" each), bindings (document key + person key each),
    journal entry without its chain) of a LIST line the fast path takes in full, else None."""
    if len(line) > MAX_FEED_LINE_BYTES // 4:
        return None
    try:
        p = _DECODER.decode(line)
        if type(p) is not _List:
            return None
        return _prepare(p, key_of)
    except _Fallback:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: the reference decides
        return None


def _person(slot: str, role: str, name: str, doc: tuple, kind: str) -> dict:
    return {"slot": slot, "role": role, "name": name, "doc_type": doc[0], "country": doc[1], "masked": doc[2],
            "key": doc[3].hex(), "kind": kind}


def _prepare(p: _List, key_of) -> tuple:
    list_type = _LIST_TYPES.get(p.list_type)
    if list_type is None:
        raise _FALLBACK
    event_id = _identifier(p.event_id)
    occurred_at = _timestamp(p.occurred_at)
    listing_id = _identifier(p.listing_id)
    case_number = _text(p.case_number, MAX_CASE_NUMBER_CHARS)
    court = _text(p.court, MAX_COURT_CHARS)
    listed_on = _iso_date(p.listed_on)
    expires_on = None if p.expires_on is UNSET or p.expires_on is None else _iso_date(p.expires_on)
    if expires_on is not None and expires_on <= listed_on:
        raise _FALLBACK
    subject = p.subject
    kind = _KINDS.get(subject.kind)
    if kind is None:
        raise _FALLBACK
    organization = kind.value == "ORGANIZATION"
    name = _text(subject.name, MAX_NAME_CHARS)
    of = getattr(key_of, "of", None)
    subject_doc = _person_doc(subject.document, "subject.document", False, key_of, of)
    if organization is not (subject_doc[0] == _USCC.value):
        raise _FALLBACK
    extra_docs = p.extra_documents or ()
    restricted = p.restricted_persons or ()
    if p.extra_documents is UNSET:
        extra_docs = ()
    if p.restricted_persons is UNSET:
        restricted = ()
    if len(extra_docs) > MAX_EXTRA_DOCUMENTS or len(restricted) > MAX_RESTRICTED_PERSONS:
        raise _FALLBACK
    if (organization and extra_docs) or (not organization and restricted):
        raise _FALLBACK
    scalars = []
    for field, limit in _SCALARS:
        value = getattr(p, field)
        scalars.append(None if value is UNSET or value is None else _scalar(value, limit))

    subject_key = subject_doc[3]
    persons = [_person("subject", "SUBJECT", name, subject_doc, "O" if organization else "P")]
    entries = {subject_key: b"O" if organization else b"P"}
    bindings = set()
    for doc in extra_docs:
        document = _person_doc(doc, "extra_documents", True, key_of, of)
        key = document[3]
        persons.append(_person("extra", "SUBJECT", name, document, "E"))
        if key != subject_key:
            bindings.add((key, subject_key))
    for person in restricted:
        role = _ROLES.get(person.role)
        if role is None:
            raise _FALLBACK
        person_name = _text(person.name, MAX_NAME_CHARS)
        document = _person_doc(person.document, "restricted_persons.document", True, key_of, of)
        key = document[3]
        persons.append(_person("restricted", role.value, person_name, document, "P"))
        if key not in entries:  # (a person's document is never the organisation's USCC)
            entries[key] = b"P"
    record = {
        "listing_id": listing_id, "list_type": list_type.value, "status": "ACTIVE", "lifted_reason": None,
        "lifted_on": None, "event_ids": [event_id], "case_number": case_number, "court": court,
        "grounds": scalars[0], "obligation": scalars[1], "amount_unperformed": scalars[2], "listed_on": listed_on,
        "expires_on": expires_on, "subject_kind": kind.value, "organization_name": name if organization else None,
        "persons": persons,
    }
    added = sorted(entries.keys() | {document for document, _ in bindings})
    journal = dumps({"event_id": event_id, "type": "LIST", "listing_id": listing_id,
                     "added": [k.hex() for k in added]})
    lid = listing_id.encode()
    return (event_id, listing_id, _digest(p), occurred_at, list_type.value, dumps(record),
            b"".join(k + lid + v + b"+" for k, v in entries.items()), b"".join(d + s for d, s in sorted(bindings)),
            journal)
