"""Where the feed's parse workers hand back each byte range's blob: a private directory
(tmpfs where there is one), one file per range.

The workers are `loaders.feed.read_feed_ranges`'s (the event path's and the bulk
loader's). A multiprocessing result travels through a pipe that a helper thread of the
writer reads 64 KiB at a time, each read taking the GIL from the thread that writes the
store: for blobs of a few MB that cost the writer ~2.7 µs of CPU per event (a third of
its own work; BENCHMARKS.md, feed loading). So a worker writes its blob to a file here and
sends back only its size; the writer reads the file in one call and deletes it.

The directory is removed when the reading ends, however it ends; a load killed with
SIGKILL leaves a few ranges' blobs behind in it (`sanction-bulk-<pid>-*`), which the next
load with parse workers on the machine removes (its process is gone).
"""

from __future__ import annotations

import os
import shutil
import tempfile

# tmpfs: the blobs never reach a disk (each lives until the writer has read it).
SHM = "/dev/shm"


_PREFIX = "sanction-bulk-"


def blob_directory() -> str:
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
