"""The Store: one object per process over one database, shared by all of its threads.

This module holds what the gateway needs to authenticate and limit requests: traders,
hashed API keys and rate-limit counters. The history written by the recorder and its
queries live in `common/store/history.py` and `common/store/writer.py`; `Store` gathers
them all behind one interface, the same for SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.store.backends import DuplicateError, is_unique_violation
from common.store.cursors import decode_cursor, encode_cursor

# Rate-limit windows are at most an hour long (gateway.rate_limit_window_seconds), so a
# counter created more than two hours ago belongs to a window that is over.
RATE_LIMIT_RETENTION_MS = 2 * 3600 * 1000
RATE_LIMIT_PRUNE_EVERY_SECONDS = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a cursor-paginated listing; `next_cursor` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor, "has_more": self.has_more}


def make_page(rows: Sequence[Sequence[Any]], limit: int, kind: str, key: Callable[[Sequence[Any]], tuple],
              item: Callable[[Sequence[Any]], dict[str, Any]]) -> Page:
    """Build a Page from up to `limit + 1` rows fetched in listing order.

    The extra row only says that there is more; the cursor holds the sort key of the last
    row returned.
    """
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(kind, *key(rows[-1])) if has_more and rows else None
    return Page([item(row) for row in rows], next_cursor, has_more)


def check_limit(limit: int) -> int:
    if type(limit) is not int or limit < 1:
        raise ValueError("limit must be a positive integer")
    return limit


class TraderStore:
    """Traders, API keys and rate limits (the gateway's part of the Store)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.dialect = backend.dialect
        self._last_prune = 0.0

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ traders

    def create_trader(self, username: str) -> dict[str, Any]:
        """Create a trader; its id (>= 1) is also its matcher account id. DuplicateError if taken."""
        created_at = now_ms()
        try:
            with self.backend.transaction(write=True) as tx:
                trader_id = tx.execute(
                    "INSERT INTO traders (username, created_at) VALUES (%s, %s) RETURNING trader_id",
                    (username, created_at),
                ).fetchone()[0]
        except Exception as error:
            if is_unique_violation(error):
                raise DuplicateError(f"username {username!r} is taken") from None
            raise
        return {"trader_id": trader_id, "username": username, "created_at": created_at}

    def get_trader(self, trader_id: int) -> dict[str, Any] | None:
        with self.backend.transaction() as tx:
            row = tx.execute("SELECT trader_id, username, created_at FROM traders WHERE trader_id = %s",
                             (trader_id,)).fetchone()
        return None if row is None else _trader(row)

    def list_traders(self, limit: int, cursor: str | None = None) -> Page:
        """Traders in id order, oldest first."""
        check_limit(limit)
        after = decode_cursor(cursor, "traders", 1)[0] if cursor is not None else 0
        with self.backend.transaction() as tx:
            rows = tx.execute(
                "SELECT trader_id, username, created_at FROM traders WHERE trader_id > %s"
                " ORDER BY trader_id LIMIT %s",
                (after, limit + 1),
            ).fetchall()
        return make_page(rows, limit, "traders", lambda row: (row[0],), _trader)

    # ------------------------------------------------------------------ API keys

    def replace_api_key(self, trader_id: int, key_hash: str, key_prefix: str, created_at: int) -> None:
        """Make `key_hash` the trader's only key: the old keys stop working in the same transaction."""
        with self.backend.transaction(write=True) as tx:
            tx.execute("DELETE FROM api_keys WHERE trader_id = %s", (trader_id,))
            tx.execute("INSERT INTO api_keys (key_hash, trader_id, key_prefix, created_at) VALUES (%s, %s, %s, %s)",
                       (key_hash, trader_id, key_prefix, created_at))

    def revoke_api_keys(self, trader_id: int) -> int:
        """Delete every key of the trader; return how many there were."""
        with self.backend.transaction(write=True) as tx:
            return tx.execute("DELETE FROM api_keys WHERE trader_id = %s", (trader_id,)).rowcount

    def find_api_key(self, key_hash: str) -> int | None:
        """Return the trader id owning the hashed key, or None."""
        with self.backend.transaction() as tx:
            row = tx.execute("SELECT trader_id FROM api_keys WHERE key_hash = %s", (key_hash,)).fetchone()
        return None if row is None else row[0]

    def api_key_prefix(self, trader_id: int) -> str | None:
        """Return the visible prefix of the trader's current key, or None when it has none."""
        with self.backend.transaction() as tx:
            row = tx.execute("SELECT key_prefix FROM api_keys WHERE trader_id = %s ORDER BY created_at DESC LIMIT 1",
                             (trader_id,)).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ rate limits

    def rate_limit_hit(self, bucket: str, window_start: int, weight: int) -> int:
        """Add `weight` to the bucket's counter for the window; return the new total.

        One atomic upsert, so gateways on several hosts share the counter. Every
        RATE_LIMIT_PRUNE_EVERY_SECONDS a call also deletes counters created more than
        RATE_LIMIT_RETENTION_MS ago (their windows are over whatever unit `window_start` uses).
        """
        created_at = now_ms()
        with self.backend.transaction(write=True) as tx:
            total = tx.execute(
                "INSERT INTO rate_limits (bucket, window_start, weight, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (bucket, window_start) DO UPDATE SET weight = rate_limits.weight + excluded.weight"
                " RETURNING weight",
                (bucket, window_start, weight, created_at),
            ).fetchone()[0]
        monotonic = time.monotonic()
        if monotonic - self._last_prune >= RATE_LIMIT_PRUNE_EVERY_SECONDS:
            self._last_prune = monotonic
            self.prune_rate_limits(created_at - RATE_LIMIT_RETENTION_MS)
        return total

    def prune_rate_limits(self, created_before: int) -> int:
        """Delete rate-limit counters created before `created_before` (ms); return how many."""
        with self.backend.transaction(write=True) as tx:
            return tx.execute("DELETE FROM rate_limits WHERE created_at < %s", (created_before,)).rowcount


def _trader(row: Sequence[Any]) -> dict[str, Any]:
    return {"trader_id": row[0], "username": row[1], "created_at": row[2]}
