"""The list's published figures (active listings, persons restricted, refusals, voluntary
performances, delistings) read from one snapshot of the store's counters."""

from __future__ import annotations

from dataclasses import dataclass

from .events import DELIST_REASONS, ListType
from .policy import TravelMode
from .store import ReadView


@dataclass(frozen=True)
class Stats:
    active_listings_by_type: dict[str, int]
    persons_restricted: int
    refused_checks_by_mode: dict[str, int]
    voluntary_performances: int
    delistings_by_reason: dict[str, int]
    data_version: int
    last_event_time: str

    @property
    def active_listings(self) -> int:
        return sum(self.active_listings_by_type.values())


def read_stats(view: ReadView) -> Stats:
    counters = view.counters()
    last = view.meta(b"last_event_time")
    return Stats(
        active_listings_by_type={t.value: counters.get(f"active:{t.value}", 0) for t in ListType},
        persons_restricted=counters.get("persons_restricted", 0),
        refused_checks_by_mode={m.value: counters.get(f"refused:{m.value}", 0) for m in TravelMode},
        voluntary_performances=counters.get("voluntary_performances", 0),
        delistings_by_reason={r: counters.get(f"delisted:{r}", 0) for r in sorted(DELIST_REASONS)},
        data_version=view.seq(),
        last_event_time=last.decode() if last else "",
    )
