"""The JSON Lines feed loader: reads a feed file, applies it through the Ledger, writes
rejects (line number and reason, never a document number) and returns a summary.

Idempotent: applying the same feed again yields only duplicates. Crash-safe: each batch
commits atomically, with its dedupe rows, so a re-run after a crash applies exactly the
events that did not commit.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import marshal
import os
import sys
from collections.abc import Iterator
from contextlib import closing, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sanction_service import metrics
from sanction_service.events import EventRejected
from sanction_service.fastdecode import decode_event
from sanction_service.feedline import parse_text_reference
from sanction_service.ledger import APPLIED, DUPLICATE, REJECTED, FeedLine, Ledger
from sanction_service.settings import MAX_FEED_LINE_BYTES

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tqdm import tqdm


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
        text = (
            f"{self.lines} lines: {self.applied} applied, {self.duplicates} duplicates, "
            f"{self.rejected} rejected; data version {self.data_version}"
        )
        if self.rejected:
            text += f"\nrejects written to {self.rejects_path}"
            for reason, n in sorted(self.reject_reasons.items(), key=lambda kv: -kv[1])[:10]:
                text += f"\n  {n:>8}  {reason}"
        return text


def decode_line(number: int, raw: bytes) -> FeedLine | None:
    """Decode and parse one line into its event, or its rejection; blank: None. Never
    raises, whatever the line holds. The fast decoder (sanction_service.fastdecode) takes
    the lines it can; every other line, and every rejection, is the reference's
    (`decode_line_reference`)."""
    if len(raw) <= MAX_FEED_LINE_BYTES:
        event = decode_event(raw)
        if event is not None:
            return FeedLine(number, event=event, event_id=event.event_id)
    return decode_line_reference(number, raw)


def decode_line_reference(number: int, raw: bytes) -> FeedLine | None:
    """The reference: UTF-8, then sanction_service.feedline's JSON decoding and events.parse_event."""
    if len(raw) > MAX_FEED_LINE_BYTES:
        return FeedLine(number, error=EventRejected("", f"line longer than {MAX_FEED_LINE_BYTES} bytes"))
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return FeedLine(number, error=EventRejected("", "not valid UTF-8"))
    return parse_text_reference(number, text)


def read_feed(path: str | os.PathLike, progress: tqdm | None = None) -> Iterator[FeedLine]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if progress is not None:
                progress.update(len(raw))
            decoded = decode_line(number, raw)
            if decoded is not None:
                yield decoded


def _parse_chunk(chunk: list[tuple[int, bytes]]) -> list[FeedLine]:
    return [line for number, raw in chunk if (line := decode_line(number, raw)) is not None]


def read_feed_parallel(
    path: str | os.PathLike, workers: int, progress: tqdm | None = None, chunk_lines: int = 2000
) -> Iterator[FeedLine]:
    """Like read_feed, with JSON decoding and event parsing done by worker processes
    (pepper-free work; the writes stay in this process, in feed order). At most
    8 x workers chunks are in flight (enough that a worker never waits for the writer to
    hand it work), so memory stays bounded on any feed size."""
    import multiprocessing
    from collections import deque

    def chunks():
        with open(path, "rb") as f:
            chunk: list[tuple[int, bytes]] = []
            for number, raw in enumerate(f, 1):
                chunk.append((number, raw))
                if len(chunk) >= chunk_lines:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        source = chunks()
        for chunk in source:
            pending.append((pool.apply_async(_parse_chunk, (chunk,)), sum(len(r) for _, r in chunk)))
            if len(pending) >= 8 * workers:
                result, size = pending.popleft()
                yield from result.get()
                if progress is not None:
                    progress.update(size)
        while pending:
            result, size = pending.popleft()
            yield from result.get()
            if progress is not None:
                progress.update(size)


_RANGE_WORKER: dict = {}


def _init_range_worker(path: str, pepper: bytes) -> None:
    import gc

    from sanction_service.identity import DocumentKeys

    # A parse worker makes millions of short-lived tuples and no cycles: the collector's
    # passes over the range's growing list of items would be pure cost.
    gc.disable()

    _RANGE_WORKER["path"] = path
    _RANGE_WORKER["key_of"] = DocumentKeys(pepper)


def _parse_range(job: tuple[tuple[int, int, int], str]) -> int:
    """A parse worker: one byte range of the feed (whole lines) to one marshalled blob,
    [ledger.prepare_line(...) of each line], numbered from the range's first line number,
    written to the file `out`; its size goes back. Through a file, not the pool's pipe: a
    multiprocessing result is read by a helper thread of the writer 64 KiB at a time, each
    read taking the GIL from the writer (~2 us of its CPU per event; BENCHMARKS.md)."""
    span, out = job
    blob = marshal.dumps(_prepare_range(_RANGE_WORKER["path"], span, _RANGE_WORKER["key_of"]))
    with open(out, "wb") as f:
        f.write(blob)
    return len(blob)


