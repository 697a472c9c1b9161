"""Identity documents: normalisation, checksums, masking and the keyed lookup key.

Owns the rules of docs/DOCUMENTS.md. Pure functions, no I/O: the pepper is passed in by the caller.
Must never log or put a full document number in an exception message: errors name
the field and the rule, never the value.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from stdnum.cn import ric, uscc

from .settings import MAX_COUNTRY_CHARS, MAX_DOCUMENT_NUMBER_CHARS

if TYPE_CHECKING:
    import numpy as np


class DocumentType(str, Enum):
    RESIDENT_ID = "RESIDENT_ID"
    USCC = "USCC"
    PASSPORT = "PASSPORT"
    HK_MACAO_PERMIT = "HK_MACAO_PERMIT"
    TAIWAN_PERMIT = "TAIWAN_PERMIT"
    FOREIGN_PERMANENT_RESIDENT_ID = "FOREIGN_PERMANENT_RESIDENT_ID"


class InvalidDocument(ValueError):
    """A document that cannot be a real one. `field` names the offending part."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Document:
    """A normalised document: upper-case, no separators, checksum verified."""

    type: DocumentType
    number: str
    country: str

    def masked(self) -> str:
        return mask_number(self.type, self.number)

    def __repr__(self) -> str:  # keeps full numbers out of tracebacks and logs
        return f"Document({self.type.value}, {self.masked()}, {self.country})"


DEFAULT_COUNTRY = "CHN"
KEY_SIZE = 16

_STRIP = str.maketrans("", "", " -\t")
_RIC18 = re.compile(r"^[0-9]{17}[0-9X]$")
_RIC15 = re.compile(r"^[0-9]{15}$")
_USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
_FORMAT_ONLY = re.compile(r"^[A-Z0-9]{5,20}$")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


_DOCUMENT_TYPES = {t.value: t for t in DocumentType}


def parse_document_type(value: object, field: str = "document.type") -> DocumentType:
    doc_type = _DOCUMENT_TYPES.get(value) if isinstance(value, str) else None
    if doc_type is None:
        raise InvalidDocument(field, "unknown document type")
    return doc_type


def normalize(doc_type: DocumentType, number: str, country: str | None = "", field: str = "document") -> Document:
    """Return the canonical Document or raise InvalidDocument naming `field.*`."""
    if not isinstance(number, str):
        raise InvalidDocument(f"{field}.number", "must be a string")
    # Bounded before any work on it: a megabyte-long number costs nothing to refuse.
    if len(number) > MAX_DOCUMENT_NUMBER_CHARS:
        raise InvalidDocument(f"{field}.number", f"is longer than {MAX_DOCUMENT_NUMBER_CHARS} characters")
    if country is not None and not isinstance(country, str):
        raise InvalidDocument(f"{field}.country", "must be a string")
    if country is not None and len(country) > MAX_COUNTRY_CHARS:
        raise InvalidDocument(f"{field}.country", "must be an ISO 3166 alpha-3 code")
    cleaned = number.translate(_STRIP).upper()
    if not cleaned:
        raise InvalidDocument(f"{field}.number", "is empty")
    country = (country or "").strip().upper()
    if doc_type is DocumentType.PASSPORT:
        country = country or DEFAULT_COUNTRY
        if not _COUNTRY.match(country):
            raise InvalidDocument(f"{field}.country", "must be an ISO 3166 alpha-3 code")
    elif country and country != DEFAULT_COUNTRY:
        # Resident IDs, USCCs and the permits are all issued by China.
        raise InvalidDocument(f"{field}.country", f"{doc_type.value} is only issued by CHN")
    else:
        country = DEFAULT_COUNTRY

    if doc_type is DocumentType.RESIDENT_ID:
        cleaned = _resident_id(cleaned, f"{field}.number")
    elif doc_type is DocumentType.USCC:
        if not _USCC.match(cleaned):
            raise InvalidDocument(f"{field}.number", "USCC must be 18 characters of 0-9A-HJ-NPQRTUWXY")
        if uscc.calc_check_digit(cleaned[:17]) != cleaned[17]:
            raise InvalidDocument(f"{field}.number", "USCC check character does not match (GB 32100)")
    elif not _FORMAT_ONLY.match(cleaned):
        raise InvalidDocument(f"{field}.number", f"{doc_type.value} must be 5-20 letters and digits")
    return Document(doc_type, cleaned, country)


def _resident_id(cleaned: str, field: str) -> str:
    if _RIC15.match(cleaned):
        # Legacy 15-digit IDs (before 1999) omit the century and the check char.
        body = cleaned[:6] + "19" + cleaned[6:]
        cleaned = body + resident_id_check_char(body)
    elif not _RIC18.match(cleaned):
        raise InvalidDocument(field, "resident ID must be 18 characters (or 15 digits)")
    elif resident_id_check_char(cleaned[:17]) != cleaned[17]:
        raise InvalidDocument(field, "resident ID check character does not match (ISO 7064 MOD 11-2)")
    # A cheap birth-date sanity check instead of ric.validate, which costs ~23 µs
    # and rejects historic region codes that real IDs still carry.
    month, day = int(cleaned[10:12]), int(cleaned[12:14])
    if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]):
        raise InvalidDocument(field, "resident ID birth date is not a date")
    return cleaned


