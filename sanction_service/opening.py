"""Opening the store a command or a server works on: the pepper (SANCTION_PEPPER or its
file), then the Store under that pepper's fingerprint, with a hint that says where each
pepper came from when they differ. Free of gRPC, so commands that only read or write the
store (`sanction load`) do not import it."""

from __future__ import annotations

from pathlib import Path

from .identity import pepper_fingerprint
from .pepper import explain_pepper_mismatch, load_pepper
from .settings import PEPPER_FILE, Settings
from .store import PepperMismatch, Store


def open_store(
    settings: Settings, *, create: bool = False, allow_incomplete: bool = False, allow_outdated: bool = False
) -> tuple[Store, bytes]:
    pepper_file = settings.pepper_file or str(Path(settings.data_dir) / PEPPER_FILE)
    pepper = load_pepper(pepper_hex=settings.pepper_hex, pepper_file=pepper_file)
    try:
        store = Store(
            settings.data_dir,
            pepper_fingerprint(pepper),
            create=create,
            map_size=settings.map_size,
            allow_incomplete=allow_incomplete,
            allow_outdated=allow_outdated,
        )
    except PepperMismatch as exc:
        hint = explain_pepper_mismatch(settings.pepper_hex, pepper_file, exc.store_fingerprint)
        raise PepperMismatch(f"{exc}{hint}", exc.store_fingerprint) from None
    return store, pepper
