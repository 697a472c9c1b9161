"""ListAdminService: apply events, read listings, look up persons, statistics.

ApplyEvents and GetStats (which first persists the refusal counters) write, so they may
wait for LMDB's one write lock, which a loader holds for seconds: server.py runs them on a
small pool of their own, where that wait cannot take the threads checks need.

ApplyEvents, GetListing and LookupPerson add their figures to the audit entry the
interceptor opened for the call (audit.note; grpc_api/caller.py writes it): counts and
versions, a listing id, a document type; never a document number.
"""

from __future__ import annotations

import logging

from sanction.v1 import admin_pb2, admin_pb2_grpc
from sanction.v1 import restriction_pb2 as pb

from .. import audit, metrics
from ..checker import Checker, parse_document
from ..identity import InvalidDocument
from ..ledger import REJECTED, Ledger
from ..settings import MAX_IDENTIFIER_BYTES
from ..stats import read_stats
from ..store import StoreError, StoreFull
from ..writer_lock import WriterBusy
from . import errors
from .convert import InvalidField, enum_name, listing_message, match_message

log = logging.getLogger(__name__)


class ListAdminServicer(admin_pb2_grpc.ListAdminServiceServicer):
    def __init__(self, checker: Checker, ledger: Ledger, *, writer_wait_seconds: float = 5.0):
        self.checker = checker
        self.ledger = ledger
        self.writer_wait_seconds = writer_wait_seconds

    def ApplyEvents(self, request, context):
        _in_time(context)
        # Parsed here, not in the ledger, so that whatever one event holds it becomes that
        # event's rejection and the others in the call still apply.
        with self.checker.store.read() as view:
            audit.note(events_received=len(request.events), data_version_before=view.seq())
        lines = [self.ledger.prepare_text(n, text) for n, text in enumerate(request.events, 1)]
        try:
            outcomes = list(self.ledger.apply(lines, wait=self.writer_wait_seconds))
        except WriterBusy as exc:
            # Another loader owns the store; nothing of this call was applied, so a retry is safe.
            errors.abort(context, errors.unavailable(f"{exc}; retry later", retry_seconds=5))
        except StoreFull as exc:
            log.error("ApplyEvents: %s", exc)
            errors.abort(context, errors.resource_exhausted(f"the store is full: {exc}"))
        except StoreError as exc:
            log.error("ApplyEvents: %s", exc)
            errors.abort(context, errors.unavailable(f"the store cannot take events: {exc}", retry_seconds=5))
        summary = admin_pb2.ApplyEventsResponse()
        for outcome in outcomes:
            metrics.EVENTS.labels(outcome.status.lower()).inc()
            if outcome.status == REJECTED:
                summary.rejected += 1
                summary.rejects.add(line=outcome.line, event_id=outcome.event_id, reason=outcome.reason, field=outcome.field)
            elif outcome.status == "DUPLICATE":
                summary.duplicates += 1
            else:
                summary.applied += 1
        with self.checker.store.read() as view:
            summary.data_version = view.seq()
        audit.note(
            applied=summary.applied,
            duplicates=summary.duplicates,
            rejected=summary.rejected,
            data_version_after=summary.data_version,
        )
        return summary

    def GetListing(self, request, context):
        _in_time(context)
        if not request.listing_id:
            errors.abort(context, errors.bad_request("listing_id", "is required"))
        audit.note(listing_id=request.listing_id[:MAX_IDENTIFIER_BYTES])
        with self.checker.store.read() as view:
            listing = view.listing(request.listing_id)
            if listing is None:
                errors.abort(context, errors.not_found("no listing with that listing_id"))
            exemptions = [
                e for p in listing["persons"] for e in view.exemptions(bytes.fromhex(p["key"]), listing["listing_id"])
            ]
            return listing_message(listing, exemptions, view.seq())

    def LookupPerson(self, request, context):
        _in_time(context)
        doc = request.document
        try:
            if not request.HasField("document") or doc.type == pb.DOCUMENT_TYPE_UNSPECIFIED:
                raise InvalidDocument("document.type", "is required")
            document = parse_document(enum_name(pb.DocumentType, doc.type, "document.type"), doc.number, doc.country)
        except (InvalidDocument, InvalidField) as exc:
            errors.abort(context, errors.bad_request(exc.field, exc.reason))
        try:
            found, seq = self.checker.lookup_person(document)
        except StoreError as exc:
            log.error("store unreadable: %s", exc)
            errors.abort(context, errors.unavailable("restriction store unavailable"))
        # The document's type, never its number: an auditor learns who looked up how many.
        audit.note(document_type=document.type.value, listings_found=len(found), data_version=seq)
        return admin_pb2.LookupPersonResponse(
            masked_document=document.masked(), listings=[match_message(f) for f in found], data_version=seq
        )

    def GetStats(self, request, context):
        _in_time(context)
        # Refusals counted in this process and not yet persisted (a loader may hold the
        # writer lock) are added to what the store has, so the answer is never behind.
        self.checker.refusals.flush(self.checker.store)
        pending = self.checker.refusals.pending()
        with self.checker.store.read() as view:
            stats = read_stats(view)
        refused = {mode: n + pending.get(mode, 0) for mode, n in stats.refused_checks_by_mode.items()}
        return admin_pb2.Stats(
            active_listings_by_type=[admin_pb2.Count(key=k, value=v) for k, v in stats.active_listings_by_type.items()],
            persons_restricted=stats.persons_restricted,
            refused_checks_by_mode=[admin_pb2.Count(key=k, value=v) for k, v in refused.items()],
            voluntary_performances=stats.voluntary_performances,
            delistings_by_reason=[admin_pb2.Count(key=k, value=v) for k, v in stats.delistings_by_reason.items()],
            data_version=stats.data_version,
            last_event_time=stats.last_event_time,
            active_listings=stats.active_listings,
        )


def _in_time(context) -> None:
    status = errors.late(context)
    if status is not None:
        errors.abort(context, status)
