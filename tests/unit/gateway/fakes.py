"""Stand-ins for the gateway's two dependencies, for Falcon TestClient tests.

`InProcessEngine` runs each command through the real matcher core (`Dispatcher` over an
`Engine`, the same code the matcher process runs, minus sockets and journal), so replies
have exactly the matcher's shapes and rejects. `outage` makes shards answer like an
unreachable or stalled matcher. `FakeStore` keeps traders, keys and counters in dicts,
with the history store's interface; its history reads go to a real, empty SQLite store.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from common import protocol
from common.store import DuplicateError, Page, open_store
from common.store.cursors import decode_cursor, encode_cursor
from common.types import RejectCode
from gateway.envelope import ApiError
from matcher.dispatch import Dispatcher
from matcher.engine import Engine


class InProcessEngine:
    """The engine client's interface over in-process matcher engines, one per shard."""

    def __init__(self, shard_ids: Iterable[int] = (0,), timeout: float = 5.0) -> None:
        self.shard_ids = tuple(sorted(shard_ids))
        self.timeout = timeout
        self.dispatchers = {shard_id: Dispatcher(Engine(shard_id, 1000)) for shard_id in self.shard_ids}
        self.calls: list[tuple[int, str, dict[str, Any]]] = []
        self.outage: dict[int, RejectCode] = {}  # shard -> MATCHER_UNAVAILABLE or MATCHER_TIMEOUT
        self._lock = threading.Lock()
        self._clock = itertools.count(time.time_ns())

    def call(self, shard_id: int, op: str, fields: Mapping[str, Any] | None = None,
             timeout: float | None = None) -> Any:
        result = self.call_many([(shard_id, op, fields)], timeout)[0]
        if isinstance(result, ApiError):
            raise result
        return result

    def call_many(self, calls, timeout: float | None = None) -> list[Any]:
        return [self._execute(shard_id, op, dict(fields or {})) for shard_id, op, fields in calls]

    def _execute(self, shard_id: int, op: str, fields: dict[str, Any]) -> Any:
        self.calls.append((shard_id, op, fields))
        outage = self.outage.get(shard_id)
        if outage is not None:
            return ApiError(outage, f"simulated {outage.name}")
        # Through the wire codec, as the real matcher decodes it.
        try:
            command = protocol.decode_command(orjson.dumps({"id": 1, "op": op, **fields}))
        except protocol.ProtocolError as error:
            return ApiError(error.code, error.message, error.details)
        with self._lock:
            data, reject = self.dispatchers[shard_id].execute(command, next(self._clock))
        if reject is not None:
            return ApiError(reject.code, reject.message, reject.details or {})
        return orjson.loads(orjson.dumps(data))  # a copy, as a reply off the wire would be

    def ops(self) -> list[str]:
        return [op for _, op, _ in self.calls]


# The Store's read side for the history routes, served by `FakeStore.history`.
HISTORY_READS = frozenset({"markets", "trades", "candles", "ticker", "orders", "order", "fills", "deposits",
                           "withdrawals", "balances", "positions", "portfolio", "leaderboard", "account_orders",
                           "account_fills", "order_by_client_id", "balances_updated_at"})


class FakeStore:
    """Traders, API keys and rate-limit counters in memory; history from an empty SQLite store."""

    def __init__(self) -> None:
        self._directory = tempfile.mkdtemp(prefix="zmx-fake-store-")
        self.history = open_store(f"sqlite:///{self._directory}/history.sqlite3")
        self.traders: dict[int, dict[str, Any]] = {}
        self.keys: dict[str, tuple[int, str, int]] = {}  # hash -> (trader id, prefix, created_at)
        self.counters: dict[tuple[str, int], int] = {}
        self.lookups = 0
        self.unavailable = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.unavailable:
            from common.store import StoreUnavailable

            raise StoreUnavailable("simulated outage")

    def create_trader(self, username: str) -> dict[str, Any]:
        self._check()
        with self._lock:
            if any(trader["username"] == username for trader in self.traders.values()):
                raise DuplicateError(f"username {username!r} is taken")
            trader_id = next(self._ids)
            trader = {"trader_id": trader_id, "username": username, "created_at": time.time_ns() // 1_000_000}
            self.traders[trader_id] = trader
            return dict(trader)

    def get_trader(self, trader_id: int) -> dict[str, Any] | None:
        self._check()
        trader = self.traders.get(trader_id)
        return None if trader is None else dict(trader)

    def list_traders(self, limit: int, cursor: str | None = None) -> Page:
        self._check()
        after = decode_cursor(cursor, "traders", 1)[0] if cursor is not None else 0
        rows = [self.traders[trader_id] for trader_id in sorted(self.traders) if trader_id > after]
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor("traders", rows[-1]["trader_id"]) if has_more else None
        return Page([dict(row) for row in rows], next_cursor, has_more)

    def replace_api_key(self, trader_id: int, key_hash: str, key_prefix: str, created_at: int) -> None:
        self._check()
        with self._lock:
            self.revoke_api_keys(trader_id)
            self.keys[key_hash] = (trader_id, key_prefix, created_at)

    def revoke_api_keys(self, trader_id: int) -> int:
        self._check()
        mine = [key_hash for key_hash, (owner, _, _) in self.keys.items() if owner == trader_id]
        for key_hash in mine:
            del self.keys[key_hash]
        return len(mine)

    def find_api_key(self, key_hash: str) -> int | None:
        self._check()
        self.lookups += 1
        found = self.keys.get(key_hash)
        return None if found is None else found[0]

    def api_key_prefix(self, trader_id: int) -> str | None:
        self._check()
        for owner, prefix, _ in self.keys.values():
            if owner == trader_id:
                return prefix
        return None

    def rate_limit_hit(self, bucket: str, window_start: int, weight: int) -> int:
        self._check()
        with self._lock:
            total = self.counters.get((bucket, window_start), 0) + weight
            self.counters[(bucket, window_start)] = total
            return total

    def __getattr__(self, name: str) -> Any:
        if name in HISTORY_READS:
            self._check()
            return getattr(self.history, name)
        raise AttributeError(name)

    def close(self) -> None:
        self.history.close()
        shutil.rmtree(self._directory, ignore_errors=True)
