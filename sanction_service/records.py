"""The stored listing and exemption records as typed objects, for the check path.

The store keeps each record as JSON (`lifecycle` builds them as dicts, `store.dumps`
writes them). A check that finds a listed person reads the record back; decoding it into
dicts with the standard json module cost ~6 µs for a typical 640-byte record. Here the
same bytes decode into msgspec Structs whose fields are the record's keys, in the stored
order (~1.3 µs, validated in C): no schema change, and `dumps(to_builtins(struct))` gives
the stored bytes back. The dict decoding (`store.loads`, `json.loads`) stays the reference
that the writers and the admin API use; tests/test_records.py holds the two to each other
field for field on many random records.

A record that does not have this shape is not answered from: `RecordUnreadable` (the
store turns it into StoreCorrupt, which callers answer with UNAVAILABLE, never ALLOW).

Item access (`record["status"]`, `.get`) reads the same fields, so code written against
the dict records keeps working; the hot path uses the attributes.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct


class RecordUnreadable(Exception):
    """A stored record does not decode into its typed shape."""


class _ItemAccess:
    """`record[name]` and `record.get(name, default)` as on the dict records."""

    __slots__ = ()
    __struct_fields__: tuple[str, ...]  # (set by msgspec on each Struct below)

    def __getitem__(self, name: str):
        if name not in self.__struct_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default=None):
        return getattr(self, name) if name in self.__struct_fields__ else default


class PersonEntry(_ItemAccess, Struct, frozen=True, gc=False):
    """One entry of a listing's `persons` (lifecycle._person)."""

    slot: str
    role: str
    name: str
    doc_type: str
    country: str
    masked: str
    key: str
    kind: str


class ListingRecord(_ItemAccess, Struct, frozen=True, gc=False):
    """A listing record (lifecycle.new_listing and its successors), fields in stored order."""

    listing_id: str
    list_type: str
    status: str
    lifted_reason: str | None
    lifted_on: str | None
    event_ids: list[str]
    case_number: str
    court: str
    grounds: str | None
    obligation: str | None
    amount_unperformed: str | None
    listed_on: str
    expires_on: str | None
    subject_kind: str
    organization_name: str | None
    persons: list[PersonEntry]


class ExemptionRecord(_ItemAccess, Struct, frozen=True, gc=False):
    """An exemption (lifecycle.exemption), fields in stored order."""

    listing_id: str
    reference: str
    masked: str
    modes: list[str]
    valid_from: str
    valid_to: str


_LISTING = msgspec.json.Decoder(ListingRecord).decode
_EXEMPTION = msgspec.json.Decoder(ExemptionRecord).decode


def decode_listing(raw: bytes) -> ListingRecord:
    try:
        return _LISTING(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordUnreadable(f"a listing record does not have the expected shape ({exc})") from None


def decode_exemption(raw: bytes) -> ExemptionRecord:
    try:
        return _EXEMPTION(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordUnreadable(f"an exemption record does not have the expected shape ({exc})") from None


def to_builtins(record: Struct) -> dict:
    """The record as the dicts the reference decoding gives."""
    return msgspec.to_builtins(record)
