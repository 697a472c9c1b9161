"""`sanction snapshot` and `sanction follow --bootstrap`: a replica's store through the
JetStream object store.

A snapshot is a compacted LMDB copy made from one read transaction of a replica (LMDB's
own copy; the follower goes on writing meanwhile). Its manifest is read from the copy
itself, so it describes exactly what was copied: the stream and sequence it covers (the
copy's `replication:` meta), its data version, its `sanction digest` and the pepper
fingerprint it is keyed with. Both go into the object store bucket
(SANCTION_NATS_SNAPSHOT_BUCKET): `snapshots/<seq>-<digest>.mdb`, then `latest.json`,
the manifest naming it, so `latest.json` never names a missing object. Only the newest
`keep` snapshots are kept.

Bootstrap downloads the object `latest.json` names into `<data-dir>/.bootstrap-<pid>/`
(the object store checks its SHA-256), opens it with this replica's pepper (another
pepper is refused), checks the digest and the stream sequence against the manifest,
gives it a store id of its own and only then moves it into place: a bootstrap that dies
leaves no store, and a store that is there was verified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, DigestMismatchError, NotFoundError, ObjectNotFoundError

from ..digest import store_digest
from ..settings import NatsSettings
from ..store import Store
from . import position
from .connect import connect

log = logging.getLogger(__name__)

LATEST = "latest.json"
PREFIX = "snapshots/"


class SnapshotRefused(Exception):
    """No snapshot to bootstrap from, or one that fails verification."""


def describe(path: Path, fingerprint: str, map_size: int) -> dict:
    """The manifest of a store copy, read from the copy."""
    store = Store(path, fingerprint, map_size=map_size)
    try:
        with store.read() as view:
            where = position.read_position(view)
            if where is None:
                raise position.NotAReplica(f"{path} is not a replica: it holds no stream position")
            digests = store_digest(view)
            return {
                "stream": where.stream,
                "stream_created": where.created,
                "stream_seq": where.seq,
                "data_version": view.seq(),
                "digest": digests["all"],
                "replication_digest": digests["replication"],
                "pepper_fingerprint": fingerprint,
                "schema": (view.meta(b"schema") or b"").decode(),
                "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
    finally:
        store.close()


async def _bucket(js, settings: NatsSettings, *, create: bool):
    try:
        return await js.object_store(settings.snapshot_bucket)
    except (BucketNotFoundError, NotFoundError):
        if not create:
            raise SnapshotRefused(
                f"no snapshot bucket {settings.snapshot_bucket!r}: take one with `sanction snapshot` on a replica first"
            ) from None
    return await js.create_object_store(
        settings.snapshot_bucket,
        ObjectStoreConfig(description="sanction replica snapshots", storage=StorageType.FILE, replicas=settings.replicas),
    )


async def take_snapshot(
    store: Store, settings: NatsSettings, fingerprint: str, map_size: int, *, keep: int = 3, wait: float = 60.0
) -> dict:
    work = Path(tempfile.mkdtemp(prefix=".snapshot-", dir=store.path))
    try:
        started = time.monotonic()
        store.env.copy(str(work), compact=True)
        manifest = describe(work, fingerprint, map_size)
        data = work / "data.mdb"
        manifest["object"] = f"{PREFIX}{manifest['stream_seq']:012d}-{manifest['digest'][:16]}.mdb"
        manifest["bytes"] = data.stat().st_size
        log.info(
            "copied the store at stream sequence %d (%d bytes) in %.1fs",
            manifest["stream_seq"],
            manifest["bytes"],
            time.monotonic() - started,
        )
        nc = await connect(settings, name="sanction snapshot", wait=wait)
        try:
            bucket = await _bucket(nc.jetstream(timeout=wait), settings, create=True)
            with open(data, "rb") as f:
                info = await bucket.put(manifest["object"], f)
            manifest["sha256"] = info.digest
            await bucket.put(LATEST, json.dumps(manifest).encode())
            await _prune(bucket, keep, manifest["object"])
        finally:
            await nc.close()
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _prune(bucket, keep: int, newest: str) -> None:
    try:
        entries = await bucket.list(ignore_deletes=True)
    except NotFoundError:
        return
    names = sorted(e.name for e in entries if e.name.startswith(PREFIX) and not e.deleted)
    for name in names[:-keep] if keep > 0 else []:
        if name != newest:
            await bucket.delete(name)
            log.info("deleted the older snapshot %s", name)


async def bootstrap(
    data_dir: Path, settings: NatsSettings, fingerprint: str, map_size: int, *, stop: asyncio.Event | None = None
) -> dict:
    """Install the latest snapshot into `data_dir` (which holds no store). Returns its manifest."""
    data_dir.mkdir(parents=True, exist_ok=True)
    nc = await connect(settings, name="sanction follow --bootstrap", stop=stop)
    work = data_dir / f".bootstrap-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        bucket = await _bucket(nc.jetstream(timeout=60), settings, create=False)
        try:
            manifest = json.loads((await bucket.get(LATEST)).data)
        except ObjectNotFoundError:
            raise SnapshotRefused(f"bucket {settings.snapshot_bucket!r} holds no {LATEST}") from None
        if manifest.get("stream") != settings.stream:
            raise SnapshotRefused(f"the latest snapshot is of stream {manifest.get('stream')!r}, not {settings.stream!r}")
        log.info(
            "downloading snapshot %s (stream sequence %d, %d bytes)",
            manifest["object"],
            manifest["stream_seq"],
            manifest["bytes"],
        )
        try:
            with open(work / "data.mdb", "wb") as f:
                await bucket.get(manifest["object"], writeinto=f)
        except DigestMismatchError:
            raise SnapshotRefused(f"{manifest['object']} does not match its SHA-256 in the object store") from None
        except ObjectNotFoundError:
            raise SnapshotRefused(f"{manifest['object']}, named by {LATEST}, is missing") from None
    finally:
        await nc.close()
    try:
        _verify_and_adopt(work, manifest, fingerprint, map_size)
        os.replace(work / "data.mdb", data_dir / "data.mdb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "bootstrapped %s from %s: stream sequence %d, data version %d, digest %s",
        data_dir,
        manifest["object"],
        manifest["stream_seq"],
        manifest["data_version"],
        manifest["digest"],
    )
    return manifest


def _verify_and_adopt(work: Path, manifest: dict, fingerprint: str, map_size: int) -> None:
    """Open the download with this replica's pepper (StoreError if it is another one's),
    check it is what the manifest says, and give it a store id of its own."""
    store = Store(work, fingerprint, map_size=map_size)
    try:
        with store.read() as view:
            where = position.read_position(view)
            found = store_digest(view)["all"]
        if where is None or where.seq != manifest["stream_seq"] or where.stream != manifest["stream"]:
            raise SnapshotRefused(
                f"{manifest['object']} holds stream position {where}, its manifest says "
                f"{manifest['stream']} {manifest['stream_seq']}"
            )
        if found != manifest["digest"]:
            raise SnapshotRefused(f"{manifest['object']} has digest {found}, its manifest says {manifest['digest']}")
        with store.writing("sanction follow --bootstrap"), store.begin_write() as txn:
            txn.put(b"store_id", uuid.uuid4().hex.encode(), db=store.meta)
    finally:
        store.close()
