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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from . import metrics
from .decisions import ALLOW, DENY, Decision, Found, decide
from .identity import (
    KEY_SIZE,
    Document,
    DocumentType,
    InvalidDocument,
    Keyer,
    canonical_resident_id_bytes,
    document_key,
    normalize,
    parse_document_type,
)
from .policy import InvalidTrip, Trip, purchase_is_restricted, travel_day
from .prefilter import MIN_CAPACITY, Prefilter, load_or_build
from .store import ReadView, Store, StoreCorrupt
from .writer_lock import WriterBusy

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


# What one bad item of a batch yields instead of its result (the batch goes on).
ItemError = InvalidDocument | InvalidTrip


@dataclass(frozen=True, slots=True)
class PlainBatch:
    """`check_plain_batch`'s answer: the items ruled out by the prefilter (ALLOW, never
    listed, answered for `day` at `seq`), and a result or error for every other."""

    seq: int
    day: date
    mode: str
    never_listed: list[int]  # positions in the batch, ascending
    never_listed_plain: np.ndarray  # the same items, as indexes into the plain numbers
    results: dict[int, CheckResult | ItemError]


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
    def __init__(
        self,
        store: Store,
        pepper: bytes,
        *,
        prefilter_path,
        error_rate: float,
        use_prefilter: bool = True,
        min_capacity: int = MIN_CAPACITY,
    ):
        self.store = store
        self._pepper = pepper
        self._prefilter_path = prefilter_path
        self._error_rate = error_rate
        self._min_capacity = min_capacity
        self._resident_keyer = Keyer(pepper, DocumentType.RESIDENT_ID)
        self.use_prefilter = use_prefilter
        self.prefilter: Prefilter | None = None
        self.refusals = RefusalTally()
        self._rebuilding = threading.Lock()
        # Today's date in Asia/Shanghai: the default travel date and the anchor of the
        # window of travel dates a check may ask about. Tests replace it to check as of
        # another day.
        self.clock = today_in_shanghai

    @property
    def ready(self) -> bool:
        return self.prefilter is not None or not self.use_prefilter

    def warm_up(self) -> str:
        """Load (or rebuild and persist) the prefilter. Returns how, for the logs."""
        if not self.use_prefilter:
            return "prefilter disabled"
        with self.store.read() as view:
            self.prefilter, how = load_or_build(
                self._prefilter_path,
                view,
                error_rate=self._error_rate,
                min_capacity=self._min_capacity,
                progress=lambda n: log.info("prefilter rebuild: %d keys so far", n),
            )
        return how

    def save_prefilter(self) -> None:
        prefilter = self.prefilter
        if prefilter is not None:
            with self.store.read() as view:
                prefilter.catch_up(view)
                prefilter.save_or_warn(self._prefilter_path, view)

    def check(self, query: CheckQuery) -> CheckResult:
        """One query's answer; a bad query raises (InvalidDocument, InvalidTrip)."""
        result = self.check_many([query])[0]
        if isinstance(result, Exception):
            raise result
        return result

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[ReadView, int, Prefilter | None, date]]:
        """What one batch answers from: a read snapshot of a complete store, its data
        version, one prefilter object caught up to that snapshot (a rebuilt filter swapped
        in meanwhile may cover an older position, so the batch asks only this one), and
        today, read once: a batch answers for one moment."""
        if not self.ready:
            raise NotReady("prefilter is loading")
        with self.store.read() as view:
            view.require_complete()
            prefilter = self.prefilter
            if prefilter is not None:
                prefilter.catch_up(view)
                if prefilter.needs_rebuild:
                    self._rebuild_in_background()
            yield view, view.seq(), prefilter, self.clock()

    def check_many(
        self, queries: list[CheckQuery], *, count_refusals: bool = True, between_chunks=None, chunk: int = 100
    ) -> list[CheckResult | ItemError]:
        """One read snapshot for all; a bad item yields its exception, not a failed batch.

        count_refusals=False leaves counting to the caller (`refusals.add_results`), so a
        server counts only the answers it actually sends, not those past their deadline.
        between_chunks() is called before every further `chunk` queries and may raise to
        abandon the batch (the server's deadline check)."""
        results: list[CheckResult | ItemError] = []
        with self._snapshot() as (view, seq, prefilter, today):
            observe = metrics.CHECK_LATENCY.observe
            for i, query in enumerate(queries):
                if between_chunks is not None and i and not i % chunk:
                    between_chunks()
                started = time.perf_counter()
                try:
                    results.append(self._check_one(view, seq, query, today, prefilter))
                except (InvalidDocument, InvalidTrip) as exc:
                    results.append(exc)
                observe(time.perf_counter() - started)
        if count_refusals:
            self.refusals.add_results(results)
        return results

    def check_plain_batch(
        self,
        positions: list[int],
        numbers: list[bytes],
        names: list[str],
        trip: Trip | None,
        travel_date: date | None,
        *,
        others: Sequence[tuple[int, CheckQuery]] = (),
    ) -> PlainBatch:
        """The fast path for a batch whose common items are resident IDs of 18 bytes (UTF-8)
        with one trip and travel date for all (at `positions`), answered with the batch's
        other queries (`others`, by position) from one snapshot. Same answers as
        `check_many` on the same queries, item for item; what it skips is only work whose
        outcome is known: canonical numbers are validated for the whole batch at once,
        their keys come from one prepared hash state, the prefilter is asked for all of
        them at once, and an item the filter rules out gets no object at all (ALLOW, not
        restricted, never listed). Every other item goes through `_check_one`, the reference."""
        with self._snapshot() as (view, seq, prefilter, today):
            mode = trip.mode.value if trip else "NONE"
            day, problem = today, None
            try:  # after the document, the reference checks the trip, then the date
                if trip is not None:
                    purchase_is_restricted(trip)
                day = travel_day(travel_date, today)
            except InvalidTrip as exc:
                problem = exc
            joined = b"".join(numbers)
            canonical = np.flatnonzero(canonical_resident_id_bytes(joined)) if numbers else np.zeros(0, np.int64)
            never_plain = np.zeros(0, np.int64)
            results: dict[int, CheckResult | ItemError] = {}
            if problem is not None:
                results.update((positions[i], problem) for i in canonical.tolist())
            elif len(canonical) and prefilter is not None:
                keys = self._resident_keyer.keys([numbers[i] for i in canonical.tolist()])
                maybe = prefilter.may_contain_many(np.frombuffer(keys, dtype=np.uint8).reshape(-1, KEY_SIZE))
                never_plain = canonical[~maybe]
            never_listed = np.asarray(positions, dtype=np.int64)[never_plain].tolist()
            if never_listed:
                _decision_counter(mode, ALLOW).inc(len(never_listed))
                _PREFILTER_MISS.inc(len(never_listed))
            settled = set(never_listed) | results.keys()
            queries = [
                (position, CheckQuery("RESIDENT_ID", number.decode(), "", name, trip, travel_date))
                for position, number, name in zip(positions, numbers, names)
                if position not in settled
            ]
            for position, query in sorted([*queries, *others], key=lambda pq: pq[0]):
                try:
                    results[position] = self._check_one(view, seq, query, today, prefilter)
                except (InvalidDocument, InvalidTrip) as exc:
                    results[position] = exc
        return PlainBatch(seq, day, mode, never_listed, never_plain, results)

    def _check_one(self, view: ReadView, seq: int, query: CheckQuery, today: date, prefilter: Prefilter | None) -> CheckResult:
        document = parse_document(query.document_type, query.number, query.country)
        trip = query.trip
        purchase_restricted = purchase_is_restricted(trip) if trip is not None else True
        day = travel_day(query.travel_date, today)
        key = document_key(self._pepper, document)
        found = _lookup(view, key, prefilter)
        if found:
            decision = decide(
                found,
                purchase_restricted=purchase_restricted,
                mode=trip.mode if trip else None,
                day=day.isoformat(),
                name=query.name,
            )
        else:
            decision = NOT_LISTED
        mode = trip.mode.value if trip else "NONE"
        _decision_counter(mode, decision.decision).inc()
        if _debug():
            log.debug(
                "check %s %s mode=%s day=%s -> %s restricted=%s listings=%s (data version %d)",
                document.type.value,
                document.masked(),
                mode,
                day,
                decision.decision,
                decision.restricted,
                [o.found.listing.listing_id for o in decision.matches],
                seq,
            )
        return CheckResult(decision, document.masked(), seq, day, mode)

    def lookup_person(self, document: Document) -> tuple[list[Found], int]:
        """Every listing naming the document, in force or lifted (for auditors)."""
        key = document_key(self._pepper, document)
        with self.store.read() as view:
            view.require_complete()
            return _found(view, key, active_only=False), view.seq()

    def _rebuild_in_background(self) -> None:
        if not self._rebuilding.acquire(blocking=False):
            return

        def rebuild() -> None:
            try:
                with self.store.read() as view:
                    fresh = Prefilter.build(view, error_rate=self._error_rate, min_capacity=self._min_capacity)
                    fresh.catch_up(view)
                    fresh.save_or_warn(self._prefilter_path, view)
                # Checks take the new object from their next batch on and catch it up to
                # their own snapshot before asking it.
                self.prefilter = fresh
                log.info("prefilter rebuilt with capacity %d at data version %d", fresh.bloom.capacity, fresh.covered_seq)
            except Exception:
                log.exception("prefilter rebuild failed; the current filter stays in use")
            finally:
                self._rebuilding.release()

        threading.Thread(target=rebuild, name="prefilter-rebuild", daemon=True).start()


