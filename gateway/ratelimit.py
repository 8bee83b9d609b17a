"""Weighted fixed-window rate limits shared by every gateway worker, and the replay guard.

A counter is `(bucket, window_start) -> total weight`, added to atomically by `hit`. Two
backends offer that one operation:

- `SharedCounters` ("local", the default): a hash table in a file mapped by every worker
  of the host (`<data_dir>/gateway/*.counters`), each stripe of slots guarded by an
  `fcntl` record lock between processes and a mutex between the threads of a process.
  A hit costs a few microseconds and no system call beyond the two lock operations.
- the history store's `rate_limit_hit` ("store"): one upsert per hit, shared by gateways
  on several hosts.

`RateLimiter` charges a request's weight to its API key (trader routes) or its client
address (public routes) and answers whether it may proceed, with what the `X-RateLimit-*`
headers report. `ReplayGuard` uses a second counter table to accept each signature once.

When the table is full the oldest counter of the stripe is dropped (a client may then get
more than its budget, never less), and a failing store lets requests through: rate
limiting must not become the outage.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("zmx.gateway.ratelimit")

_SLOT = struct.Struct("<QqQ")  # key hash (0: empty), window start, total
SLOTS_PER_STRIPE = 16
_STRIPE = struct.Struct("<" + "QqQ" * SLOTS_PER_STRIPE)
_EMPTY = 0
_EMPTY_KEY = bytes(8)
_ONE_KEY = (1).to_bytes(8, "little")


class Counters(Protocol):
    def hit(self, bucket: str, window_start: int, weight: int) -> int: ...


class SharedCounters:
    """Fixed-window counters in a file that every process of the host maps.

    Layout: `slots` slots of 24 bytes (key hash, window start, total) in stripes of 16;
    a bucket lives in the stripe its hash selects. A counter whose window started more
    than `retention` before the current one is free for reuse.
    """

    def __init__(self, path: Path, slots: int = 1 << 16, retention: int = 0) -> None:
        if slots % SLOTS_PER_STRIPE:
            raise ValueError(f"slots must be a multiple of {SLOTS_PER_STRIPE}")
        self.path = Path(path)
        self.stripes = slots // SLOTS_PER_STRIPE
        self.retention = retention
        self.evictions = 0
        size = slots * _SLOT.size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # Growing a file with ftruncate is atomic and leaves zeros: concurrent starters agree.
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._thread_lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def hit(self, bucket: str, window_start: int, weight: int) -> int:
        """Add `weight` to the bucket's counter for the window; return the new total."""
        key_bytes = hashlib.blake2b(bucket.encode(), digest_size=8).digest()
        if key_bytes == _EMPTY_KEY:
            key_bytes = _ONE_KEY
        digest = int.from_bytes(key_bytes, "little")
        stripe = digest % self.stripes
        offset = stripe * _STRIPE.size
        end = offset + _STRIPE.size
        if self._pid != os.getpid():  # a forked child needs a mutex nobody holds
            self._thread_lock, self._pid = threading.Lock(), os.getpid()
        memory = self._map
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, _STRIPE.size, offset)
            try:
                # The bucket's slot, if it has one, found by a search in C; a match that
                # is not at the start of a slot is a coincidence inside other fields.
                found = memory.find(key_bytes, offset, end)
                while found >= 0 and (found - offset) % _SLOT.size:
                    found = memory.find(key_bytes, found + 1, end)
                if found >= 0:
                    _, start, total = _SLOT.unpack_from(memory, found)
                    if start == window_start:
                        total += weight
                    elif start < window_start:
                        total = weight
                    else:  # a request stamped in a window that is already over
                        return weight
                    _SLOT.pack_into(memory, found, digest, window_start, total)
                    return total
                values = _STRIPE.unpack_from(memory, offset)
                free = oldest = None
                for index in range(SLOTS_PER_STRIPE):
                    key, start = values[3 * index], values[3 * index + 1]
                    if free is None and (key == _EMPTY or start < window_start - self.retention):
                        free = index
                    if oldest is None or start < values[3 * oldest + 1]:
                        oldest = index
                if free is None:
                    free = oldest
                    self.evictions += 1
                _SLOT.pack_into(self._map, offset + free * _SLOT.size, digest, window_start, weight)
                return weight
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, _STRIPE.size, offset)


class StoreCounters:
    """The history store's counters: one budget for gateways on several hosts."""

    def __init__(self, store) -> None:
        self.store = store

    def hit(self, bucket: str, window_start: int, weight: int) -> int:
        return self.store.rate_limit_hit(bucket, window_start, weight)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    used: int  # the window's total weight, this request's included

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    """Charge request weights to API keys and client addresses in fixed windows."""

    def __init__(self, counters: Counters, window_seconds: int, key_limit: int, ip_limit: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.window_seconds = window_seconds
        self.limits = {"key": key_limit, "ip": ip_limit}
        self.clock = clock

    def charge(self, scope: str, identity: str, weight: int) -> Decision:
        """Add `weight` to `identity`'s window in `scope` ("key" or "ip") and decide."""
        now = self.clock()
        window = self.window_seconds
        window_start = int(now // window) * window
        reset_seconds = max(1, math.ceil(window_start + window - now))
        limit = self.limits[scope]
        try:
            total = self.counters.hit(f"{scope}:{identity}", window_start, weight)
        except Exception:
            log.exception("rate-limit backend failed; letting the request through")
            return Decision(True, limit, limit, reset_seconds, 0)
        return Decision(total <= limit, limit, max(0, limit - total), reset_seconds, total)


class ReplayGuard:
    """Accept each signature once: a second request carrying it is a replay."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def first_use(self, signature: str, timestamp_ms: int) -> bool:
        try:
            return self.counters.hit(f"sig:{signature}", timestamp_ms, 1) == 1
        except Exception:
            log.exception("replay-guard backend failed; accepting the signature")
            return True
