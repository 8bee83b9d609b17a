"""Who is calling: traders by API key and HMAC signature, the admin by bearer token.

Trader requests carry `X-API-Key`, `X-Timestamp` (integer milliseconds) and `X-Signature`,
the hex HMAC-SHA256, keyed with the API secret, of

    timestamp + METHOD + path-with-query + body

(for example `1700000000000POST/api/v1/account/orders{"pair":"BTC-USDT",...}`), with the
path and query exactly as sent in the request line. The timestamp must be within
`receive_window_ms` of the gateway's clock, and each signature is accepted once
(`ReplayGuard`). With `allow_key_only`, a request with the key and neither of the other
two headers is accepted too.

Key lookups are cached per worker for `key_cache_seconds`, so a rotation or revocation
reaches every worker within that time; unknown keys are cached as well, which keeps a
flood of bad keys away from the store. Every comparison of secrets is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

from common.types import RejectCode
from gateway import keys
from gateway.envelope import ApiError
from gateway.ratelimit import ReplayGuard

MAX_CACHED_KEYS = 100_000
_MAX_TIMESTAMP_DIGITS = 15


class Authenticator:
    """Check trader signatures and the admin token."""

    def __init__(self, store, master_secret: bytes, admin_token: str | None, *, receive_window_ms: int,
                 allow_key_only: bool, key_cache_seconds: float, replay_guard: ReplayGuard | None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.master_secret = master_secret
        self.admin_token = admin_token.encode() if admin_token else None
        self.receive_window_ms = receive_window_ms
        self.allow_key_only = allow_key_only
        self.key_cache_seconds = key_cache_seconds
        self.replay_guard = replay_guard
        self.clock = clock
        self.monotonic = monotonic
        # api key -> (trader id or None, api secret bytes, expires at (monotonic))
        self._cache: dict[str, tuple[int | None, bytes, float]] = {}
        self._cache_lock = threading.Lock()

    # ---------------------------------------------------------------- traders

    def trader(self, api_key: str | None, timestamp_text: str | None, signature: str | None, method: str,
               target: str, body: bytes) -> int:
        """Return the trader id a request authenticates as (its three headers); raise ApiError (401) otherwise."""
        if not api_key:
            raise ApiError(RejectCode.MISSING_AUTHENTICATION, "send X-API-Key, X-Timestamp and X-Signature",
                           {"header": "X-API-Key"})
        key_only = timestamp_text is None and signature is None
        if key_only and not self.allow_key_only:
            raise ApiError(RejectCode.MISSING_AUTHENTICATION,
                           "this gateway requires signed requests: send X-Timestamp and X-Signature",
                           {"header": "X-Signature"})
        if not key_only:
            if timestamp_text is None or signature is None:
                missing = "X-Timestamp" if timestamp_text is None else "X-Signature"
                raise ApiError(RejectCode.MISSING_AUTHENTICATION, f"{missing} is missing", {"header": missing})
            timestamp = self._timestamp(timestamp_text)
        trader_id, secret = self.lookup(api_key)
        if trader_id is None:
            raise ApiError(RejectCode.INVALID_API_KEY, "unknown or revoked API key")
        if key_only:
            return trader_id
        message = b"%s%s%s%s" % (timestamp_text.encode(), method.encode(), target.encode(), body)
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower() if signature.isascii() else ""):
            raise ApiError(RejectCode.INVALID_SIGNATURE,
                           "X-Signature is not hex HMAC-SHA256(secret, timestamp + METHOD + path-with-query + body)")
        if self.replay_guard is not None and not self.replay_guard.first_use(expected, timestamp):
            raise ApiError(RejectCode.INVALID_SIGNATURE,
                           "this signature was used already: sign every request with a fresh timestamp",
                           {"reason": "replayed"})
        return trader_id

    def _timestamp(self, text: str) -> int:
        if not (text.isascii() and text.isdigit() and len(text) <= _MAX_TIMESTAMP_DIGITS):
            raise ApiError(RejectCode.TIMESTAMP_OUT_OF_WINDOW,
                           "X-Timestamp must be the current time in integer milliseconds",
                           {"header": "X-Timestamp"})
        timestamp = int(text)
        now = int(self.clock() * 1000)
        if abs(now - timestamp) > self.receive_window_ms:
            raise ApiError(RejectCode.TIMESTAMP_OUT_OF_WINDOW,
                           f"X-Timestamp is {timestamp - now} ms from the server's clock;"
                           f" the window is +-{self.receive_window_ms} ms",
                           {"server_time": now, "receive_window_ms": self.receive_window_ms})
        return timestamp

    def lookup(self, api_key: str) -> tuple[int | None, bytes]:
        """Return (trader id, API secret) of a key; the trader id is None for an unknown or revoked key."""
        now = self.monotonic()
        cached = self._cache.get(api_key)
        if cached is not None and cached[2] > now:
            return cached[0], cached[1]
        if not keys.API_KEY.fullmatch(api_key):
            return None, b""
        trader_id = self.store.find_api_key(keys.hash_api_key(api_key))
        secret = keys.derive_secret(self.master_secret, api_key).encode()
        with self._cache_lock:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[api_key] = (trader_id, secret, now + self.key_cache_seconds)
        return trader_id, secret

    # ---------------------------------------------------------------- admin

    def admin(self, authorization: str | None) -> None:
        """Accept the admin bearer token; raise ApiError (401 missing, 403 wrong) otherwise."""
        if not authorization:
            raise ApiError(RejectCode.MISSING_AUTHENTICATION, "send Authorization: Bearer <admin token>",
                           {"header": "Authorization"})
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(RejectCode.MISSING_AUTHENTICATION, "send Authorization: Bearer <admin token>",
                           {"header": "Authorization"})
        if self.admin_token is None:
            raise ApiError(RejectCode.FORBIDDEN, "the admin API is disabled: no admin token is configured")
        token_bytes = token.strip().encode("utf-8", "replace")
        if not hmac.compare_digest(token_bytes, self.admin_token):
            raise ApiError(RejectCode.FORBIDDEN, "wrong admin token")

    def forget(self, api_key: str | None = None) -> None:
        """Drop cached lookups in this worker (all, or one key's): used after a rotation here."""
        with self._cache_lock:
            if api_key is None:
                self._cache.clear()
            else:
                self._cache.pop(api_key, None)

