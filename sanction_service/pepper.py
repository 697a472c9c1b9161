"""Loading the secret pepper that keys every document hash.

The pepper comes from SANCTION_PEPPER (hex) or a file. It is never logged; only its
fingerprint (identity.pepper_fingerprint) is stored and shown.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

MIN_PEPPER_BYTES = 16


class PepperError(Exception):
    pass


def load_pepper(*, pepper_hex: str = "", pepper_file: str | os.PathLike = "") -> bytes:
    if pepper_hex:
        try:
            raw = bytes.fromhex(pepper_hex.strip())
        except ValueError:
            raise PepperError("SANCTION_PEPPER must be hex") from None
    elif pepper_file:
        try:
            raw = Path(pepper_file).read_bytes().strip()
        except OSError as exc:
            raise PepperError(f"cannot read pepper file {pepper_file}: {exc.strerror}") from None
    else:
        raise PepperError("no pepper configured (set SANCTION_PEPPER_FILE or SANCTION_PEPPER)")
    if len(raw) < MIN_PEPPER_BYTES:
        raise PepperError(f"pepper must be at least {MIN_PEPPER_BYTES} bytes")
    return _as_key(raw)


def _as_key(raw: bytes) -> bytes:
    # BLAKE2b keys are at most 64 bytes; longer secrets are condensed, not truncated.
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()


def explain_pepper_mismatch(pepper_hex: str, pepper_file: str | os.PathLike, store_fingerprint: str) -> str:
    """The two sources read the same text differently: SANCTION_PEPPER as hex, a file as
    the bytes it holds. When the other reading of the given text is the store's pepper,
    say which form the store expects (the stores' keys cannot be re-keyed, so both
    readings stay)."""
    from .identity import pepper_fingerprint

    try:
        if pepper_hex:
            if pepper_fingerprint(_as_key(pepper_hex.strip().encode())) == store_fingerprint:
                return (
                    "; it was built with this same text read from a pepper file (as text, not hex): "
                    "put it in a file and set SANCTION_PEPPER_FILE instead of SANCTION_PEPPER"
                )
        else:
            text = Path(pepper_file).read_bytes().strip().decode("ascii")
            if pepper_fingerprint(_as_key(bytes.fromhex(text))) == store_fingerprint:
                return (
                    "; it was built with this same text given as SANCTION_PEPPER (read as hex): "
                    "set SANCTION_PEPPER to the file's text instead of using the file"
                )
    except (OSError, ValueError):
        pass
    return ""


def create_pepper_file(path: str | os.PathLike) -> bool:
    """Create a random pepper file (mode 0600) unless one exists. Returns True if created."""
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return True
