"""The private metrics directory of `serve --workers N` (prometheus-client's multiprocess mode).

prometheus-client chooses between in-memory and file-backed values once, when it is first
imported, from PROMETHEUS_MULTIPROC_DIR. So the parent sets that variable here, before
anything imports prometheus_client, in a fresh directory of its own (files left by another
run would be summed in); the workers it forks write their files there, it serves them all
on one endpoint, and removes the directory when it exits. This module imports nothing
that imports prometheus_client.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def private_directory() -> Iterator[str]:
    """A new directory in PROMETHEUS_MULTIPROC_DIR for the duration; removed afterwards.

    RuntimeError if prometheus_client was imported before (its metrics would stay in
    memory, per process, and the parent's endpoint would show none of the workers')."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the multiprocess directory was set")
    path = tempfile.mkdtemp(prefix="sanction-metrics-")
    previous = os.environ.get(VARIABLE)
    os.environ[VARIABLE] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = previous
        shutil.rmtree(path, ignore_errors=True)
