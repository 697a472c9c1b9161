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

import msgspec
from msgspec import Struct

from .events import DELIST_REASONS
from .fastdecode import (
    _DATE,
    _DECODER,
    _FALLBACK,
    _KINDS,
    _LIST_TYPES,
    _ROLES,
    UNSET,
    _Correct,
    _date_fromisoformat,
    _Delist,
    _digest,
    _Doc,
    _Exempt,
    _Extend,
    _Fallback,
    _identifier,
    _List,
    _Perform,
    _Person,
    _scalar,
    _timestamp,
)
from .identity import DocumentType, InvalidDocument, mask_number, normalize, parse_document_type
from .records import ListingRecord, PersonEntry
from .settings import (
    MAX_AMOUNT_CHARS,
    MAX_CASE_NUMBER_CHARS,
    MAX_COURT_CHARS,
    MAX_EXTRA_DOCUMENTS,
    MAX_FEED_LINE_BYTES,
    MAX_FREE_TEXT_CHARS,
    MAX_IDENTIFIER_BYTES,
    MAX_NAME_CHARS,
    MAX_RESTRICTED_PERSONS,
)
from .text import _FORBIDDEN

_USCC = DocumentType.USCC
_USCC_VALUE = _USCC.value
# ledger's kinds of prepared item (ledger imports this module, so they are repeated here;
# tests/test_bulk.py holds them equal).
PREPARED, TEXT, FOLLOW = 0, 1, 3
_LIST_TYPE_VALUES = frozenset(_LIST_TYPES)
_KIND_VALUES = frozenset(_KINDS)


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


# Documents `normalize` returns unchanged, besides resident IDs: a USCC of its 18
# characters with the right GB 32100 check character, a passport or permit of 5-20
# capital letters and digits; issued by CHN (country absent or "CHN"), a passport by any
# country given as three capital letters.
_USCC18 = re.compile("[0-9A-HJ-NPQRTUWXY]{18}")
_FORMAT_ONLY = re.compile("[A-Z0-9]{5,20}")
_COUNTRY = re.compile("[A-Z]{3}")
_PASSPORT = DocumentType.PASSPORT.value
_PERMITS = frozenset(t.value for t in DocumentType) - {_RESIDENT_ID, _USCC.value, _PASSPORT}
# stdnum.cn.uscc.calc_check_digit, as identity.normalize uses it.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _uscc_check(number: str) -> str:
    values = _USCC_VALUES
    return _USCC_ALPHABET[(31 - sum(values[c] * w for c, w in zip(number, _USCC_WEIGHTS))) % 31]


def _canonical_other(doc, person_only: bool) -> tuple[str, str, str] | None:
    """(type, country, masked number) of a USCC, passport or permit that `normalize`
    would return unchanged, else None: `normalize` decides."""
    doc_type, number, country = doc.type, doc.number, doc.country
    chinese = country is UNSET or country is None or country == "" or country == "CHN"
    if doc_type == _PASSPORT:
        if chinese:
            country = "CHN"
        elif type(country) is not str or not _COUNTRY.fullmatch(country):
            return None
        if not _FORMAT_ONLY.fullmatch(number):
            return None
    elif not chinese:
        return None
    elif doc_type == _USCC_VALUE:
        if person_only or not _USCC18.fullmatch(number) or _uscc_check(number) != number[17]:
            return None
        country = "CHN"
    elif doc_type in _PERMITS:
        if not _FORMAT_ONLY.fullmatch(number):
            return None
        country = "CHN"
    else:
        return None
    # identity.mask_number of a number longer than 4 characters, not a resident ID.
    return doc_type, country, number[:2] + "*" * (len(number) - 4) + number[-2:]


def _person_doc(doc, where: str, person_only: bool, key_of, of) -> tuple[str, str, str, bytes]:
    """(type, country, masked number, key) of a document, as normalize + document_key give them."""
    if of is not None:
        number = _canonical_resident_id(doc)
        if number is not None:
            return _RESIDENT_ID, "CHN", number[:10] + "****" + number[14:], of(_RESIDENT_ID, "CHN", number)
        other = _canonical_other(doc, person_only)
        if other is not None:
            return (*other, of(other[0], other[1], doc.number))
    document = _document(doc, where, person_only)
    return document.type.value, document.country, mask_number(document.type, document.number), key_of(document)


def prepare_list(line: bytes, key_of) -> tuple | None:
    """(event_id, listing_id, digest, occurred_at, list_type, record, index log records
    (key + listing id + kind + "+" each), bindings (document key + person key each),
    journal entry without its chain) of a LIST line the fast path takes in full, else None."""
    fast = prepare_event(line, key_of)
    return fast[1] if fast is not None and fast[0] else None


