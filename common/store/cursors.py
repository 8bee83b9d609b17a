"""Opaque pagination cursors: the keyset position of the last item of a page.

A cursor is URL-safe base64 (no padding) of a small JSON array: a kind tag naming the
listing it belongs to, then the sort key of the last row returned (for example the
`(ts, fill_id)` of the last fill). The next page is the rows strictly after that key in
the listing's order, found through an index, never with OFFSET, so rows that arrive
between two requests neither shift nor repeat what the client sees. Anything that does
not decode to the expected kind and key shape raises ValueError.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

MAX_CURSOR_LENGTH = 256
_INT64 = (1 << 63) - 1


def encode_cursor(kind: str, *key: int) -> str:
    """Return the cursor positioned after the row whose sort key is `key`."""
    return base64.urlsafe_b64encode(orjson.dumps([kind, *key])).rstrip(b"=").decode()


def decode_cursor(cursor: Any, kind: str, size: int) -> tuple[int, ...]:
    """Return the sort key a cursor of `kind` holds (`size` integers); ValueError otherwise."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise ValueError("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("invalid cursor") from None
    if not isinstance(value, list) or len(value) != size + 1 or value[0] != kind:
        raise ValueError("invalid cursor")
    key = value[1:]
    if not all(type(part) is int and -_INT64 <= part <= _INT64 for part in key):
        raise ValueError("invalid cursor")
    return tuple(key)
