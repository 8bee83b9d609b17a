"""The gateway worker's connection to the matcher shards.

One DEALER per shard per worker process, owned by one I/O thread; request threads never
touch it (ZeroMQ sockets are not thread-safe). A request thread:

1. takes a fresh request id and registers its waiter under that id,
2. hands the frame to the I/O thread through its own inproc PUSH socket,
3. waits on the waiter for at most `timeout` seconds.

The I/O thread forwards frames to the shard's DEALER and hands each reply to the waiter
registered under its id; a reply nobody waits for any more (its request timed out) is
dropped and counted. Everything is created lazily in the process that first uses it, so
gunicorn workers get their own sockets after fork.

Delivery and the two failures:
- The DEALERs use ZMQ_IMMEDIATE: a frame is queued only on a completed connection. When
  the shard is not connected the send fails at once and the frame is held back for a
  short grace (`connect_grace`, for a connection being set up or re-established); if the
  shard is still not connected then, the request fails with MATCHER_UNAVAILABLE (503).
  The frame never left the process, so the command surely did not run. Once a shard has
  been unreachable for the whole grace, later requests fail at once, until the
  connection is back.
- A frame that was handed to a connection and got no reply within `timeout` fails with
  MATCHER_TIMEOUT (504): it may have executed. It is never resent.
ZMTP heartbeats drop a connection whose peer stops answering (a hung host), so a shard
that is gone for good turns into MATCHER_UNAVAILABLE instead of a timeout per request.
"""

from __future__ import annotations

import _thread
import itertools
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson
import zmq

from common.types import RejectCode
from gateway.envelope import ApiError

log = logging.getLogger("zmx.gateway.engine")

CONNECT_GRACE_SECONDS = 0.5
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
RECONNECT_IVL_MS = 100
SOCKET_HWM = 100_000
_ROUTE = struct.Struct("<HQ")  # shard id, request id
_STOP = b"stop"
_NOBLOCK = zmq.NOBLOCK


class EngineMetrics(Protocol):
    def matcher_round_trip(self, op: str, seconds: float, outcome: str) -> None: ...

    def matcher_unmatched_reply(self) -> None: ...


class _NoMetrics:
    def matcher_round_trip(self, op: str, seconds: float, outcome: str) -> None:
        pass

    def matcher_unmatched_reply(self) -> None:
        pass


# What the I/O thread puts in a waiter when the frame could not be delivered.
_UNDELIVERED = {"ok": False, "error": {"code": "MATCHER_UNAVAILABLE"}}


class _Waiter:
    """A one-shot slot: the I/O thread fills `reply` and releases `lock`."""

    __slots__ = ("lock", "reply")

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.lock.acquire()
        self.reply: dict[str, Any] | None = None


