"""Which purchases are restricted (限高规定 2015, art. 3; docs/DECISIONS.md §2) as data plus
one function, and which travel dates a check may ask about.

Pure domain code. `purchase_is_restricted` and `travel_day` either answer or raise
InvalidTrip naming the field: an ambiguous trip or an implausible date is a caller error,
never a silent ALLOW.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum

from .settings import TRAVEL_DAYS_AFTER_TODAY, TRAVEL_DAYS_BEFORE_TODAY


class TravelMode(str, Enum):
    FLIGHT = "FLIGHT"
    RAIL = "RAIL"
    SHIP = "SHIP"


class RailClass(str, Enum):
    BUSINESS = "BUSINESS"
    PREMIUM = "PREMIUM"
    FIRST = "FIRST"
    SECOND = "SECOND"
    SOFT_SLEEPER = "SOFT_SLEEPER"
    DELUXE_SOFT_SLEEPER = "DELUXE_SOFT_SLEEPER"
    HARD_SLEEPER = "HARD_SLEEPER"
    SOFT_SEAT = "SOFT_SEAT"
    HARD_SEAT = "HARD_SEAT"
    NO_SEAT = "NO_SEAT"


class ShipClass(str, Enum):
    SPECIAL = "SPECIAL"
    FIRST = "FIRST"
    SECOND = "SECOND"
    THIRD = "THIRD"
    FOURTH = "FOURTH"
    SEAT = "SEAT"


class TrainCategory(str, Enum):
    HIGH_SPEED = "G"  # G trains: every class
    OTHER_EMU = "D/C"  # D and C trains: the first-class-and-up seats
    CONVENTIONAL = "OTHER"  # Z, T, K, Y, L, S, digits only: soft sleepers only


class InvalidTrip(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Trip:
    mode: TravelMode
    train_number: str = ""
    rail_class: RailClass | None = None
    cabin: str = ""
    ship_class: ShipClass | None = None


# The policy table of docs/DECISIONS.md §2. None in a class set means "every class".
RESTRICTED_RAIL_CLASSES: dict[TrainCategory, frozenset[RailClass] | None] = {
    TrainCategory.HIGH_SPEED: None,
    TrainCategory.OTHER_EMU: frozenset(
        {
            RailClass.BUSINESS,
            RailClass.PREMIUM,
            RailClass.FIRST,
            RailClass.SOFT_SLEEPER,
            RailClass.DELUXE_SOFT_SLEEPER,
        }
    ),
    TrainCategory.CONVENTIONAL: frozenset({RailClass.SOFT_SLEEPER, RailClass.DELUXE_SOFT_SLEEPER}),
}
RESTRICTED_SHIP_CLASSES: frozenset[ShipClass] = frozenset({ShipClass.SPECIAL, ShipClass.FIRST, ShipClass.SECOND})
# Every flight cabin is restricted, so the cabin is informational only.
FLIGHT_RESTRICTED = True

_TRAIN_NUMBER = re.compile(r"^[GDCZTKYLS]?[0-9]{1,4}$")


def train_category(train_number: str) -> TrainCategory:
    number = train_number.strip().upper()
    if not _TRAIN_NUMBER.match(number):
        raise InvalidTrip("trip.train_number", "must match [GDCZTKYLS]?[0-9]{1,4}")
    if number[0] == "G":
        return TrainCategory.HIGH_SPEED
    if number[0] in "DC":
        return TrainCategory.OTHER_EMU
    return TrainCategory.CONVENTIONAL


def purchase_is_restricted(trip: Trip) -> bool:
    """True when a restricted person may not buy this trip."""
    if trip.mode is TravelMode.FLIGHT:
        return FLIGHT_RESTRICTED
    if trip.mode is TravelMode.RAIL:
        restricted = RESTRICTED_RAIL_CLASSES[train_category(trip.train_number)]
        if restricted is None:
            return True
        if trip.rail_class is None:
            raise InvalidTrip("trip.rail_class", "is required for a train that is not a G train")
        return trip.rail_class in restricted
    if trip.mode is TravelMode.SHIP:
        if trip.ship_class is None:
            raise InvalidTrip("trip.ship_class", "is required for SHIP")
        return trip.ship_class in RESTRICTED_SHIP_CLASSES
    raise InvalidTrip("trip.mode", "must be FLIGHT, RAIL or SHIP")


def travel_day(requested: date | None, today: date) -> date:
    """The day a check answers for: the travel date, or today (Asia/Shanghai) without one.

    Tickets are sold at most about a year ahead and never for the past, so a date before
    yesterday or more than a year ahead is refused rather than answered: a client that
    sends an epoch or far-future default must not turn every DENY into ALLOW. Yesterday
    stays allowed for callers whose own clock is still on the previous day.
    """
    if requested is None:
        return today
    earliest = today - timedelta(days=TRAVEL_DAYS_BEFORE_TODAY)
    latest = today + timedelta(days=TRAVEL_DAYS_AFTER_TODAY)
    if not earliest <= requested <= latest:
        raise InvalidTrip(
            "travel_date", f"must be from yesterday to {TRAVEL_DAYS_AFTER_TODAY} days after today (Asia/Shanghai)"
        )
    return requested
