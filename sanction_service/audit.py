"""The audit trail of admin calls: one JSON object per line, appended to a file an auditor
can keep (SANCTION_AUDIT_LOG, default <data dir>/audit.log; format in docs/OPERATIONS.md).

Each entry is written with one write(2) on a descriptor opened O_APPEND, then fsynced
before the call's answer leaves: an entry the client saw acknowledged survives a crash,
and the lines of several `serve --workers` processes appending to the same file never mix
(Linux appends each write whole on a local file system). The file is opened for each
entry rather than held open, so that logrotate (or an auditor) may move it away at any
time: the next entry starts a new file, whose directory entry is fsynced too.

Entries hold who (the client's name, the peer address), what (the method, counts, the
listing asked for) and the data versions, never a document number: the code that fills
an entry (grpc_api/caller.py, grpc_api/admin.py) passes counts, not requests.

Transport-free: the gRPC side fills the fields; this module owns the file. A failed write
is logged with the entry (so it is not lost) and counted in
sanction_audit_write_errors_total, to alert on; the call's answer is not changed, since
its work is done.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import time
from pathlib import Path

from . import client_metrics

log = logging.getLogger(__name__)

# The entry of the admin call this thread is handling, for the servicer to add its figures.
_CURRENT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("audit_entry", default=None)


def note(**fields) -> None:
    """Add figures to the entry of the admin call being handled (no-op outside one)."""
    entry = _CURRENT.get()
    if entry is not None:
        entry.update(fields)


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check_writable(self) -> None:
        """At start-up: raise OSError now, rather than lose the first entry later."""
        self._open().close()

    @contextlib.contextmanager
    def entry(self, **fields):
        """The entry of one admin call: the servicer adds to it with `note` while the call
        runs; the caller sets `outcome`; it is written when the block ends."""
        entry = {"time": _now(), "pid": os.getpid(), **fields}
        token = _CURRENT.set(entry)
        try:
            yield entry
        finally:
            _CURRENT.reset(token)
            self.write(entry)

    def write(self, entry: dict) -> bool:
        """Append and fsync one entry; on failure log it (the entry holds no ID number) and
        say False, so the failure shows in the log and in sanction_audit_write_errors_total."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            with self._open() as f:
                written = os.write(f.fileno(), line)
                if written != len(line):  # only a full disk does this; a torn line is flagged, not hidden
                    raise OSError(f"wrote {written} of {len(line)} bytes")
                os.fsync(f.fileno())
            return True
        except OSError as exc:
            log.error("could not write to the audit log %s (%s); the entry was: %s", self.path, exc, line.decode().strip())
            client_metrics.AUDIT_WRITE_ERRORS.inc()
            return False

    def _open(self):
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if created:
            _fsync_dir(self.path.parent)
        return os.fdopen(fd, "ab", buffering=0)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
