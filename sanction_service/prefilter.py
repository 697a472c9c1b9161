"""The Bloom-filter prefilter (pybloom-live) over the keys of restricted persons.

A "no" from the filter is final, so the filter must never miss a committed listing:
`catch_up` replays the journal's added keys up to the sequence of the caller's read
transaction before the filter is asked, so a listing committed by any process is seen by
the next check in every process. Keys are never removed (a delisted person just costs
one LMDB read), so only additions need replaying.

A filter object is only ever used for a snapshot it has been caught up to: the checker
takes one object per batch, catches it up to the batch's snapshot and asks only it.
When it fills to REBUILD_AT of its capacity the owner builds a larger one (before
pybloom-live refuses adds; a filter that did overflow answers "maybe" to everything).

Bit positions come from the key itself, not from pybloom-live's hashing: a key is already
a keyed BLAKE2b digest, uniform and secret, so its two 64-bit halves give every slice's
position by double hashing (Kirsch–Mitzenmacher: slice i takes (h1 + i·h2) mod m). That
costs one multiplication per slice instead of pybloom-live's SHA of the hex key, and a
whole batch is probed at once with numpy. pybloom-live's BloomFilter stays the container
(its sizing from capacity and error rate, its bitarray, its file format), but its own
`add` and `in` compute other positions and must never be used on our filters: every add
and probe goes through this module (a test fails if anything calls them).

The persisted file carries its own header so a stale, foreign or damaged file is detected
and rebuilt instead of trusted: format version, pybloom-live version, hash parameters,
the journal sequence covered, the store id, the journal chain at that sequence (which
stands for the whole history up to it, so a store restored to another history of the
same length is detected) and a digest of the bits.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import struct
import threading
from importlib.metadata import version
from pathlib import Path

import numpy as np
from pybloom_live import BloomFilter

from .store import ReadView

log = logging.getLogger(__name__)

MAGIC = b"SANCBLM\x00"
# 2: the anchor is the journal chain (1 anchored on one journal entry).
# 3: bit positions by double hashing of the key (2 used pybloom-live's own hashing).
FORMAT_VERSION = 3
POSITIONS = "key-halves-double-hashing"
_MASK64 = (1 << 64) - 1
PYBLOOM_VERSION = version("pybloom-live")
MIN_CAPACITY = 100_000
# Rebuild larger well before pybloom-live's hard capacity: past it, every answer is "maybe".
REBUILD_AT = 0.8
_HEADER_LENGTH = struct.Struct(">I")
_HEADER_TYPES = {
    "format_version": int,
    "pybloom_live_version": str,
    "capacity": int,
    "error_rate": float,
    "num_slices": int,
    "bits_per_slice": int,
    "count": int,
    "covered_seq": int,
    "store_id": str,
    "journal_anchor": str,
    "payload_blake2b": str,
    "payload_length": int,
    "saturated": bool,
    "positions": str,
}


def positions(key: bytes, slices: int, bits_per_slice: int) -> list[int]:
    """The reference: each slice's bit for one 16-byte key, in plain Python."""
    h1 = int.from_bytes(key[:8], "little")
    h2 = int.from_bytes(key[8:16], "little") | 1
    return [((h1 + i * h2) & _MASK64) % bits_per_slice + i * bits_per_slice for i in range(slices)]


def positions_many(keys: np.ndarray, slices: int, bits_per_slice: int) -> np.ndarray:
    """The same for N keys (an N x 16 uint8 array) at once: N x slices bit numbers.
    uint64 arithmetic wraps exactly as the reference masks."""
    halves = np.ascontiguousarray(keys).view("<u8")
    h1, h2 = halves[:, 0:1], halves[:, 1:2] | np.uint64(1)
    i = np.arange(slices, dtype=np.uint64)
    return (h1 + i * h2) % np.uint64(bits_per_slice) + i * np.uint64(bits_per_slice)


class PrefilterUnusable(Exception):
    """The persisted filter cannot be trusted; the caller rebuilds it."""


def _journal_anchor(view: ReadView, seq: int) -> str:
    chain = view.chain_at(seq)
    return "missing" if chain is None else chain.hex()


