"""Python client for the restriction service.

Retries UNAVAILABLE through gRPC's own retry policy (service config), applies a deadline
to every call, and returns typed results. It never turns an error into ALLOW: every
failure raises ServiceError, and a caller that cannot get an answer must not sell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sanction.v1 import admin_pb2, admin_pb2_grpc, restriction_pb2_grpc
from sanction.v1 import restriction_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 2.0

# Every RPC is safe to retry: checks read, and ApplyEvents is idempotent by event_id.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "sanction.v1.RestrictionService"}, {"service": "sanction.v1.ListAdminService"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class ServiceError(Exception):
    """The service gave no answer. `code` is the gRPC status; `field_violations` name bad fields."""

    def __init__(self, code: str, message: str, field_violations: list[tuple[str, str]] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field_violations = field_violations or []


@dataclass(frozen=True)
class Trip:
    mode: str  # FLIGHT, RAIL or SHIP
    train_number: str = ""
    rail_class: str = ""  # e.g. SECOND, FIRST, SOFT_SLEEPER
    cabin: str = ""
    ship_class: str = ""  # SPECIAL, FIRST, SECOND, THIRD, FOURTH, SEAT


@dataclass(frozen=True)
class Passenger:
    document_type: str
    number: str
    country: str = ""
    name: str = ""


@dataclass(frozen=True)
class Match:
    """One ListingMatch, every field (proto names; enums as names, dates as `date`, unset None)."""

    listing_id: str
    case_number: str
    court: str
    list_type: str
    role: str
    organization_name: str
    listed_on: date | None
    expires_on: date | None
    exemption_applied: bool
    caused_denial: bool
    active: bool
    exemption_reference: str = ""  # the EXEMPT's reference when exemption_applied
    lifted_reason: str = ""  # LookupPerson only
    lifted_on: date | None = None  # LookupPerson only
    listed_name: str = ""  # the name the listing gives the person
    # Set when the listing names the person under another (bound) document: that document, masked.
    matched_document: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """One CheckResponse, every field."""

    decision: str  # ALLOW or DENY
    restricted: bool
    masked_document: str
    name_mismatch: bool
    data_version: int
    matches: list[Match] = field(default_factory=list)
    travel_date: date | None = None  # the day the answer is for

    @property
    def allowed(self) -> bool:
        return self.decision == "ALLOW"

    def reason(self) -> str:
        denial = [m for m in self.matches if m.caused_denial]
        if not denial:
            return ""
        m = denial[0]
        role = "" if m.role == "SUBJECT" else f" as {m.role.lower().replace('_', ' ')} of {m.organization_name},"
        return f"{m.list_type}{role} case {m.case_number}, {m.court}"


def _date(d: pb.Date, present: bool) -> date | None:
    return date(d.year, d.month, d.day) if present else None


def _match(m: pb.ListingMatch) -> Match:
    return Match(
        listing_id=m.listing_id,
        case_number=m.case_number,
        court=m.court,
        list_type=pb.ListType.Name(m.list_type),
        role=pb.Role.Name(m.role),
        organization_name=m.organization_name,
        listed_on=_date(m.listed_on, m.HasField("listed_on")),
        expires_on=_date(m.expires_on, m.HasField("expires_on")),
        exemption_applied=m.exemption_applied,
        caused_denial=m.caused_denial,
        active=m.active,
        exemption_reference=m.exemption_reference,
        lifted_reason=m.lifted_reason,
        lifted_on=_date(m.lifted_on, m.HasField("lifted_on")),
        listed_name=m.listed_name,
        matched_document=m.matched_document,
    )


def outcome_from(response: pb.CheckResponse) -> CheckOutcome:
    if response.decision not in (pb.ALLOW, pb.DENY):
        raise ServiceError("UNKNOWN", "response carries no decision")
    return CheckOutcome(
        decision=pb.Decision.Name(response.decision),
        restricted=response.restricted,
        masked_document=response.masked_document,
        name_mismatch=response.name_mismatch,
        data_version=response.data_version,
        matches=[_match(m) for m in response.matches],
        travel_date=_date(response.travel_date, response.HasField("travel_date")),
    )


def _violations(status) -> list[tuple[str, str]]:
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def error_from_status(status) -> ServiceError:
    code = next((c.name for c in grpc.StatusCode if c.value[0] == status.code), str(status.code))
    return ServiceError(code, status.message, _violations(status))


def error_from_rpc(exc: grpc.RpcError) -> ServiceError:
    status = rpc_status.from_call(exc)
    if status is not None:
        return error_from_status(status)
    return ServiceError(exc.code().name, exc.details() or "")


def check_request(passenger: Passenger, trip: Trip | None = None, travel_date: date | None = None) -> pb.CheckRequest:
    request = pb.CheckRequest(
        document=pb.Document(
            type=pb.DocumentType.Value(passenger.document_type), number=passenger.number, country=passenger.country
        ),
        name=passenger.name,
    )
    if trip is not None:
        request.trip.mode = pb.TravelMode.Value(trip.mode)
        request.trip.train_number = trip.train_number
        request.trip.cabin = trip.cabin
        if trip.rail_class:
            request.trip.rail_class = pb.RailClass.Value(trip.rail_class)
        if trip.ship_class:
            request.trip.ship_class = pb.ShipClass.Value("SHIP_" + trip.ship_class)
    if travel_date is not None:
        request.travel_date.year, request.travel_date.month, request.travel_date.day = (
            travel_date.year,
            travel_date.month,
            travel_date.day,
        )
    return request


def tls_credentials(ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """TLS credentials from PEM files; a client certificate and key for mutual TLS."""

    def read(path: str) -> bytes | None:
        return open(path, "rb").read() if path else None

    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


class RestrictionClient:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        token: str = "",
    ):
        options = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        self.channel = (
            grpc.secure_channel(target, credentials, options) if credentials else grpc.insecure_channel(target, options)
        )
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._checks = restriction_pb2_grpc.RestrictionServiceStub(self.channel)
        self._admin = admin_pb2_grpc.ListAdminServiceStub(self.channel)

    def __enter__(self) -> RestrictionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def check(self, passenger: Passenger, trip: Trip | None = None, travel_date: date | None = None) -> CheckOutcome:
        return outcome_from(self._call(self._checks.CheckRestriction, check_request(passenger, trip, travel_date)))

    def check_batch(
        self, passengers: list[Passenger], trip: Trip | None = None, travel_date: date | None = None
    ) -> list[CheckOutcome | ServiceError]:
        """One result per passenger, in order: a CheckOutcome, or the ServiceError for that item."""
        request = pb.BatchCheckRequest(checks=[check_request(p, trip, travel_date) for p in passengers])
        response = self._call(self._checks.BatchCheckRestriction, request)
        if len(response.items) != len(passengers):
            raise ServiceError("INTERNAL", "batch answer has the wrong number of items")
        return [outcome_from(i.result) if i.HasField("result") else error_from_status(i.error) for i in response.items]

    def check_stream(
        self, requests: Iterable[tuple[str, pb.CheckRequest]], timeout: float | None = None
    ) -> Iterator[tuple[str, CheckOutcome | ServiceError]]:
        messages = (pb.StreamCheckRequest(request_id=rid, check=req) for rid, req in requests)
        try:
            for answer in self._checks.StreamCheckRestriction(messages, timeout=timeout, metadata=self._metadata):
                result = outcome_from(answer.result) if answer.HasField("result") else error_from_status(answer.error)
                yield answer.request_id, result
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    def apply_events(self, events: Iterable[dict | str], timeout: float = 60.0) -> admin_pb2.ApplyEventsResponse:
        texts = [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events]
        return self._call(self._admin.ApplyEvents, admin_pb2.ApplyEventsRequest(events=texts), timeout)

    def get_listing(self, listing_id: str) -> admin_pb2.Listing:
        return self._call(self._admin.GetListing, admin_pb2.GetListingRequest(listing_id=listing_id))

    def lookup_person(self, passenger: Passenger) -> admin_pb2.LookupPersonResponse:
        request = admin_pb2.LookupPersonRequest(document=check_request(passenger).document)
        return self._call(self._admin.LookupPerson, request)

    def stats(self) -> admin_pb2.Stats:
        return self._call(self._admin.GetStats, admin_pb2.GetStatsRequest())
