"""Log lines for every `sanction` command: plain text or one JSON object per line
(SANCTION_LOG_FORMAT), each naming the process that wrote it (pid, and the worker's number
under `serve --workers`), so the lines of N workers sharing one stderr can be told apart.

JSON fields: time (UTC, ISO 8601, milliseconds), level, logger, message, pid, worker (a
number in a worker of `serve --workers`, null elsewhere), and exception (the traceback
text) when there is one. Messages are written by the code that logs them; the rule that
no full ID number reaches a log holds there, not here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_worker: int | None = None


def set_worker(index: int) -> None:
    """This process is worker `index` of `serve --workers`: every later line says so."""
    global _worker
    _worker = index


class _ProcessFilter(logging.Filter):
    """Stamps each record with the process, read when the line is written: a forked worker
    has its own pid, and `set_worker` runs after the fork."""

    def filter(self, record: logging.LogRecord) -> bool:
        pid = os.getpid()
        # Extra attributes, as logging's own `extra=` sets them (the formatters read them).
        record.__dict__.update(
            pid=pid, worker=_worker, where=f"pid {pid}" if _worker is None else f"worker {_worker} pid {pid}"
        )
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": getattr(record, "pid", os.getpid()),
            "worker": getattr(record, "worker", _worker),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # ensure_ascii=False: names and court texts stay readable; json escapes newlines,
        # so a message (or a traceback) never spans two lines.
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(where)s]: %(message)s"


def setup(level: str, log_format: str = "TEXT", stream=None) -> None:
    """Configure the root logger once per command (replacing any handler set before)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ProcessFilter())
    handler.setFormatter(JsonFormatter() if log_format.upper() == "JSON" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
