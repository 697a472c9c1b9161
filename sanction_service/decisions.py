"""From the listings that name a person to ALLOW or DENY, with the reasons.

Pure domain code. The inputs are what the store found for one document key; the trip has
already been validated by `policy`. Dates are ISO strings, which compare in date order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .lifecycle import ACTIVE
from .policy import TravelMode
from .records import ExemptionRecord, ListingRecord, PersonEntry

ALLOW = "ALLOW"
DENY = "DENY"


@dataclass(frozen=True, slots=True)
class Found:
    """One listing that names the person, with the person's entry and exemptions."""

    listing: ListingRecord
    person: PersonEntry
    exemptions: tuple[ExemptionRecord, ...] = ()
    # Found through a binding: the listing names the person under another document.
    bound: bool = False


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    found: Found
    restricts: bool
    exemption: ExemptionRecord | None
    caused_denial: bool


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    restricted: bool
    matches: tuple[MatchOutcome, ...] = field(default_factory=tuple)
    name_mismatch: bool = False


def listing_restricts_on(listing: ListingRecord, day: str) -> bool:
    """docs/DECISIONS.md §5: active and listed_on <= day < expires_on (no expiry: open-ended)."""
    if listing.status != ACTIVE or listing.listed_on > day:
        return False
    expires_on = listing.expires_on
    return expires_on is None or day < expires_on


def covering_exemption(exemptions: tuple[ExemptionRecord, ...], mode: TravelMode, day: str) -> ExemptionRecord | None:
    for exemption in exemptions:
        if mode.value in exemption.modes and exemption.valid_from <= day <= exemption.valid_to:
            return exemption
    return None


def decide(found: list[Found], *, purchase_restricted: bool, mode: TravelMode | None, day: str, name: str = "") -> Decision:
    """`purchase_restricted` is the policy's answer for the trip (True when there is no trip)."""
    outcomes = []
    for item in found:
        restricts = listing_restricts_on(item.listing, day)
        exemption = covering_exemption(item.exemptions, mode, day) if (restricts and mode) else None
        outcomes.append(MatchOutcome(item, restricts, exemption, restricts and purchase_restricted and exemption is None))
    denied = any(o.caused_denial for o in outcomes)
    restricted = any(o.restricts for o in outcomes)
    wanted = _name_key(name)
    mismatch = bool(wanted) and any(_name_key(o.found.person.name) != wanted for o in outcomes if o.restricts)
    return Decision(DENY if denied else ALLOW, restricted, tuple(outcomes), mismatch)


def _name_key(name: str) -> str:
    return "".join(name.split()).casefold()