def prepare_item(number: int, line: bytes, key_of) -> tuple | None:
    """What `ledger.prepare_line` returns for a line the fast path takes (a PREPARED LIST
    or a FOLLOW tuple, line `number`), else None: the caller then asks `prepare_line`."""
    if len(line) > MAX_FEED_LINE_BYTES // 4:
        return None
    try:
        p = _DECODER.decode(line)
        kind = type(p)
        if kind is _List:
            return (number, PREPARED, *_prepare(p, key_of))
        if kind is _Delist:
            if p.reason not in DELIST_REASONS:
                return None
            return (number, FOLLOW, *_follow(p, "DELIST", p.reason, p.effective_on))
        if kind is _Perform:
            return (number, FOLLOW, *_follow(p, "PERFORM", "PERFORMED", p.performed_on))
        if kind is _Extend:
            return (number, FOLLOW, *_follow(p, "EXTEND", None, p.expires_on))
        if kind is _Correct or kind is _Exempt:
            # The writer decodes these again whatever the worker finds (prepare_line's
            # TEXT), and its decode_line rejects an invalid one exactly as the worker's
            # REJECT would be reported: decoding them here too would be wasted.
            return (number, TEXT, line)
        return None
    except _Fallback:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: the reference decides
        return None


def prepare_event(line: bytes | str, key_of) -> tuple[bool, tuple] | None:
    """(True, what `prepare_list` returns) for a LIST the fast path takes in full;
    (False, (type, event_id, listing_id, digest, occurred_at, reason or None, the date
    as YYYY-MM-DD)) for a DELIST, PERFORM or EXTEND it takes (what fastdecode's Event
    holds, without building it); else None."""
    if len(line) > MAX_FEED_LINE_BYTES // 4:
        return None
    try:
        p = _DECODER.decode(line)
        kind = type(p)
        if kind is _List:
            return True, _prepare(p, key_of)
        if kind is _Delist:
            if p.reason not in DELIST_REASONS:
                return None
            return False, _follow(p, "DELIST", p.reason, p.effective_on)
        if kind is _Perform:
            return False, _follow(p, "PERFORM", "PERFORMED", p.performed_on)
        if kind is _Extend:
            return False, _follow(p, "EXTEND", None, p.expires_on)
        return None
    except _Fallback:
        return None
    except Exception:  # noqa: BLE001 - anything unexpected: the reference decides
        return None


def _follow(p, type_: str, reason: str | None, day: str) -> tuple:
    """fastdecode._common and the builder's checks, in the builder's order."""
    event_id = _identifier(p.event_id)
    occurred_at = _timestamp(p.occurred_at)
    listing_id = _identifier(p.listing_id)
    return type_, event_id, listing_id, _digest(p), occurred_at, reason, _iso_date(day)


class _Journal(Struct):
    """A journal entry without its chain (ledger.journal_entry), fields in stored order."""

    event_id: str
    type: str
    listing_id: str
    added: list[str]


_ENCODE = msgspec.json.Encoder().encode
_FORBIDDEN_SEARCH = _FORBIDDEN.search


