"""A small synchronous DEALER client for the matcher's ROUTER sockets.

Requests carry an id; the reply with that id is returned, replies to other ids are kept
for whoever asks for them, and unsolicited account events (bot sockets) are queued in
`events`. A request that times out is never resent: the caller decides.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

import zmq

from common import protocol


class MatcherError(Exception):
    """The matcher refused a request; `code` is the RejectCode name."""

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class MatcherTimeout(Exception):
    """No reply within the timeout; the request may or may not have been executed."""


class MatcherClient:
    """One DEALER connected to one matcher ROUTER (plain, or CURVE for bots)."""

    def __init__(
        self,
        endpoint: str,
        timeout: float = 5.0,
        context: zmq.Context | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        """Connect; `curve` is (server_public, client_public, client_secret), Z85 bytes."""
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 100_000)
        self.socket.setsockopt(zmq.RCVHWM, 100_000)
        if curve is not None:
            server_public, client_public, client_secret = curve
            self.socket.setsockopt(zmq.CURVE_SERVERKEY, server_public)
            self.socket.setsockopt(zmq.CURVE_PUBLICKEY, client_public)
            self.socket.setsockopt(zmq.CURVE_SECRETKEY, client_secret)
        self.socket.connect(endpoint)
        self.timeout = timeout
        self.events: deque[dict[str, Any]] = deque()
        self._pending: dict[Any, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> "MatcherClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; return its id."""
        request_id = next(self._ids)
        self.socket.send(protocol.encode_request(request_id, op, **fields))
        return request_id

    def send_raw(self, *frames: bytes) -> None:
        """Send arbitrary frames (for protocol tests)."""
        self.socket.send_multipart(list(frames))

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """Return the next frame from the matcher, decoded; raise MatcherTimeout."""
        wait_ms = int((self.timeout if timeout is None else timeout) * 1000)
        if not self.socket.poll(wait_ms):
            raise MatcherTimeout(f"no message within {wait_ms} ms")
        return protocol.decode_reply(self.socket.recv())

    def wait(self, request_id: int, timeout: float | None = None) -> dict[str, Any]:
        """Return the reply envelope for `request_id`, queueing anything else that arrives."""
        if request_id in self._pending:
            return self._pending.pop(request_id)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MatcherTimeout(f"no reply to request {request_id}")
            message = self.receive(remaining)
            if "id" not in message:
                self.events.append(message)
            elif message["id"] == request_id:
                return message
            else:
                self._pending[message["id"]] = message

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send a request and return its `data`; raise MatcherError on a reject."""
        reply = self.wait(self.send(op, **fields), timeout)
        if not reply["ok"]:
            error = reply["error"]
            raise MatcherError(error["code"], error["message"], error.get("details"))
        return reply["data"]
