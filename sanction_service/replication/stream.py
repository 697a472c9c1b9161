"""The stream's layout: one JetStream stream, one subject per event type.

Subjects are `<prefix>.<TYPE>` (default `sanction.feed.LIST`, `sanction.feed.DELIST`, …)
and the stream takes `<prefix>.>`. One stream gives one total order, which becomes every
replica's journal order; the type token lets an operator inspect or count by type
(`nats stream view --subject sanction.feed.DELIST`) and scope permissions, while no
producer-chosen text (listing or event ids may hold dots, wildcards or spaces) ever goes
into a subject. Events that fail parsing never reach the stream; a message that is not
a JSON event at all (published by other means) goes to `<prefix>.INVALID` if anyone
does that, and every follower rejects it alike.

`sanction publish` creates the stream when it is missing (file storage, limits
retention, the configured duplicate window, maximum age and replicas); an existing
stream is used as it is, after checking that it takes our subjects and keeps files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from ..settings import NatsSettings

PEPPER_HEADER = "Sanction-Pepper-Fingerprint"
MSG_ID_HEADER = "Nats-Msg-Id"


class StreamRefused(Exception):
    """The stream exists with a configuration we cannot use."""


@dataclass(frozen=True)
class StreamState:
    name: str
    created: str  # identifies this incarnation of the stream (a recreated stream has another)
    first_seq: int
    last_seq: int


def subject_for(settings: NatsSettings, event_type: str) -> str:
    return f"{settings.subject_prefix}.{event_type}"


def created_text(created: datetime | None) -> str:
    return created.isoformat() if created is not None else ""


async def stream_state(js: JetStreamContext, settings: NatsSettings) -> StreamState | None:
    """The stream's identity and bounds, or None if it does not exist."""
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        return None
    return StreamState(settings.stream, created_text(info.created), info.state.first_seq, info.state.last_seq)


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> StreamState:
    state = await stream_state(js, settings)
    if state is None:
        await js.add_stream(
            StreamConfig(
                name=settings.stream,
                subjects=[f"{settings.subject_prefix}.>"],
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
                duplicate_window=settings.duplicate_window_seconds,
                max_age=settings.max_age_seconds or None,
                num_replicas=settings.replicas,
                description="sanction feed events (sanction publish)",
            )
        )
        state = await stream_state(js, settings)
        assert state is not None
        return state
    info = await js.stream_info(settings.stream)
    wanted = f"{settings.subject_prefix}.>"
    if wanted not in (info.config.subjects or []):
        raise StreamRefused(f"stream {settings.stream} takes {info.config.subjects}, not {wanted}")
    if info.config.storage != StorageType.FILE:
        raise StreamRefused(f"stream {settings.stream} keeps its messages in {info.config.storage}, not in files")
    return state
