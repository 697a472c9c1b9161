"""The follower's status file, and the health rule `serve --follow-lag-max` applies (no NATS).

The follower rewrites `<data-dir>/follower.status.json` (atomically: a temporary file
renamed over it) after every applied batch and at least once a second while idle:

  state            starting | connecting | catching_up | following | disconnected | refused | stopped
  pid, stream, consumer
  applied_seq      the stream sequence the store holds (the store's meta is the authority)
  head_seq         the stream's last sequence as the follower last saw it
  start_head       the stream's last sequence when the follower started
  head_checked_at  when the follower last learnt head_seq from the server (unix time)
  lag_events       head_seq - applied_seq
  lag_seconds      now - publish time of the last applied message, while behind; else 0
  updated_at       when this file was written (unix time)
  reason           why, for refused / disconnected

`follower_health` is what a server does with it: SERVING only while the follower is
alive and in touch with the stream (status and head no older than `stale_seconds`), not
refused, and no more than `lag_max` events behind the head it last saw (measured against
the store's own applied sequence, which is fresher than the file).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATUS_FILE = "follower.status.json"


@dataclass
class FollowerStatus:
    state: str = "starting"
    pid: int = 0
    stream: str = ""
    consumer: str = ""
    applied_seq: int = 0
    head_seq: int = 0
    start_head: int = 0
    head_checked_at: float = 0.0
    lag_events: int = 0
    lag_seconds: float = 0.0
    updated_at: float = 0.0
    reason: str = ""


def status_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / STATUS_FILE


def write_status(path: Path, status: FollowerStatus) -> None:
    status.updated_at = time.time()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(status)), encoding="utf-8")
    os.replace(temporary, path)


def read_status(path: Path) -> FollowerStatus | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    known = FollowerStatus.__dataclass_fields__
    return FollowerStatus(**{k: v for k, v in raw.items() if k in known})


def follower_health(
    status: FollowerStatus | None, applied_seq: int | None, *, lag_max: int, stale_seconds: float, now: float | None = None
) -> tuple[bool, str]:
    """(serving?, why) for a server whose store a follower feeds. `applied_seq` is the
    stream sequence in the store's meta (None: the store never applied a message)."""
    now = time.time() if now is None else now
    if status is None:
        return False, "no follower status (is `sanction follow` running for this data dir?)"
    if status.state in ("refused", "stopped", "starting"):
        return False, f"follower {status.state}" + (f": {status.reason}" if status.reason else "")
    if now - status.updated_at > stale_seconds:
        return False, f"follower status is {now - status.updated_at:.0f}s old (follower not running?)"
    if now - status.head_checked_at > stale_seconds:
        return False, f"follower has not seen the stream's head for {now - status.head_checked_at:.0f}s"
    applied = applied_seq or 0
    lag = max(0, status.head_seq - applied)
    if lag > lag_max:
        return False, f"follower is {lag} events behind the stream (bound {lag_max})"
    return True, f"follower at stream sequence {applied}, {lag} behind"