def _lookup(view: ReadView, key: bytes, prefilter: Prefilter | None) -> list[Found]:
    if prefilter is not None and not prefilter.may_contain(key):
        _PREFILTER_MISS.inc()
        return []
    found = _found(view, key, active_only=True)
    if prefilter is not None:
        (_PREFILTER_HIT if found else _PREFILTER_FALSE_POSITIVE).inc()
    return found


def _found(view: ReadView, key: bytes, *, active_only: bool) -> list[Found]:
    """The listings naming the person(s) `key` stands for (itself, and every person it is
    bound to), each with the person's entry and that person's exemptions on it."""
    found = []
    for person_key in view.persons_of(key):
        person_hex = person_key.hex()
        for listing_id in view.listing_ids(person_key, active_only=active_only):
            listing = view.listing_record(listing_id)
            if listing is None:  # an index entry without its record: answer nothing rather than a partial ALLOW
                raise StoreCorrupt(f"{view.store.path}: listing {listing_id} is indexed but has no record")
            person = next(p for p in listing.persons if p.key == person_hex and p.slot != "extra")
            found.append(Found(listing, person, view.exemption_records(person_key, listing_id), bound=person_key != key))
    return found


class RefusalTally:
    """Refused purchases by mode, counted in memory and added to the store's counters
    by `flush` (the server calls it periodically and at shutdown). A flush never waits
    for a loader that holds the store's writer lock: the counts stay pending until the
    next flush, and `pending` lets statistics include them meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Tally[str] = Tally()

    def add(self, mode: str) -> None:
        with self._lock:
            self._pending[mode] += 1

    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def add_results(self, results) -> None:
        """Counts the refusals among check results: DENY answers to checks that carry a trip."""
        modes = [r.mode for r in results if isinstance(r, CheckResult) and r.decision.decision == DENY and r.mode != "NONE"]
        if modes:
            with self._lock:
                self._pending.update(modes)

    def flush(self, store: Store, *, wait: bool | float = False) -> bool:
        """Persist the pending counts; False (counts kept) when another process is writing."""
        with self._lock:
            pending, self._pending = self._pending, Tally()
        if not pending:
            return True
        try:
            store.add_counters({f"refused:{mode}": n for mode, n in pending.items()}, wait=wait)
        except BaseException as exc:
            with self._lock:
                self._pending.update(pending)
            if isinstance(exc, WriterBusy):
                return False
            raise
        return True
