"""What counts as acceptable text in the feed and in check requests.

Pure functions that answer with the reason a value is refused (or None), so each caller
raises its own error type naming its own field. Reasons never quote the value.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from .settings import MAX_IDENTIFIER_BYTES

# Unicode Cc (C0, DEL, C1), lone surrogates (JSON "\ud800" escapes decode to them and
# then cannot be encoded to UTF-8 for the store), and the line/paragraph separators,
# which break a record across lines in logs and rejects files just as "\n" does.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def text_problem(value: object, max_chars: int, *, required: bool = True) -> str | None:
    """Why `value` is not a string (non-empty when `required`) of at most `max_chars`
    characters without control characters, or None when it is."""
    if not isinstance(value, str):
        return "is required and must be a non-empty string" if required else "must be a string"
    if required and not value.strip():
        return "is required and must be a non-empty string"
    if len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    if _FORBIDDEN.search(value):
        return "contains control characters or invalid Unicode"
    return None


def identifier_problem(value: object) -> str | None:
    """Why `value` is not an identifier: printable text of at most MAX_IDENTIFIER_BYTES
    bytes in UTF-8 (store keys are built from identifiers), or None when it is."""
    if not isinstance(value, str) or not value.strip():
        return "is required and must be a non-empty string"
    # Length in characters first: anything longer cannot fit in the bytes, and the
    # check costs nothing on a megabyte-long value.
    if len(value) > MAX_IDENTIFIER_BYTES or len(value.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES:
        return f"is longer than {MAX_IDENTIFIER_BYTES} bytes in UTF-8"
    if not value.isprintable():
        return "must be printable text without control characters"
    return None


def is_identifier(value: object) -> TypeGuard[str]:
    return identifier_problem(value) is None