def resident_id_check_char(body17: str) -> str:
    # stdnum's calc_check_digit expects the whole number and ignores its last character.
    return ric.calc_check_digit(body17 + "0")


def mask_number(doc_type: DocumentType, number: str) -> str:
    if doc_type is DocumentType.RESIDENT_ID and len(number) == 18:
        return number[:10] + "****" + number[14:]
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def document_key(pepper: bytes, doc: Document) -> bytes:
    """Keyed hash of `type:country:number`: the only form a number takes in the store."""
    material = f"{doc.type.value}:{doc.country}:{doc.number}".encode()
    # Keyed BLAKE2b is a MAC in its own right (no HMAC wrapper needed) and ~3x faster.
    return hashlib.blake2b(material, key=pepper, digest_size=KEY_SIZE).digest()


@functools.cache
def _ric_tables():
    """ISO 7064 MOD 11-2 over the 17 digits of a resident ID: weight 2^(17-i) mod 11, the
    check character for each remainder; the days of each month. Built on first use, so
    that numpy (~50 ms to import) is not loaded by commands that check no batch (a daily
    `sanction load`)."""
    import numpy as np

    return (
        np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64),
        np.frombuffer(b"10X98765432", dtype=np.uint8),
        np.array(_DAYS_IN_MONTH, dtype=np.int64),
    )


def canonical_resident_ids(numbers: list[str]) -> np.ndarray:
    """For a batch, which numbers are already canonical valid resident IDs (18 characters,
    17 digits and the right check character, upper-case X, a birth date that can be a
    date): for those, `normalize` would return the number unchanged. False means only
    "not this fast way": `normalize` decides (15-digit IDs, separators, lower-case x,
    errors with their messages). tests/test_batch_fast.py holds the two to each other."""
    import numpy as np

    result = np.zeros(len(numbers), dtype=bool)
    candidates = [i for i, n in enumerate(numbers) if len(n) == 18 and n.isascii()]
    if candidates:
        joined = "".join(numbers[i] for i in candidates).encode("ascii")
        result[np.array(candidates)[canonical_resident_id_bytes(joined)]] = True
    return result


def canonical_resident_id_bytes(joined: bytes) -> np.ndarray:
    """`canonical_resident_ids` for numbers of 18 bytes each, given concatenated."""
    import numpy as np

    ric_weights, ric_check, month_days = _ric_tables()
    raw = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 18)
    digits = raw[:, :17].astype(np.int64) - 48
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    ok &= raw[:, 17] == ric_check[(digits * ric_weights).sum(axis=1) % 11]
    month = digits[:, 10] * 10 + digits[:, 11]
    day = digits[:, 12] * 10 + digits[:, 13]
    ok &= (month >= 1) & (month <= 12)
    ok &= (day >= 1) & (day <= month_days[np.clip(month, 0, 12)])
    return ok


class DocumentKeys:
    """`document_key` under one pepper: called on a Document, or `of(type, country,
    number)` on the canonical texts, from a keyed hash state per (type, country) that
    already holds the pepper and the prefix (same digests)."""

    __slots__ = ("_pepper", "_states")

    def __init__(self, pepper: bytes):
        self._pepper = pepper
        self._states: dict = {}

    def __call__(self, doc: Document) -> bytes:
        return document_key(self._pepper, doc)

    def of(self, type_value: str, country: str, number: str) -> bytes:
        state = self._states.get((type_value, country))
        if state is None:
            state = self._states[(type_value, country)] = hashlib.blake2b(
                f"{type_value}:{country}:".encode(), key=self._pepper, digest_size=KEY_SIZE
            )
        h = state.copy()
        h.update(number.encode())
        return h.digest()


class Keyer:
    """`document_key` for many documents of one type and country: the keyed hash state
    that already holds the pepper and the `type:country:` prefix is copied per number
    instead of being set up again (same digests, a third of the cost)."""

    def __init__(self, pepper: bytes, doc_type: DocumentType, country: str = DEFAULT_COUNTRY):
        self._state = hashlib.blake2b(f"{doc_type.value}:{country}:".encode(), key=pepper, digest_size=KEY_SIZE)

    def keys(self, numbers: list[bytes]) -> bytes:
        """The keys of canonical numbers (UTF-8 bytes), concatenated (16 bytes each)."""
        copy = self._state.copy
        digests: list[bytes] = []
        append = digests.append
        for number in numbers:
            h = copy()
            h.update(number)
            append(h.digest())
        return b"".join(digests)


def pepper_fingerprint(pepper: bytes) -> str:
    """Identifies a pepper without revealing it, so a store can refuse a different one."""
    return hashlib.blake2b(b"sanction-pepper-fingerprint", key=pepper, digest_size=16).hexdigest()