def _ident(value: str) -> str:
    """fastdecode._identifier without the call to text.identifier_problem for the common
    case (the caller checks `isprintable` on all identifiers of the event at once)."""
    if len(value) > MAX_IDENTIFIER_BYTES or (
        not value.isascii() and len(value.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES
    ):
        raise _FALLBACK
    stripped = value.strip()
    if not stripped:
        raise _FALLBACK
    return stripped


def _prepare(p: _List, key_of) -> tuple:
    """The same checks as fastdecode's on the same values (text.text_problem and
    identifier_problem, done here for all the event's texts at once: a string has no
    forbidden character iff their concatenation has none, and likewise for printable),
    then the stored bytes from msgspec Structs in stored field order. Every check only
    falls back, so their order is free: the cheap ones come first, and the common
    listing (one subject, no other document or person) skips the general bookkeeping."""
    list_type = p.list_type
    if list_type not in _LIST_TYPE_VALUES:
        raise _FALLBACK
    raw_event_id, raw_listing_id = p.event_id, p.listing_id
    event_id, listing_id = _ident(raw_event_id), _ident(raw_listing_id)
    if not (raw_event_id + raw_listing_id).isprintable():
        raise _FALLBACK
    occurred_at = _timestamp(p.occurred_at)
    subject = p.subject
    case_number, court, name = p.case_number, p.court, subject.name
    if len(case_number) > MAX_CASE_NUMBER_CHARS or len(court) > MAX_COURT_CHARS or len(name) > MAX_NAME_CHARS:
        raise _FALLBACK
    texts = [case_number, court, name]
    case_number, court, name = case_number.strip(), court.strip(), name.strip()
    if not (case_number and court and name):
        raise _FALLBACK
    listed_on = _iso_date(p.listed_on)
    expires_on = p.expires_on
    if expires_on is UNSET or expires_on is None:
        expires_on = None
    else:
        expires_on = _iso_date(expires_on)
        if expires_on <= listed_on:
            raise _FALLBACK
    kind = subject.kind
    if kind not in _KIND_VALUES:
        raise _FALLBACK
    organization = kind == "ORGANIZATION"
    of = getattr(key_of, "of", None)
    doc = subject.document
    number = None if of is None else _canonical_resident_id(doc)
    if of is not None and number is not None:
        subject_type, subject_country, subject_masked = _RESIDENT_ID, "CHN", number[:10] + "****" + number[14:]
        subject_key = of(_RESIDENT_ID, "CHN", number)
    else:
        subject_type, subject_country, subject_masked, subject_key = _person_doc(doc, "subject.document", False, key_of, of)
    if organization is not (subject_type == _USCC_VALUE):
        raise _FALLBACK
    given_docs, given_persons = p.extra_documents, p.restricted_persons
    extra_docs: list[_Doc] | tuple[()] = () if given_docs is UNSET or given_docs is None else given_docs
    restricted: list[_Person] | tuple[()] = () if given_persons is UNSET or given_persons is None else given_persons
    if len(extra_docs) > MAX_EXTRA_DOCUMENTS or len(restricted) > MAX_RESTRICTED_PERSONS:
        raise _FALLBACK
    if (organization and extra_docs) or (not organization and restricted):
        raise _FALLBACK
    grounds = p.grounds
    if grounds is UNSET or grounds is None:
        grounds = None
    elif type(grounds) is str:
        if len(grounds) > MAX_FREE_TEXT_CHARS:
            raise _FALLBACK
        texts.append(grounds)
    else:
        grounds = _scalar(grounds, MAX_FREE_TEXT_CHARS)
    obligation = p.obligation
    if obligation is UNSET or obligation is None:
        obligation = None
    elif type(obligation) is str:
        if len(obligation) > MAX_FREE_TEXT_CHARS:
            raise _FALLBACK
        texts.append(obligation)
    else:
        obligation = _scalar(obligation, MAX_FREE_TEXT_CHARS)
    amount = p.amount_unperformed
    if amount is UNSET or amount is None:
        amount = None
    elif type(amount) is str:
        if len(amount) > MAX_AMOUNT_CHARS:
            raise _FALLBACK
        texts.append(amount)
    else:
        amount = _scalar(amount, MAX_AMOUNT_CHARS)

    subject_hex = subject_key.hex()
    subject_kind = b"O" if organization else b"P"
    persons = [
        PersonEntry(
            "subject", "SUBJECT", name, subject_type, subject_country, subject_masked, subject_hex, "O" if organization else "P"
        )
    ]
    lid = listing_id.encode()
    if not extra_docs and not restricted:
        # One subject: one index entry, no binding, the subject's key the only one added.
        added = [subject_hex]
        records = subject_key + lid + subject_kind + b"+"
        bound = b""
    else:
        entries = {subject_key: subject_kind}
        bindings = set()
        for doc in extra_docs:
            document = _person_doc(doc, "extra_documents", True, key_of, of)
            key = document[3]
            persons.append(PersonEntry("extra", "SUBJECT", name, document[0], document[1], document[2], key.hex(), "E"))
            if key != subject_key:
                bindings.add((key, subject_key))
        for person in restricted:
            role = _ROLES.get(person.role)
            if role is None:
                raise _FALLBACK
            person_name = person.name
            if len(person_name) > MAX_NAME_CHARS or not person_name.strip():
                raise _FALLBACK
            texts.append(person_name)
            document = _person_doc(person.document, "restricted_persons.document", True, key_of, of)
            key = document[3]
            persons.append(
                PersonEntry(
                    "restricted", role.value, person_name.strip(), document[0], document[1], document[2], key.hex(), "P"
                )
            )
            if key not in entries:  # (a person's document is never the organisation's USCC)
                entries[key] = b"P"
        added = [k.hex() for k in sorted(entries.keys() | {document for document, _ in bindings})]
        records = b"".join(k + lid + v + b"+" for k, v in entries.items())
        bound = b"".join(d + s for d, s in sorted(bindings))
    if _FORBIDDEN_SEARCH("".join(texts)):
        raise _FALLBACK
    record = ListingRecord(
        listing_id,
        list_type,
        "ACTIVE",
        None,
        None,
        [event_id],
        case_number,
        court,
        grounds,
        obligation,
        amount,
        listed_on,
        expires_on,
        kind,
        name if organization else None,
        persons,
    )
    return (
        event_id,
        listing_id,
        _digest(p),
        occurred_at,
        list_type,
        _ENCODE(record),
        records,
        bound,
        _ENCODE(_Journal(event_id, "LIST", listing_id, added)),
    )