class Prefilter:
    def __init__(self, bloom: BloomFilter, covered_seq: int, store_id: str):
        self.bloom = bloom
        self.covered_seq = covered_seq
        self.store_id = store_id
        # Over capacity the false-positive rate climbs: we then answer "maybe" to
        # everything (correct, just slower) until the owner rebuilds a larger filter.
        self.saturated = False
        self._lock = threading.Lock()
        self._slices = bloom.num_slices
        self._bits_per_slice = bloom.bits_per_slice
        # The bitarray's own buffer (little-endian bit order: bit b is bit b % 8 of byte b // 8).
        self._bytes = np.frombuffer(bloom.bitarray, dtype=np.uint8)

    @property
    def needs_rebuild(self) -> bool:
        return self.saturated or self.bloom.count >= REBUILD_AT * self.bloom.capacity

    @classmethod
    def build(
        cls, view: ReadView, *, error_rate: float, min_capacity: int = MIN_CAPACITY, headroom: float = 2.0, progress=None
    ) -> Prefilter:
        active = view.count("persons_active") + view.count("bindings")
        prefilter = cls.empty(
            capacity=max(min_capacity, int(active * headroom)), error_rate=error_rate, store_id=view.store.store_id
        )
        # Persons in force, and every bound document (it restricts whenever its person
        # does; a document bound to nobody in force costs one lookup, never a miss).
        keys = itertools.chain(view.active_keys(), view.bound_keys())
        done = 0
        while chunk := b"".join(itertools.islice(keys, 100_000)):
            prefilter.add_many(np.frombuffer(chunk, dtype=np.uint8).reshape(-1, 16))
            before, done = done, done + len(chunk) // 16
            if progress and done // 1_000_000 != before // 1_000_000:
                progress(done)
        prefilter.covered_seq = view.seq()
        return prefilter

    @classmethod
    def empty(cls, *, capacity: int, error_rate: float, store_id: str) -> Prefilter:
        return cls(BloomFilter(capacity=capacity, error_rate=error_rate), 0, store_id)

    def add(self, key: bytes) -> None:
        if self._count(1):
            for bit in positions(key, self._slices, self._bits_per_slice):
                self._bytes[bit >> 3] |= 1 << (bit & 7)

    def add_many(self, keys: np.ndarray) -> None:
        if len(keys) and self._count(len(keys)):
            bits = positions_many(keys, self._slices, self._bits_per_slice).ravel()
            # .at: several bits of one call may fall in the same byte.
            np.bitwise_or.at(self._bytes, bits >> np.uint64(3), np.left_shift(1, bits & np.uint64(7)).astype(np.uint8))

    def _count(self, n: int) -> bool:
        """Count n more keys, as pybloom-live counts them; False once over capacity."""
        if self.saturated:
            return False
        self.bloom.count += n
        if self.bloom.count > self.bloom.capacity:
            log.warning("prefilter is over its capacity (%d); answering 'maybe' until rebuilt", self.bloom.capacity)
            self.saturated = True
            return False
        return True

    def may_contain(self, key: bytes) -> bool:
        if self.saturated:
            return True
        data = self._bytes
        return all(data[bit >> 3] >> (bit & 7) & 1 for bit in positions(key, self._slices, self._bits_per_slice))

    def may_contain_many(self, keys: np.ndarray) -> np.ndarray:
        """may_contain for N keys (N x 16 uint8) at once: a bool array."""
        if self.saturated:
            return np.ones(len(keys), dtype=bool)
        bits = positions_many(keys, self._slices, self._bits_per_slice)
        return ((self._bytes[bits >> np.uint64(3)] >> (bits & np.uint64(7)).astype(np.uint8)) & 1).all(axis=1)

    def catch_up(self, view: ReadView) -> int:
        """Add the keys of every journal entry after covered_seq up to the view's sequence."""
        target = view.seq()
        if target <= self.covered_seq:
            return 0
        added = 0
        with self._lock:
            if target <= self.covered_seq:
                return 0
            for seq, entry in view.journal_since(self.covered_seq):
                if seq > target:
                    break
                for key_hex in entry["added"]:
                    self._add(key_hex)
                    added += 1
            self.covered_seq = target
        return added

    def _add(self, key_hex: str) -> None:
        self.add(bytes.fromhex(key_hex))

    def save(self, path: str | os.PathLike, view: ReadView) -> None:
        """Write atomically (temp file + rename) so a reader never sees half a filter."""
        with self._lock:
            if self.covered_seq > view.seq():
                raise ValueError("view is older than the filter")
            bits = io.BytesIO()
            self.bloom.tofile(bits)
            payload = bits.getvalue()
            header = {
                "format_version": FORMAT_VERSION,
                "pybloom_live_version": PYBLOOM_VERSION,
                "capacity": self.bloom.capacity,
                "error_rate": self.bloom.error_rate,
                "num_slices": self.bloom.num_slices,
                "bits_per_slice": self.bloom.bits_per_slice,
                "count": self.bloom.count,
                "covered_seq": self.covered_seq,
                "store_id": self.store_id,
                "journal_anchor": _journal_anchor(view, self.covered_seq),
                "payload_blake2b": hashlib.blake2b(payload, digest_size=32).hexdigest(),
                "payload_length": len(payload),
                "saturated": self.saturated,
                "positions": POSITIONS,
            }
        encoded = json.dumps(header, sort_keys=True).encode()
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC + _HEADER_LENGTH.pack(len(encoded)) + encoded + payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def save_or_warn(self, path: str | os.PathLike, view: ReadView) -> bool:
        """Save; if the disk refuses (full, read-only), say so and go on: the filter in
        memory is complete, and the next start rebuilds the file."""
        try:
            self.save(path, view)
            return True
        except OSError as exc:
            log.warning(
                "could not save the prefilter to %s (%s); it will be rebuilt at the next start", path, exc.strerror or exc
            )
            return False

    @classmethod
    def load(cls, path: str | os.PathLike, view: ReadView) -> Prefilter:
        """Load a persisted filter that matches this store, or raise PrefilterUnusable."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise PrefilterUnusable("no persisted prefilter") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER_LENGTH.size:
            raise PrefilterUnusable("not a prefilter file")
        start = len(MAGIC) + _HEADER_LENGTH.size
        (length,) = _HEADER_LENGTH.unpack(data[len(MAGIC) : start])
        try:
            header = json.loads(data[start : start + length])
        except (ValueError, RecursionError):
            raise PrefilterUnusable("header is damaged") from None
        if isinstance(header, dict) and header.get("format_version") != FORMAT_VERSION:
            raise PrefilterUnusable("another format version")
        if not isinstance(header, dict) or any(
            type(header.get(name)) is not kind and not (kind is float and type(header.get(name)) is int)
            for name, kind in _HEADER_TYPES.items()
        ):
            raise PrefilterUnusable("header has the wrong shape")
        payload = data[start + length :]
        checks = [
            (header.get("format_version") == FORMAT_VERSION, "another format version"),
            (header.get("positions") == POSITIONS, "another bit-position scheme"),
            (header.get("pybloom_live_version") == PYBLOOM_VERSION, "written by another pybloom-live version"),
            (header.get("store_id") == view.store.store_id, "written for another store"),
            (len(payload) == header.get("payload_length"), "truncated"),
            (hashlib.blake2b(payload, digest_size=32).hexdigest() == header.get("payload_blake2b"), "bits damaged"),
            (0 <= header["covered_seq"] <= view.seq(), "covers journal entries this store does not have"),
        ]
        for ok, reason in checks:
            if not ok:
                raise PrefilterUnusable(reason)
        if _journal_anchor(view, header["covered_seq"]) != header.get("journal_anchor"):
            raise PrefilterUnusable("store history differs from the one the filter covers")
        try:
            bloom = BloomFilter.fromfile(io.BytesIO(payload))
        except (ValueError, struct.error, EOFError, OverflowError, MemoryError) as exc:
            raise PrefilterUnusable(f"payload unreadable: {exc}") from None
        params = (bloom.capacity, bloom.num_slices, bloom.bits_per_slice, bloom.count)
        if params != (header["capacity"], header["num_slices"], header["bits_per_slice"], header["count"]):
            raise PrefilterUnusable("hash parameters disagree with the header")
        prefilter = cls(bloom, header["covered_seq"], header["store_id"])
        prefilter.saturated = bool(header.get("saturated"))
        return prefilter


def load_or_build(
    path: str | os.PathLike, view: ReadView, *, error_rate: float, min_capacity: int = MIN_CAPACITY, progress=None
) -> tuple[Prefilter, str]:
    """Return a filter covering the view, and how it was obtained (for the logs). A filter
    built here (none persisted, unusable, or nearly full) is persisted for the next start
    when the disk allows."""
    try:
        prefilter = Prefilter.load(path, view)
        prefilter.catch_up(view)
        if prefilter.needs_rebuild:
            raise PrefilterUnusable(f"nearly full ({prefilter.bloom.count} of {prefilter.bloom.capacity})")
        how, built = f"loaded (covers seq {prefilter.covered_seq})", False
    except PrefilterUnusable as exc:
        prefilter = Prefilter.build(view, error_rate=error_rate, min_capacity=min_capacity, progress=progress)
        how, built = f"rebuilt from the store ({exc})", True
    prefilter.catch_up(view)
    if built:
        prefilter.save_or_warn(path, view)
    return prefilter, how
