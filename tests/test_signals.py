"""StopSignals' flags, set from a real signal handler while the main thread waits on them.

A threading.Event set from a handler can deadlock: the handler runs in the main thread,
possibly while that thread holds the Event's own lock inside wait(). The server's stop
and hurry flags are SignalFlags, which take no lock (tests/test_serving.py sends real
SIGTERM/SIGINT to real servers at each moment of start-up)."""

import signal
import time

from sanction_service.signals import SignalFlag


def test_a_handler_setting_the_flag_wakes_the_main_threads_wait():
    flag = SignalFlag()
    previous = signal.signal(signal.SIGALRM, lambda *_: flag.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        assert flag.wait(10) is True
        assert 0.15 < time.monotonic() - started < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert flag.is_set() and flag.wait(0) is True


def test_a_wait_that_nobody_ends_returns_false_after_its_timeout():
    flag = SignalFlag()
    started = time.monotonic()
    assert flag.wait(0.2) is False
    assert 0.19 < time.monotonic() - started < 2
    assert not flag.is_set()
