"""SIGTERM/SIGINT for `sanction serve`, in a module light enough to import (and install)
before grpc is imported, so no moment of start-up is left to the default handlers (which
kill on SIGTERM and print a KeyboardInterrupt traceback on SIGINT)."""

from __future__ import annotations

import signal
import threading


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, it is not an error
    """SIGTERM or SIGINT during start-up: unwind and exit 0."""


class StopSignals:
    """Until `serving()`, a signal raises Interrupted in the main thread, so start-up (which
    may spend minutes rebuilding the prefilter) unwinds through its cleanup and the process
    exits 0. Afterwards the first signal sets `stop` (drain and stop) and a second sets
    `hurry` (skip the rest of the drain delay)."""

    def __init__(self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.name = ""
        self._raise = True
        for signum in signums:
            signal.signal(signum, self._handle)

    def serving(self) -> None:
        self._raise = False

    def _handle(self, signum: int, _frame) -> None:
        self.name = signal.Signals(signum).name
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()
        if self._raise:
            self._raise = False  # a second signal must not interrupt the unwinding
            raise Interrupted(self.name)
