"""A small synchronous DEALER client for the matcher's ROUTER sockets.

Requests carry an id; the reply with that id is returned, replies to other ids are kept
for whoever asks for them, and unsolicited account events (bot sockets) are queued in
`events`. A request that times out is never resent: the caller decides. Rejects raise the
`common.errors` class for their code (all are `MatcherError`, which is `ZmxError`).

Other sockets can be served while the client waits (`watch`): the SDK's bot client reads
its socket monitor and its market-data SUB that way, so neither falls behind during a
request.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from common import protocol
from common.errors import OutcomeUnknown, ZmxError, error_from_wire

_MONITOR_NUMBERS = itertools.count(1)


def watch_socket(socket: zmq.Socket, events: int) -> zmq.Socket:
    """Return a PAIR socket receiving `socket`'s monitor events (a mask of zmq.EVENT_*).

    Unlike pyzmq's get_monitor_socket, the monitor pipe has no high-water mark: libzmq's
    I/O thread blocks on a full one, which would stall every socket of the context while
    nobody reads the events (a bot that does not poll while its matcher is away). The
    address is unique too: pyzmq's is named after the socket's descriptor, which a socket
    made right after one is closed may reuse before libzmq has unbound it.
    """
    address = f"inproc://zmx-monitor-{next(_MONITOR_NUMBERS)}"
    socket.monitor(address, events)
    monitor = socket.context.socket(zmq.PAIR)
    monitor.setsockopt(zmq.LINGER, 0)
    monitor.setsockopt(zmq.RCVHWM, 0)
    monitor.connect(address)
    return monitor


def dealer(context: zmq.Context, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None,
           immediate: bool = False, monitor_events: int = 0) -> tuple[zmq.Socket, zmq.Socket | None]:
    """Return a DEALER connected to a matcher ROUTER, and its monitor (None without `monitor_events`).

    `curve` is (server_public, client_public, client_secret), Z85 bytes. `immediate` queues
    requests only on a completed connection (after the CURVE handshake), so nothing sent
    while the matcher is away is delivered late to its next incarnation. The monitor
    (`watch_socket`) is opened before connecting, so that no event is missed. Works for
    zmq.asyncio contexts too.
    """
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    if immediate:
        socket.setsockopt(zmq.IMMEDIATE, 1)
    if curve is not None:
        server_public, client_public, client_secret = curve
        socket.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, client_public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, client_secret)
    monitor = watch_socket(socket, monitor_events) if monitor_events else None
    socket.connect(endpoint)
    return socket, monitor


# The matcher refused a request: the class of every reject (its subclasses say which kind).
MatcherError = ZmxError


class MatcherTimeout(OutcomeUnknown):
    """No reply within the timeout; the request may or may not have been executed."""

    def __init__(self, message: str) -> None:
        super().__init__("TIMEOUT", message)


class MatcherClient:
    """One DEALER connected to one matcher ROUTER (plain, or CURVE for bots)."""

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        context: zmq.Context | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
        immediate: bool = False,
        monitor_events: int = 0,
    ) -> None:
        """Connect (see `dealer` for `curve`, `immediate` and `monitor_events`)."""
        self.context = context or zmq.Context.instance()
        self.socket, self.monitor = dealer(self.context, endpoint, curve, immediate, monitor_events)
        self.endpoint = endpoint
        self.timeout = timeout
        self.events: deque[dict[str, Any]] = deque()
        self.late_replies = 0  # replies that came after their request was given up
        self._pending: dict[Any, dict[str, Any]] = {}
        self._abandoned: set[Any] = set()
        self._ids = itertools.count(1)
        self._watched: list[tuple[zmq.Socket, Callable[[], bool]]] = []
        self._poller: zmq.Poller | None = None

    def close(self) -> None:
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close()
        self.socket.close()

    def __enter__(self) -> "MatcherClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def watch(self, socket: zmq.Socket, handler: Callable[[], bool]) -> None:
        """Call `handler()` whenever `socket` is readable while this client waits (see `serve`)."""
        if self._poller is None:
            self._poller = zmq.Poller()
            self._poller.register(self.socket, zmq.POLLIN)
        self._poller.register(socket, zmq.POLLIN)
        self._watched.append((socket, handler))

    def send(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; return its id."""
        request_id = next(self._ids)
        self.socket.send(protocol.encode_request(request_id, op, **fields))
        return request_id

    def send_raw(self, *frames: bytes) -> None:
        """Send arbitrary frames (for protocol tests)."""
        self.socket.send_multipart(list(frames))

    def serve(self, timeout: float) -> dict[str, Any] | None:
        """Wait up to `timeout` s for one frame from the matcher, serving the watched sockets.

        Return the decoded frame, or None when the time is up or a watched socket's handler
        returned True (it has news for the caller).
        """
        if self._poller is None:
            if not self.socket.poll(max(0, int(timeout * 1000))):
                return None
            return protocol.decode_reply(self.socket.recv())
        deadline = time.monotonic() + timeout
        while True:
            ready = dict(self._poller.poll(max(0, int((deadline - time.monotonic()) * 1000))))
            if self.socket in ready:
                return protocol.decode_reply(self.socket.recv())
            news = False
            for socket, handler in self._watched:
                if socket in ready and handler():
                    news = True
            if news or time.monotonic() >= deadline:
                return None

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next frame from the matcher, decoded; raise MatcherTimeout."""
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            message = self.serve(max(0.0, deadline - time.monotonic()))
            if message is not None:
                return message
            if time.monotonic() >= deadline:
                raise MatcherTimeout(f"no message within {int(wait * 1000)} ms")

    def wait(self, request_id: int, timeout: float | None = None) -> dict[str, Any]:
        """Return the reply envelope for `request_id`, filing anything else that arrives (`take`).

        A request given up (timeout, or an exception from a watched socket's handler) is
        abandoned: its reply, should it come, is counted in `late_replies` and dropped.
        """
        if request_id in self._pending:
            return self._pending.pop(request_id)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MatcherTimeout(f"no reply to request {request_id}")
                message = self.serve(remaining)
                if message is None:
                    continue
                if message.get("id") == request_id and "id" in message:
                    return message
                self.take(message)
        except BaseException:
            self._abandoned.add(request_id)
            raise

    def take(self, message: dict[str, Any]) -> None:
        """File a frame that is not the reply being waited for: an event, a late reply, or another's reply."""
        if "id" not in message:
            self.events.append(message)
        elif message["id"] in self._abandoned:
            self._abandoned.discard(message["id"])
            self.late_replies += 1
        else:
            self._pending[message["id"]] = message

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send a request and return its `data`; raise the reject's ZmxError subclass."""
        reply = self.wait(self.send(op, **fields), timeout)
        if not reply["ok"]:
            raise error_from_wire(reply["error"])
        return reply["data"]
