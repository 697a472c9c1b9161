"""SIGTERM/SIGINT/SIGHUP for `sanction serve`, in a module light enough to import (and
install) before grpc is imported, so no moment of start-up is left to the default
handlers (which kill on SIGTERM and SIGHUP and print a KeyboardInterrupt traceback on
SIGINT)."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, it is not an error
    """SIGTERM or SIGINT during start-up: unwind and exit 0."""


class SignalFlag:
    """A flag set by a signal handler and waited on by the process's threads.

    Not a threading.Event. A handler runs in the main thread between two bytecodes. It
    can therefore run while that same thread holds the Event's own lock inside wait(),
    which is not reentrant, and set() would then wait for it forever. A SIGTERM landing
    just as `serve` began to wait hung the server that way: once in a fresh clone's
    `make test`, and once in ~130 signalled start-ups beside two CPU burners. Setting a
    plain attribute takes no lock; waiting polls it (every 50 ms)."""

    POLL_SECONDS = 0.05

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            left = self.POLL_SECONDS if deadline is None else min(self.POLL_SECONDS, deadline - time.monotonic())
            if left <= 0:
                return False
            time.sleep(left)
        return True


class StopSignals:
    """Until `serving()`, a signal raises Interrupted in the main thread, so start-up (which
    may spend minutes rebuilding the prefilter) unwinds through its cleanup and the process
    exits 0. Afterwards the first signal sets `stop` (drain and stop) and a second sets
    `hurry` (skip the rest of the drain delay).

    SIGHUP never stops anything: it runs the action given to `on_hangup` (re-read the
    tokens file, or pass the signal on to the workers), in the main thread, which only
    waits once serving. One that comes before there is an action runs it when it is given."""

    def __init__(self, signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.stop = SignalFlag()
        self.hurry = SignalFlag()
        self.name = ""
        self._raise = True
        self._on_hangup: Callable[[], None] | None = None
        self._hangup_pending = False
        for signum in signums:
            signal.signal(signum, self._handle)
        signal.signal(signal.SIGHUP, self._hangup)

    def serving(self) -> None:
        self._raise = False

    def on_hangup(self, action: Callable[[], None]) -> None:
        self._on_hangup = action
        if self._hangup_pending:
            self._hangup_pending = False
            self._run(action)

    def _hangup(self, _signum: int, _frame) -> None:
        if self._on_hangup is None:
            self._hangup_pending = True
        else:
            self._run(self._on_hangup)

    @staticmethod
    def _run(action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # raised in a signal handler it would unwind whatever the main thread was doing
            log.exception("SIGHUP: the reload failed")

    def _handle(self, signum: int, _frame) -> None:
        self.name = signal.Signals(signum).name
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()
        if self._raise:
            self._raise = False  # a second signal must not interrupt the unwinding
            raise Interrupted(self.name)