def _prepare_range(path: str, span: tuple[int, int, int], key_of) -> list:
    """`ledger.prepare_line` of every line of the range: the lines the fast path takes
    straight from `bulkprep.prepare_item` (the same tuples, without prepare_line's own
    import statement, ~1 us per call), the others through prepare_line."""
    from sanction_service.bulkprep import prepare_item
    from sanction_service.ledger import prepare_line

    start, end, number = span
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    items: list[tuple] = []
    append = items.append
    find = data.find
    pos = 0
    size = len(data)
    while pos < size:
        newline = find(b"\n", pos)
        stop = size if newline < 0 else newline + 1
        raw = data[pos:stop]
        item = prepare_item(number, raw, key_of)
        if item is None:
            item = prepare_line(number, raw, key_of)
        if item is not None:
            append(item)
        number += 1
        pos = stop
    return items


def _worker_items(result, out: str, span: tuple[int, int, int], path: str, pepper: bytes) -> list:
    """A worker's range: wait for it, read its file whole, remove it. When the blobs'
    directory is full (a container's small /dev/shm), the writer parses that range
    itself: the same items, and the load goes on."""
    try:
        result.get()
        with open(out, "rb") as f:
            blob = f.read()
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        log.warning("no room for a parse worker's range in %s: this process parses it", os.path.dirname(out))
        with suppress(OSError):
            os.unlink(out)
        from sanction_service.identity import DocumentKeys

        return _prepare_range(path, span, DocumentKeys(pepper))
    os.unlink(out)
    return marshal.loads(blob)


