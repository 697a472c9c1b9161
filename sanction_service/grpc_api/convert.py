"""Translation between sanction.v1 messages and the domain's types. No decisions here."""

from __future__ import annotations

from datetime import date

from sanction.v1 import admin_pb2
from sanction.v1 import restriction_pb2 as pb

from ..checker import CheckQuery, CheckResult
from ..decisions import Found, MatchOutcome
from ..policy import RailClass, ShipClass, TravelMode, Trip
from ..settings import MAX_NAME_CHARS
from ..text import text_problem


class InvalidField(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def to_date(message: pb.Date, field: str) -> date:
    try:
        return date(message.year, message.month, message.day)
    except ValueError:
        raise InvalidField(field, "is not a valid date") from None


def from_date(value: str | date | None) -> pb.Date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return pb.Date(year=value.year, month=value.month, day=value.day)


def enum_name(enum, value: int, field: str) -> str:
    """Proto3 enums are open: an unknown number is a caller error, not a crash."""
    try:
        return enum.Name(value)
    except ValueError:
        raise InvalidField(field, "unknown enum value") from None


def to_query(request: pb.CheckRequest) -> CheckQuery:
    if not request.HasField("document"):
        raise InvalidField("document", "is required")
    doc = request.document
    if doc.type == pb.DOCUMENT_TYPE_UNSPECIFIED:
        raise InvalidField("document.type", "is required")
    trip = to_trip(request.trip) if request.HasField("trip") else None
    travel_date = to_date(request.travel_date, "travel_date") if request.HasField("travel_date") else None
    doc_type = enum_name(pb.DocumentType, doc.type, "document.type")
    # The name is only compared with the listed one, but it is the caller's text all the same.
    name_problem = text_problem(request.name, MAX_NAME_CHARS, required=False)
    if name_problem:
        raise InvalidField("name", name_problem)
    return CheckQuery(doc_type, doc.number, doc.country, request.name, trip, travel_date)


def to_trip(trip: pb.Trip) -> Trip:
    if trip.mode == pb.TRAVEL_MODE_UNSPECIFIED:
        raise InvalidField("trip.mode", "is required when a trip is given")
    mode = TravelMode(enum_name(pb.TravelMode, trip.mode, "trip.mode"))
    rail_class = RailClass(enum_name(pb.RailClass, trip.rail_class, "trip.rail_class")) if trip.rail_class else None
    ship_class = (
        ShipClass(enum_name(pb.ShipClass, trip.ship_class, "trip.ship_class").removeprefix("SHIP_"))
        if trip.ship_class
        else None
    )
    if mode is TravelMode.RAIL and not trip.train_number:
        raise InvalidField("trip.train_number", "is required for RAIL")
    return Trip(mode, trip.train_number, rail_class, trip.cabin, ship_class)


def match_message(found: Found, outcome: MatchOutcome | None = None) -> pb.ListingMatch:
    listing, person = found.listing, found.person
    message = pb.ListingMatch(
        listing_id=listing.listing_id,
        case_number=listing.case_number,
        court=listing.court,
        list_type=pb.ListType.Value(listing.list_type),
        role=pb.Role.Value(person.role),
        organization_name=listing.organization_name or "" if person.role != "SUBJECT" else "",
        listed_on=from_date(listing.listed_on),
        expires_on=from_date(listing.expires_on),
        active=listing.status == "ACTIVE",
        lifted_reason=listing.lifted_reason or "",
        lifted_on=from_date(listing.lifted_on),
        listed_name=person.name,
        matched_document=person.masked if found.bound else "",
    )
    if outcome is not None:
        message.caused_denial = outcome.caused_denial
        if outcome.exemption is not None:
            message.exemption_applied = True
            message.exemption_reference = outcome.exemption.reference
    return message


def check_response(result: CheckResult) -> pb.CheckResponse:
    decision = result.decision
    return pb.CheckResponse(
        decision=pb.Decision.Value(decision.decision),
        restricted=decision.restricted,
        matches=[match_message(o.found, o) for o in decision.matches],
        masked_document=result.masked_document,
        name_mismatch=decision.name_mismatch,
        data_version=result.data_version,
        travel_date=from_date(result.travel_date),
    )


def listing_message(listing: dict, exemptions: list[dict], data_version: int) -> admin_pb2.Listing:
    def person(p: dict) -> admin_pb2.Person:
        return admin_pb2.Person(
            role=pb.Role.Value(p["role"]),
            name=p["name"],
            document_type=pb.DocumentType.Value(p["doc_type"]),
            masked_document=p["masked"],
            country=p["country"],
        )

    by_slot: dict[str, list] = {"subject": [], "extra": [], "restricted": []}
    for p in listing["persons"]:
        by_slot[p["slot"]].append(person(p))
    return admin_pb2.Listing(
        listing_id=listing["listing_id"],
        list_type=pb.ListType.Value(listing["list_type"]),
        case_number=listing["case_number"],
        court=listing["court"],
        listed_on=from_date(listing["listed_on"]),
        expires_on=from_date(listing["expires_on"]),
        active=listing["status"] == "ACTIVE",
        lifted_reason=listing["lifted_reason"] or "",
        lifted_on=from_date(listing["lifted_on"]),
        subject_kind=listing["subject_kind"],
        subject=by_slot["subject"][0],
        extra_documents=by_slot["extra"],
        restricted_persons=by_slot["restricted"],
        exemptions=[
            admin_pb2.Exemption(
                reference=e["reference"],
                masked_document=e["masked"],
                modes=[pb.TravelMode.Value(m) for m in e["modes"]],
                valid_from=from_date(e["valid_from"]),
                valid_to=from_date(e["valid_to"]),
            )
            for e in exemptions
        ],
        grounds=listing.get("grounds") or "",
        obligation=listing.get("obligation") or "",
        amount_unperformed=listing.get("amount_unperformed") or "",
        event_ids=listing["event_ids"],
        data_version=data_version,
    )
