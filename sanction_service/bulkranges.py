"""The bulk loader's parse workers, handing each byte range's blob back through a file.

The workers are those of the event path (`loaders.feed._parse_range`: one marshalled
blob per byte range of the feed, the lines as `ledger.prepare_line` makes them); what
differs is the way back. A multiprocessing result travels through a pipe that a helper
thread of the writer reads 64 KiB at a time, each read taking the GIL from the thread
that writes the store: for blobs of a few MB that cost the writer ~2.7 µs of CPU per
event (a third of its own work; BENCHMARKS.md, feed loading). Here a worker writes its
blob to a file in a private directory (tmpfs where there is one) and sends back only its
size; the writer reads the file in one call and deletes it.

The directory is removed when the reading ends, however it ends; a load killed with
SIGKILL leaves at most 3 x workers blobs behind in it (`sanction-bulk-<pid>-*`), which
the next bulk load on the machine removes (its process is gone).
"""

from __future__ import annotations

import marshal
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator

# Ranges in flight per worker: enough that a worker never waits for the writer to hand it
# work, few enough that memory stays bounded on any feed size.
IN_FLIGHT_PER_WORKER = 3
# tmpfs: the blobs never reach a disk (each lives until the writer has read it).
SHM = "/dev/shm"


_PREFIX = "sanction-bulk-"


def _blob_dir() -> str:
    """A new private directory for this load's blobs, named after this process; the
    directories of loads whose process is gone (killed) are removed first."""
    base = SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK) else tempfile.gettempdir()
    _remove_orphans(base)
    return tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base)


def _remove_orphans(base: str) -> None:
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(_PREFIX) :].split("-", 1)[0]
        if not (name.startswith(_PREFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        except (PermissionError, OverflowError):
            pass  # alive (another user's), or not a process id


def _parse_range_to_file(job: tuple[tuple[int, int], str]) -> int:
    """A parse worker: `loaders.feed._parse_range` (one byte range of the feed to one
    marshalled blob), the lines the fast path takes prepared by `bulkprep.prepare_item`
    without going through `ledger.prepare_line` (whose import statement alone costs ~1 us
    per call), the others by `prepare_line`; the blob written to `out`."""
    from sanction_service.ledger import prepare_line
    from sanction_service.loaders.feed import _RANGE_WORKER

    from .bulkprep import prepare_item

    (start, end), out = job
    with open(_RANGE_WORKER["path"], "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    key_of = _RANGE_WORKER["key_of"]
    items: list[tuple] = []
    append = items.append
    find = data.find
    number = pos = 0
    size = len(data)
    while pos < size:
        newline = find(b"\n", pos)
        stop = size if newline < 0 else newline + 1
        number += 1
        raw = data[pos:stop]
        item = prepare_item(number, raw, key_of)
        if item is None:
            item = prepare_line(number, raw, key_of)
            if item is not None:
                append(item)
        else:
            append(item)
        pos = stop
    blob = marshal.dumps((number, items))
    with open(out, "wb") as f:
        f.write(blob)
    return len(blob)


def read_ranges(path, workers: int, pepper: bytes, progress=None, chunk_bytes: int = 4 << 20) -> Iterator[tuple]:
    """`loaders.feed.read_feed_ranges`, with each range's blob handed back through a file:
    the feed's lines as `ledger.prepare_line` makes them, in feed order, line numbers
    counted from the start of the file."""
    import multiprocessing

    from sanction_service.loaders.feed import _init_range_worker, feed_ranges

    where = _blob_dir()
    base = 0
    try:
        with multiprocessing.get_context("fork").Pool(workers, _init_range_worker, (str(path), pepper)) as pool:
            pending: deque = deque()

            def take() -> list:
                nonlocal base
                result, out, size = pending.popleft()
                result.get()
                with open(out, "rb") as f:
                    blob = f.read()
                os.unlink(out)
                lines, items = marshal.loads(blob)
                del blob
                if base:
                    items = [(item[0] + base, *item[1:]) for item in items]
                base += lines
                if progress is not None:
                    progress.update(size)
                return items

            for i, span in enumerate(feed_ranges(path, chunk_bytes)):
                out = os.path.join(where, str(i))
                pending.append((pool.apply_async(_parse_range_to_file, ((span, out),)), out, span[1] - span[0]))
                if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                    yield from take()
            while pending:
                yield from take()
    finally:
        shutil.rmtree(where, ignore_errors=True)
