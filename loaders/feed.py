"""The JSON Lines feed loader: reads a feed file, applies it through the Ledger, writes
rejects (line number and reason, never a document number) and returns a summary.

Idempotent: applying the same feed again yields only duplicates. Crash-safe: each batch
commits atomically, with its dedupe rows, so a re-run after a crash applies exactly the
events that did not commit.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from sanction_service import metrics
from sanction_service.events import EventRejected
from sanction_service.ledger import APPLIED, DUPLICATE, REJECTED, FeedLine, Ledger
from sanction_service.settings import MAX_FEED_LINE_BYTES


@dataclass
class LoadSummary:
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    data_version: int = 0
    rejects_path: str = ""
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> int:
        return self.applied + self.duplicates + self.rejected

    def describe(self) -> str:
        text = (f"{self.lines} lines: {self.applied} applied, {self.duplicates} duplicates, "
                f"{self.rejected} rejected; data version {self.data_version}")
        if self.rejected:
            text += f"\nrejects written to {self.rejects_path}"
            for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1])[:10]:
                text += f"\n  {n:>8}  {reason}"
        return text


def read_feed(path: str | os.PathLike, progress: tqdm | None = None) -> Iterator[FeedLine]:
    """Decode each line; an undecodable line becomes a FeedLine with its error."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if progress is not None:
                progress.update(len(raw))
            if len(raw) > MAX_FEED_LINE_BYTES:
                yield FeedLine(number, error=EventRejected("", f"line longer than {MAX_FEED_LINE_BYTES} bytes"))
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield FeedLine(number, error=EventRejected("", "not valid UTF-8"))
                continue
            try:
                yield FeedLine(number, json.loads(text))
            except ValueError:
                yield FeedLine(number, error=EventRejected("", "not valid JSON"))


def load_feed(ledger: Ledger, feed_path: str | os.PathLike, rejects_path: str | os.PathLike, *,
              batch_size: int = 1000, show_progress: bool | None = None) -> LoadSummary:
    summary = LoadSummary(rejects_path=str(rejects_path))
    size = Path(feed_path).stat().st_size
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    progress = tqdm(total=size, unit="B", unit_scale=True, desc="loading", disable=not show_progress,
                    file=sys.stderr)
    with progress, open(rejects_path, "w", encoding="utf-8") as rejects:
        for outcome in ledger.apply(read_feed(feed_path, progress), batch_size=batch_size):
            metrics.EVENTS.labels(outcome.status.lower()).inc()
            if outcome.status == APPLIED:
                summary.applied += 1
            elif outcome.status == DUPLICATE:
                summary.duplicates += 1
            elif outcome.status == REJECTED:
                summary.rejected += 1
                reason = f"{outcome.field}: {outcome.reason}" if outcome.field else outcome.reason
                summary.reject_reasons[reason] = summary.reject_reasons.get(reason, 0) + 1
                rejects.write(json.dumps({"line": outcome.line, "event_id": outcome.event_id,
                                          "field": outcome.field, "reason": outcome.reason},
                                         ensure_ascii=False) + "\n")
    with ledger.store.read() as view:
        summary.data_version = view.seq()
    return summary