def feed_ranges(path: str | os.PathLike, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """Byte ranges of about chunk_bytes that end after a line feed (or at the end of the file)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        start = 0
        while start < size:
            if start + chunk_bytes >= size:
                end = size
            else:
                f.seek(start + chunk_bytes - 1)
                f.readline()  # up to and including the next line feed
                end = f.tell()
            yield start, end
            start = end


def numbered_feed_ranges(path: str | os.PathLike, chunk_bytes: int) -> Iterator[tuple[int, int, int]]:
    """`feed_ranges` with the number of each range's first line: (start, end, number). The
    lines are counted here, in C over each range's bytes (the file is read once more, in
    ranges), so a worker numbers its lines as in the whole feed and the writer need not
    renumber every item it is handed."""
    with open(path, "rb") as f:
        start, number = 0, 1
        while True:
            data = f.read(chunk_bytes)
            if not data:
                return
            if not data.endswith(b"\n"):
                data += f.readline()  # up to and including the next line feed, or the end
            end = start + len(data)
            yield start, end, number
            number += data.count(b"\n")
            start = end


# Ranges handed to the workers and not yet taken by the writer: enough that a worker never
# runs dry while the writer applies the lines of the range it took (or parses one itself).
AHEAD_PER_WORKER = 4
# Parsed ranges held for the writer at most (the workers' and its own), so memory stays
# bounded on any feed size: the blobs take ~1.7 x these bytes of the feed.
IN_FLIGHT_BYTES = 32 << 20


def _ready(result) -> bool:
    """Whether a worker's range is parsed (a function of its own, for the tests to make
    the writer parse every range it may)."""
    return result.ready()


def read_feed_ranges(
    path: str | os.PathLike,
    workers: int,
    pepper: bytes,
    progress: tqdm | None = None,
    chunk_bytes: int = 4 << 20,
    *,
    help_parse: bool = True,
) -> Iterator[tuple]:
    """For a Ledger's writer (the event path and the bulk loader): the feed's lines as
    `ledger.prepare_line` makes them, in feed order, parsed by `workers` processes that each
    read their own byte ranges of the file and hand back one marshalled blob per range
    (tuples of bytes, strings and numbers: cheap to pass, unlike pickled objects) through
    a file in a private directory (`bulkranges.blob_directory`), removed when the reading
    ends however it ends.

    With `help_parse`, when the range the writer needs next is not parsed yet, the writer
    parses the next range not handed out itself instead of waiting (its items wait, in
    order, for those before them): the two cores stay busy whichever side is slower."""
    import multiprocessing
    import shutil
    from collections import deque

    from sanction_service.bulkranges import blob_directory
    from sanction_service.identity import DocumentKeys

    ahead = AHEAD_PER_WORKER * workers
    limit = max(ahead, IN_FLIGHT_BYTES // chunk_bytes)
    key_of = DocumentKeys(pepper) if help_parse else None
    path = str(path)
    where = blob_directory()
    try:
        with multiprocessing.get_context("fork").Pool(workers, _init_range_worker, (path, pepper)) as pool:
            # (the worker's AsyncResult and (its blob's file, its range), or the items
            # parsed here and None; range size), in feed order
            pending: deque = deque()
            spans = numbered_feed_ranges(path, chunk_bytes)
            handed = 0  # entries of `pending` that are the workers'
            more = True

            def hand_out() -> bool:
                nonlocal handed
                span = next(spans, None)
                if span is None:
                    return False
                out = os.path.join(where, str(span[0]))
                pending.append((pool.apply_async(_parse_range, ((span, out),)), (out, span), span[1] - span[0]))
                handed += 1
                return True

            while True:
                while more and handed < ahead and len(pending) < limit:
                    more = hand_out()
                if not pending:
                    return
                head, handed_span, size = pending[0]
                if handed_span is not None:
                    if help_parse and more and len(pending) < limit and not _ready(head):
                        span = next(spans, None)
                        if span is None:
                            more = False
                        else:
                            pending.append((_prepare_range(path, span, key_of), None, span[1] - span[0]))
                        continue
                    out, span = handed_span
                    items = _worker_items(head, out, span, path, pepper)
                    handed -= 1
                else:
                    items = head
                pending.popleft()
                if progress is not None:
                    progress.update(size)
                yield from items
    finally:
        shutil.rmtree(where, ignore_errors=True)


def load_feed(
    ledger: Ledger,
    feed_path: str | os.PathLike,
    rejects_path: str | os.PathLike,
    *,
    batch_size: int = 1000,
    show_progress: bool | None = None,
    parse_workers: int = 0,
) -> LoadSummary:
    summary = LoadSummary(rejects_path=str(rejects_path))
    size = Path(feed_path).stat().st_size
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    progress = None
    if show_progress:  # (tqdm is imported only then: it costs a daily load ~20 ms of start-up)
        from tqdm import tqdm

        progress = tqdm(total=size, unit="B", unit_scale=True, desc="loading", file=sys.stderr)
    # The load makes millions of short-lived tuples (items, outcomes) and no cycles: the
    # collector's passes over them (every 700 allocations, and whole-heap ones as the
    # heap grows) cost the writer ~0.6 us per event for nothing. Restored at the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _load_lines(ledger, feed_path, summary, rejects_path, progress, batch_size, parse_workers)
    finally:
        if collecting:
            gc.enable()
    for status, n in ((APPLIED, summary.applied), (DUPLICATE, summary.duplicates), (REJECTED, summary.rejected)):
        if n:
            metrics.EVENTS.labels(status.lower()).inc(n)
    summary.data_version = ledger.data_version()
    return summary


def _load_lines(ledger, feed_path, summary: LoadSummary, rejects_path, progress, batch_size: int, parse_workers: int) -> None:
    with progress or nullcontext(), open(rejects_path, "w", encoding="utf-8") as rejects:
        if hasattr(ledger, "read_feed"):  # Ledger, BulkLedger: lines prepared for their writer
            lines = ledger.read_feed(feed_path, parse_workers, progress)
        elif parse_workers:
            lines = read_feed_parallel(feed_path, parse_workers, progress)
        else:
            lines = read_feed(feed_path, progress)
        # The reader (with its worker processes) and the ledger's run (with the writer
        # lock) are closed here, whatever ends the load (a full disk, an interrupt): not
        # left to a finaliser, which with the collector off would run only at exit.
        with closing(lines) if hasattr(lines, "close") else nullcontext():
            with closing(ledger.apply(lines, batch_size=batch_size)) as outcomes:
                _count_outcomes(outcomes, summary, rejects)


def _count_outcomes(outcomes, summary: LoadSummary, rejects) -> None:
    for outcome in outcomes:
        if outcome.status == APPLIED:
            summary.applied += 1
        elif outcome.status == DUPLICATE:
            summary.duplicates += 1
        elif outcome.status == REJECTED:
            summary.rejected += 1
            reason = f"{outcome.field}: {outcome.reason}" if outcome.field else outcome.reason
            summary.reject_reasons[reason] = summary.reject_reasons.get(reason, 0) + 1
            rejects.write(
                json.dumps(
                    {"line": outcome.line, "event_id": outcome.event_id, "field": outcome.field, "reason": outcome.reason},
                    ensure_ascii=False,
                )
                + "\n"
            )
