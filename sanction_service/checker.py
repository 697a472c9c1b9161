"""The check pipeline, one straight line:

  query -> identity (normalise, key) -> policy (is this purchase restricted?) ->
  prefilter -> store read -> decisions -> result

Transport-free: the gRPC servicer converts messages to CheckQuery and results back.
Errors: InvalidDocument / InvalidTrip (caller's fault), NotReady / StoreError (ours:
the caller gets UNAVAILABLE, never ALLOW).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from . import metrics
from .decisions import ALLOW, DENY, Decision, Found, decide
from .identity import Document, InvalidDocument, document_key, normalize, parse_document_type
from .policy import InvalidTrip, Trip, purchase_is_restricted
from .prefilter import Prefilter, load_or_build
from .store import ReadView, Store

log = logging.getLogger(__name__)

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact
# and spares a tzdata dependency.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def today_in_shanghai() -> date:
    return datetime.now(SHANGHAI).date()


# Labelled children looked up once: .labels() costs about a microsecond per call.
_PREFILTER_MISS = metrics.PREFILTER.labels("miss")
_PREFILTER_HIT = metrics.PREFILTER.labels("hit")
_PREFILTER_FALSE_POSITIVE = metrics.PREFILTER.labels("false_positive")
_decision_counter = functools.lru_cache(maxsize=None)(metrics.DECISIONS.labels)
NOT_LISTED = Decision(ALLOW, False)


def _debug() -> bool:
    return log.isEnabledFor(logging.DEBUG)


class NotReady(Exception):
    """The prefilter is not loaded yet; answer UNAVAILABLE."""


@dataclass(frozen=True, slots=True)
class CheckQuery:
    document_type: str
    number: str
    country: str = ""
    name: str = ""
    trip: Trip | None = None
    travel_date: date | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    decision: Decision
    masked_document: str
    data_version: int
    travel_date: date
    mode: str


def parse_document(doc_type: str, number: str, country: str, field: str = "document") -> Document:
    return normalize(parse_document_type(doc_type, f"{field}.type"), number, country, field)


class Checker:
    def __init__(self, store: Store, pepper: bytes, *, prefilter_path, error_rate: float, use_prefilter: bool = True):
        self.store = store
        self._pepper = pepper
        self._prefilter_path = prefilter_path
        self._error_rate = error_rate
        self.use_prefilter = use_prefilter
        self.prefilter: Prefilter | None = None
        self.refusals = RefusalTally()
        self._rebuilding = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.prefilter is not None or not self.use_prefilter

    def warm_up(self) -> str:
        """Load (or rebuild and persist) the prefilter. Returns how, for the logs."""
        if not self.use_prefilter:
            return "prefilter disabled"
        with self.store.read() as view:
            self.prefilter, how = load_or_build(self._prefilter_path, view, error_rate=self._error_rate,
                                                progress=lambda n: log.info("prefilter rebuild: %d keys so far", n))
        return how

    def save_prefilter(self) -> None:
        if self.prefilter is not None:
            with self.store.read() as view:
                self.prefilter.catch_up(view)
                self.prefilter.save(self._prefilter_path, view)

    def check(self, query: CheckQuery) -> CheckResult:
        return self.check_many([query])[0]

    def check_many(self, queries: list[CheckQuery], *, count_refusals: bool = True,
                   between_chunks=None, chunk: int = 100) -> list[CheckResult | Exception]:
        """One read snapshot for all; a bad item yields its exception, not a failed batch.

        count_refusals=False leaves counting to the caller (`refusals.add_results`), so a
        server counts only the answers it actually sends, not those past their deadline.
        between_chunks() is called before every further `chunk` queries and may raise to
        abandon the batch (the server's deadline check)."""
        if not self.ready:
            raise NotReady("prefilter is loading")
        results: list[CheckResult | Exception] = []
        with self.store.read() as view:
            seq = view.seq()
            if self.prefilter is not None:
                self.prefilter.catch_up(view)
                if self.prefilter.saturated:
                    self._rebuild_in_background()
            today = today_in_shanghai()  # once per snapshot: a batch answers for one moment
            observe = metrics.CHECK_LATENCY.observe
            for i, query in enumerate(queries):
                if between_chunks is not None and i and not i % chunk:
                    between_chunks()
                started = time.perf_counter()
                try:
                    results.append(self._check_one(view, seq, query, today))
                except (InvalidDocument, InvalidTrip) as exc:
                    results.append(exc)
                observe(time.perf_counter() - started)
        if count_refusals:
            self.refusals.add_results(results)
        return results

    def _check_one(self, view: ReadView, seq: int, query: CheckQuery, today: date) -> CheckResult:
        document = parse_document(query.document_type, query.number, query.country)
        trip = query.trip
        purchase_restricted = purchase_is_restricted(trip) if trip is not None else True
        day = query.travel_date or today
        key = document_key(self._pepper, document)
        found = self._lookup(view, key)
        if found:
            decision = decide(found, purchase_restricted=purchase_restricted, mode=trip.mode if trip else None,
                              day=day.isoformat(), name=query.name)
        else:
            decision = NOT_LISTED
        mode = trip.mode.value if trip else "NONE"
        _decision_counter(mode, decision.decision).inc()
        if _debug():
            log.debug("check %s %s mode=%s day=%s -> %s restricted=%s listings=%s (data version %d)",
                      document.type.value, document.masked(), mode, day, decision.decision, decision.restricted,
                      [o.found.listing["listing_id"] for o in decision.matches], seq)
        return CheckResult(decision, document.masked(), seq, day, mode)

    def _lookup(self, view: ReadView, key: bytes) -> list[Found]:
        if self.prefilter is not None and not self.prefilter.may_contain(key):
            _PREFILTER_MISS.inc()
            return []
        found = _found(view, key, active_only=True)
        if self.prefilter is not None:
            (_PREFILTER_HIT if found else _PREFILTER_FALSE_POSITIVE).inc()
        return found

    def lookup_person(self, document: Document) -> tuple[list[Found], int]:
        """Every listing naming the document, in force or lifted (for auditors)."""
        key = document_key(self._pepper, document)
        with self.store.read() as view:
            return _found(view, key, active_only=False), view.seq()

    def _rebuild_in_background(self) -> None:
        if not self._rebuilding.acquire(blocking=False):
            return

        def rebuild() -> None:
            try:
                with self.store.read() as view:
                    fresh = Prefilter.build(view, error_rate=self._error_rate)
                    fresh.catch_up(view)
                    fresh.save(self._prefilter_path, view)
                self.prefilter = fresh
                log.info("prefilter rebuilt with capacity %d", fresh.bloom.capacity)
            finally:
                self._rebuilding.release()

        threading.Thread(target=rebuild, name="prefilter-rebuild", daemon=True).start()


def _found(view: ReadView, key: bytes, *, active_only: bool) -> list[Found]:
    """The listings naming `key`, each with the person's entry and their exemptions."""
    key_hex = key.hex()
    found = []
    for listing_id in view.listing_ids(key, active_only=active_only):
        listing = view.listing(listing_id)
        person = next(p for p in listing["persons"] if p["key"] == key_hex)
        found.append(Found(listing, person, view.exemptions(key, listing_id)))
    return found


class RefusalTally:
    """Refused purchases by mode, counted in memory and added to the store's counters
    by `flush` (the server calls it periodically and at shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Tally[str] = Tally()

    def add(self, mode: str) -> None:
        with self._lock:
            self._pending[mode] += 1

    def add_results(self, results: list) -> None:
        """Counts the refusals among check results: DENY answers to checks that carry a trip."""
        modes = [r.mode for r in results if isinstance(r, CheckResult) and r.decision.decision == DENY and r.mode != "NONE"]
        if modes:
            with self._lock:
                self._pending.update(modes)

    def flush(self, store: Store) -> None:
        with self._lock:
            pending, self._pending = self._pending, Tally()
        if pending:
            try:
                store.add_counters({f"refused:{mode}": n for mode, n in pending.items()})
            except Exception:
                with self._lock:
                    self._pending.update(pending)
                raise
