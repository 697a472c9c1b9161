"""One writer per store: an exclusive lock on `<data-dir>/writer.lock`.

Every write to a store (a plain or bulk load, `ApplyEvents`, a migration, the server's
counter flush) happens while this process holds the lock, so two writers never
interleave their batches. Readers never take it: LMDB gives them snapshots.

POSIX record locks (`lockf`) belong to a process: the kernel drops them when the
process dies (kill -9 included), and forked children (the bulk loader's parse workers)
do not inherit them, so a dead loader never leaves the store locked. Because closing
any descriptor of the file drops the process's lock, each directory has exactly one
`WriterLock` per process (`writer_lock_for`), and threads of one process take turns
through an RLock in front of it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = "writer.lock"


class WriterBusy(Exception):
    """Another process writes this store and the caller chose not to wait."""


class WriterLock:
    def __init__(self, directory: Path):
        self.path = directory / LOCK_FILE
        self._threads = threading.RLock()
        self._owner: int | None = None
        self._depth = 0
        self._fd: int | None = None

    def held_by_this_thread(self) -> bool:
        return self._owner == threading.get_ident()

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock right now (taking it for an instant to see)."""
        if self._depth:
            return False
        try:
            with self.hold("probe", wait=False):
                return False
        except (WriterBusy, OSError):
            return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (best effort: for messages only)."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            return "another process"

    @contextmanager
    def hold(self, what: str, *, wait: bool | float = True, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the lock for the block. `wait`: True waits for ever, a number waits that
        many seconds, False not at all; then WriterBusy. `on_wait` hears once who we wait for."""
        self._acquire(what, wait, on_wait)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, what: str, wait: bool | float, on_wait) -> None:
        deadline = None if wait is True else time.monotonic() + (0.0 if wait is False else float(wait))
        if not self._threads.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise WriterBusy(f"another writer in this process holds {self.path.parent}")
        if self._depth:
            self._depth += 1
            return
        try:
            self._lock_file(what, deadline, on_wait)
        except BaseException:
            self._threads.release()
            raise
        self._owner, self._depth = threading.get_ident(), 1

    def _lock_file(self, what: str, deadline: float | None, on_wait) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        told = False
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                raise WriterBusy(f"{self.path.parent} is being written by {self.holder()}")
            if not told and on_wait is not None:
                on_wait(f"{self.path.parent} is being written by {self.holder()}; waiting for it to finish")
                told = True
            time.sleep(0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic())))
        since = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()} ({what}, since {since})\n".encode(), 0)
        except OSError:
            pass  # a full disk must not stop the writer that would report it; the note is informational

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            if self._fd is not None:  # (set by the first _acquire, which this one follows)
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._threads.release()


_LOCKS: dict[str, WriterLock] = {}
_LOCKS_GUARD = threading.Lock()


def writer_lock_for(directory: str | os.PathLike) -> WriterLock:
    """The one WriterLock of this process for a store directory."""
    path = Path(directory).resolve()
    with _LOCKS_GUARD:
        lock = _LOCKS.get(str(path))
        if lock is None:
            lock = _LOCKS[str(path)] = WriterLock(path)
        return lock