class EngineClient:
    """Send commands to the matcher shards and wait for their replies, from any thread."""

    def __init__(self, endpoints: Mapping[int, str], timeout: float = 5.0, *,
                 connect_grace: float = CONNECT_GRACE_SECONDS, metrics: EngineMetrics | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one matcher shard endpoint is needed")
        self.endpoints = dict(endpoints)
        self.shard_ids = tuple(sorted(self.endpoints))
        self.timeout = timeout
        self.connect_grace = min(connect_grace, timeout)
        self.metrics = metrics or _NoMetrics()
        self.unmatched_replies = 0
        self._pending: dict[int, _Waiter] = {}
        self._ids = itertools.count(1)
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        self._context: zmq.Context | None = None
        self._thread: threading.Thread | None = None
        self._inbox = ""
        self._local = threading.local()
        self._pushes: list[zmq.Socket] = []

    # ---------------------------------------------------------------- public API

    def call(self, shard_id: int, op: str, fields: Mapping[str, Any] | None = None,
             timeout: float | None = None) -> Any:
        """Send one command to a shard and return its reply data; raise ApiError on a reject."""
        result = self.call_many([(shard_id, op, fields)], timeout)[0]
        if isinstance(result, ApiError):
            raise result
        return result

    def call_many(self, calls: Iterable[tuple[int, str, Mapping[str, Any] | None]],
                  timeout: float | None = None) -> list[Any]:
        """Send several commands at once and return each reply's data, or the ApiError it got."""
        self._ensure_started()
        timeout = self.timeout if timeout is None else timeout
        push = self._push_socket()
        pending = self._pending
        started = time.perf_counter()
        sent = []
        for shard_id, op, fields in calls:
            if shard_id not in self.endpoints:
                raise ValueError(f"no matcher shard {shard_id} is configured")
            request_id = next(self._ids)
            message = {"id": request_id, "op": op}
            if fields:
                message.update(fields)
            waiter = pending[request_id] = _Waiter()  # registered before the frame leaves
            push.send_multipart((_ROUTE.pack(shard_id, request_id), orjson.dumps(message)))
            sent.append((request_id, op, waiter))
        deadline = started + timeout
        results = []
        for request_id, op, waiter in sent:
            reply = self._wait(request_id, waiter, deadline)
            elapsed = time.perf_counter() - started
            if reply is None:
                self.metrics.matcher_round_trip(op, elapsed, "timeout")
                results.append(ApiError(
                    RejectCode.MATCHER_TIMEOUT,
                    f"the matcher did not answer within {timeout:g} s; the request may have been executed:"
                    " query it before sending it again",
                    {"timeout_seconds": timeout},
                ))
            elif reply is _UNDELIVERED:
                self.metrics.matcher_round_trip(op, elapsed, "unavailable")
                results.append(ApiError(RejectCode.MATCHER_UNAVAILABLE,
                                        "the matcher is not reachable; the request was not sent"))
            elif reply["ok"]:
                self.metrics.matcher_round_trip(op, elapsed, "ok")
                results.append(reply["data"])
            else:
                self.metrics.matcher_round_trip(op, elapsed, "reject")
                results.append(ApiError.from_reply(reply["error"]))
        return results

    def connect(self) -> None:
        """Create this process's sockets and start connecting now rather than at the first call."""
        self._ensure_started()

    def close(self) -> None:
        """Stop the I/O thread and close every socket of this process."""
        if self._pid != os.getpid() or self._thread is None:
            return
        stop = self._context.socket(zmq.PUSH)
        stop.connect(self._inbox)
        stop.send_multipart((_STOP,))
        self._thread.join(5.0)
        stop.close(linger=0)
        for push in self._pushes:
            push.close(linger=0)
        self._pushes.clear()
        self._context.term()
        self._thread = None
        self._pid = None

    # ---------------------------------------------------------------- request threads

    def _wait(self, request_id: int, waiter: _Waiter, deadline: float) -> dict[str, Any] | None:
        """Return the reply, or None at the deadline; afterwards a late reply finds no waiter."""
        remaining = deadline - time.perf_counter()
        if remaining > 0 and waiter.lock.acquire(timeout=remaining):
            return waiter.reply
        if self._pending.pop(request_id, None) is not None:
            return None
        # The I/O thread took the waiter just now: its reply is being filled in.
        waiter.lock.acquire()
        return waiter.reply

    def _push_socket(self) -> zmq.Socket:
        local = self._local
        push = getattr(local, "push", None)
        if push is None or local.pid != self._pid:
            push = self._context.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.SNDHWM, SOCKET_HWM)
            push.connect(self._inbox)
            local.push, local.pid = push, self._pid
            with self._start_lock:
                self._pushes.append(push)
        return push

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A fresh start, or the first use in a forked child: whatever the parent had is
            # not ours to use or close.
            self._pending = {}
            self._pushes = []
            self._local = threading.local()
            self._context = zmq.Context(io_threads=1)
            self._inbox = f"inproc://zmx-engine-{id(self)}"
            inbox = self._context.socket(zmq.PULL)
            inbox.setsockopt(zmq.LINGER, 0)
            inbox.setsockopt(zmq.RCVHWM, SOCKET_HWM)
            inbox.bind(self._inbox)
            dealers = {shard_id: self._dealer(endpoint) for shard_id, endpoint in self.endpoints.items()}
            self._thread = threading.Thread(target=self._run, args=(inbox, dealers), name="zmx-engine-io",
                                            daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _dealer(self, endpoint: str) -> zmq.Socket:
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        dealer.setsockopt(zmq.RCVHWM, SOCKET_HWM)
        dealer.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        dealer.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        dealer.connect(endpoint)
        return dealer

    # ---------------------------------------------------------------- the I/O thread

    def _run(self, inbox: zmq.Socket, dealers: dict[int, zmq.Socket]) -> None:
        try:
            self._loop(inbox, dealers)
        except Exception:
            # Nothing else will answer the waiters: they time out, which is the safe answer.
            log.exception("engine I/O thread failed")
        finally:
            inbox.close(linger=0)
            for dealer in dealers.values():
                dealer.close(linger=0)

    def _loop(self, inbox: zmq.Socket, dealers: dict[int, zmq.Socket]) -> None:
        poller = zmq.Poller()
        poller.register(inbox, zmq.POLLIN)
        shard_of = {}
        for shard_id, dealer in dealers.items():
            poller.register(dealer, zmq.POLLIN)
            shard_of[dealer] = shard_id
        # Frames waiting for their shard's connection: shard -> deque of (deadline, id, frame).
        held: dict[int, deque[tuple[float, int, bytes]]] = {}
        # Shards that stayed unreachable for a whole grace: their requests fail at once, and
        # POLLOUT (a completed connection) takes them off the list.
        down: set[int] = set()
        pending = self._pending
        grace = self.connect_grace
        while True:
            if held:
                wait_ms = max(1, int((min(queue[0][0] for queue in held.values()) - time.monotonic()) * 1000) + 1)
            else:
                wait_ms = None
            for socket, events in poller.poll(wait_ms):
                if socket is inbox:
                    while True:
                        try:
                            frames = inbox.recv_multipart(_NOBLOCK)
                        except zmq.Again:
                            break
                        if len(frames) == 1:
                            return  # _STOP
                        shard_id, request_id = _ROUTE.unpack(frames[0])
                        queue = held.get(shard_id)
                        if queue is not None:
                            queue.append((time.monotonic() + grace, request_id, frames[1]))
                            continue
                        dealer = dealers[shard_id]
                        try:
                            dealer.send(frames[1], _NOBLOCK)
                        except zmq.Again:
                            if shard_id in down:
                                self._deliver(pending, request_id, _UNDELIVERED)
                            else:
                                held[shard_id] = deque([(time.monotonic() + grace, request_id, frames[1])])
                                poller.register(dealer, zmq.POLLIN | zmq.POLLOUT)
                    continue
                if events & zmq.POLLIN:
                    self._receive_replies(socket, pending)
                if events & zmq.POLLOUT:
                    shard_id = shard_of[socket]
                    down.discard(shard_id)
                    queue = held.get(shard_id)
                    while queue:
                        try:
                            socket.send(queue[0][2], _NOBLOCK)
                        except zmq.Again:
                            break
                        queue.popleft()
                    if not queue:
                        held.pop(shard_id, None)
                        poller.register(socket, zmq.POLLIN)
            if held:
                now = time.monotonic()
                for shard_id in list(held):
                    queue = held[shard_id]
                    while queue and queue[0][0] <= now:
                        _, request_id, _ = queue.popleft()
                        self._deliver(pending, request_id, _UNDELIVERED)
                        down.add(shard_id)
                    if not queue:
                        del held[shard_id]
                        # Still watched for POLLOUT while down, to notice the connection.
                        poller.register(dealers[shard_id], zmq.POLLIN | (zmq.POLLOUT if shard_id in down else 0))

    def _receive_replies(self, dealer: zmq.Socket, pending: dict[int, _Waiter]) -> None:
        while True:
            try:
                frame = dealer.recv(_NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = orjson.loads(frame)
                request_id = reply.get("id")
            except (orjson.JSONDecodeError, AttributeError):
                log.error("undecodable reply from the matcher", extra={"frame": frame[:200]})
                continue
            if not self._deliver(pending, request_id, reply):
                self.unmatched_replies += 1
                self.metrics.matcher_unmatched_reply()

    @staticmethod
    def _deliver(pending: dict[int, _Waiter], request_id: Any, reply: dict[str, Any]) -> bool:
        waiter = pending.pop(request_id, None) if type(request_id) is int else None
        if waiter is None:
            return False
        waiter.reply = reply
        waiter.lock.release()
        return True
