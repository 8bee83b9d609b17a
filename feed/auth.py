"""Who a WebSocket client is: the `authenticate` op, checked like a signed REST request.

    {"op": "authenticate", "api_key": "zmx_...", "timestamp": 1700000000000,
     "signature": hex HMAC-SHA256(api secret, timestamp + "GET/ws")}

The API key is looked up in the history store by its SHA-256 and the secret derived from
the gateway's master secret, both with the gateway's own helpers (`gateway.keys`), so a
key works the same on both. The timestamp must lie within `gateway.receive_window_ms` of
the feed's clock, a signature is accepted once (a captured authenticate message cannot
be replayed on another connection), and every comparison is constant-time.

Store calls block, so they run in the loop's default thread executor; the store is
opened on first use and reopened after a failure. Lookups are cached for
`gateway.key_cache_seconds`, as in the gateway. `still_valid` re-checks a key for the
periodic revalidation of open connections (a revoked or rotated key closes them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from common.config import Config
from feed.protocol import ErrorCode, FeedError
from gateway import keys

log = logging.getLogger("zmx.feed")

SIGNED_SUFFIX = b"GET/ws"
MAX_CACHED_KEYS = 100_000


class StoreHandle:
    """The history store, opened lazily in a worker thread and reopened after a failure."""

    def __init__(self, config: Config, opener: Callable[[str], Any] | None = None) -> None:
        self.url = config.effective_store_url()
        self._opener = opener
        self._store = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """Return the open store (blocking: call from a worker thread)."""
        with self._lock:
            if self._store is None:
                opener = self._opener
                if opener is None:
                    from common.store import open_store as opener
                self._store = opener(self.url)
            return self._store

    def reset(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # a broken store may fail to close too; it is dropped either way
                log.warning("closing the store failed", exc_info=True)

    def close(self) -> None:
        self.reset()


class Authenticator:
    """Check `authenticate` ops against the store and the master secret."""

    def __init__(self, config: Config, store: StoreHandle, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.store = store
        self.receive_window_ms = config.gateway.receive_window_ms
        self.key_cache_seconds = config.gateway.key_cache_seconds
        self.clock = clock
        self.monotonic = monotonic
        self._master_secret: bytes | None = None
        self._cache: dict[str, tuple[int | None, float]] = {}  # api key -> (trader id, expires)
        self._used: dict[str, float] = {}  # signature -> when it leaves the window (monotonic)

    async def authenticate(self, api_key: str, timestamp: str, signature: str) -> int:
        """Return the trader id the op proves; raise FeedError otherwise."""
        now_ms = int(self.clock() * 1000)
        if abs(now_ms - int(timestamp)) > self.receive_window_ms:
            raise FeedError(ErrorCode.TIMESTAMP_OUT_OF_WINDOW,
                            f"timestamp is {int(timestamp) - now_ms} ms from the server's clock;"
                            f" the window is +-{self.receive_window_ms} ms")
        if not keys.API_KEY.fullmatch(api_key):
            raise FeedError(ErrorCode.INVALID_API_KEY, "unknown or revoked API key")
        trader_id = await self.lookup(api_key)
        if trader_id is None:
            raise FeedError(ErrorCode.INVALID_API_KEY, "unknown or revoked API key")
        secret = keys.derive_secret(self._master_secret, api_key).encode()
        expected = hmac.new(secret, timestamp.encode() + SIGNED_SUFFIX, hashlib.sha256).hexdigest()
        given = signature.lower() if signature.isascii() else ""
        if not hmac.compare_digest(expected, given):
            raise FeedError(ErrorCode.INVALID_SIGNATURE,
                            'signature is not hex HMAC-SHA256(api secret, timestamp + "GET/ws")')
        if not self._first_use(expected):
            raise FeedError(ErrorCode.INVALID_SIGNATURE, "this signature was used already: sign with a fresh timestamp")
        return trader_id

    async def lookup(self, api_key: str, cached: bool = True) -> int | None:
        """Return the key's trader id (None: unknown or revoked); raise FeedError(STORE_UNAVAILABLE)."""
        now = self.monotonic()
        entry = self._cache.get(api_key)
        if cached and entry is not None and entry[1] > now:
            return entry[0]
        loop = asyncio.get_running_loop()
        try:
            trader_id = await loop.run_in_executor(None, self._lookup_blocking, api_key)
        except Exception as error:
            log.warning("API key lookup failed", extra={"error": repr(error)})
            self.store.reset()
            raise FeedError(ErrorCode.STORE_UNAVAILABLE, "the key store is unavailable; try again") from None
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[api_key] = (trader_id, now + self.key_cache_seconds)
        return trader_id

    def _lookup_blocking(self, api_key: str) -> int | None:
        if self._master_secret is None:
            self._master_secret = keys.load_master_secret(self.config)
        return self.store.get().find_api_key(keys.hash_api_key(api_key))

    def _first_use(self, signature: str) -> bool:
        now = self.monotonic()
        used = self._used
        if len(used) > 10_000:
            for old in [old for old, until in used.items() if until <= now]:
                del used[old]
        until = used.get(signature)
        if until is not None and until > now:
            return False
        # A signature is valid while its timestamp is in the window: at most twice the window.
        used[signature] = now + 2 * self.receive_window_ms / 1000
        return True
