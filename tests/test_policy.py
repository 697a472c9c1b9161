import itertools
from datetime import date, timedelta

import pytest

from sanction_service.policy import (
    InvalidTrip,
    RailClass,
    ShipClass,
    TravelMode,
    Trip,
    purchase_is_restricted,
    train_category,
    travel_day,
)

EMU_RESTRICTED = {RailClass.BUSINESS, RailClass.PREMIUM, RailClass.FIRST, RailClass.SOFT_SLEEPER, RailClass.DELUXE_SOFT_SLEEPER}
SLEEPERS = {RailClass.SOFT_SLEEPER, RailClass.DELUXE_SOFT_SLEEPER}


def rail(train: str, cls: RailClass | None) -> Trip:
    return Trip(TravelMode.RAIL, train_number=train, rail_class=cls)


# docs/DECISIONS.md §2 spelled out independently of policy.py's table, for every train prefix and class.
def expected(prefix: str, cls: RailClass) -> bool:
    if prefix == "G":
        return True
    if prefix in ("D", "C"):
        return cls in EMU_RESTRICTED
    return cls in SLEEPERS


@pytest.mark.parametrize(
    "prefix,cls", list(itertools.product(["G", "D", "C", "Z", "T", "K", "Y", "L", "S", ""], list(RailClass)))
)
def test_rail_table_is_exhaustive(prefix, cls):
    assert purchase_is_restricted(rail(f"{prefix}123", cls)) is expected(prefix, cls)


def test_d_train_second_class_is_allowed():
    assert purchase_is_restricted(rail("D301", RailClass.SECOND)) is False


def test_g_train_without_class_is_restricted():
    assert purchase_is_restricted(rail("G1", None)) is True


def test_lower_case_train_number_is_upper_cased():
    assert train_category(" g7 ").value == "G"


@pytest.mark.parametrize("train", ["D1", "K1", "1461", "Z99"])
def test_non_g_train_without_class_is_a_caller_error(train):
    with pytest.raises(InvalidTrip) as exc:
        purchase_is_restricted(rail(train, None))
    assert exc.value.field == "trip.rail_class"


@pytest.mark.parametrize("train", ["", "G", "X123", "G12345", "GG12", "G-12", "12a"])
def test_garbage_train_numbers_are_caller_errors(train):
    with pytest.raises(InvalidTrip) as exc:
        purchase_is_restricted(rail(train, RailClass.SECOND))
    assert exc.value.field == "trip.train_number"


@pytest.mark.parametrize("cabin", ["", "F", "C", "Y", "economy"])
def test_every_flight_cabin_is_restricted(cabin):
    assert purchase_is_restricted(Trip(TravelMode.FLIGHT, cabin=cabin)) is True


@pytest.mark.parametrize("cls", list(ShipClass))
def test_ship_classes(cls):
    restricted = cls in {ShipClass.SPECIAL, ShipClass.FIRST, ShipClass.SECOND}
    assert purchase_is_restricted(Trip(TravelMode.SHIP, ship_class=cls)) is restricted


def test_ship_without_class_is_a_caller_error():
    with pytest.raises(InvalidTrip) as exc:
        purchase_is_restricted(Trip(TravelMode.SHIP))
    assert exc.value.field == "trip.ship_class"


TODAY = date(2026, 3, 1)  # the day after a 28-day February: the window crosses month ends


@pytest.mark.parametrize(
    "travel,answered",
    [
        (None, True),
        (TODAY - timedelta(days=1), True),
        (TODAY, True),
        (TODAY + timedelta(days=366), True),
        (TODAY - timedelta(days=2), False),
        (TODAY + timedelta(days=367), False),
        (date(1, 1, 1), False),
        (date(9999, 12, 31), False),
        (date(1970, 1, 1), False),
    ],
)
def test_travel_day_is_yesterday_to_366_days_ahead(travel, answered):
    if answered:
        assert travel_day(travel, TODAY) == (travel or TODAY)
        return
    with pytest.raises(InvalidTrip) as exc:
        travel_day(travel, TODAY)
    assert exc.value.field == "travel_date"
