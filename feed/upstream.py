"""The feed's ZeroMQ sockets to one matcher shard, driven by the asyncio loop.

- SUB to the public PUB, subscribed to every `md.` topic, and SUB to the private PUB,
  subscribed to every `acct.` topic: subscriptions are made once at start, so a trader who
  authenticates later never waits for a subscription to reach the matcher (the slow
  joiner); the feed reads a private message's topic and decodes the body only when one of
  its clients is that trader.
- A DEALER on the command ROUTER for `markets` and `snapshot` requests; every request
  carries an id and its waiter is registered before it is sent, and a request that times
  out is never resent by this module (the caller asks again).

SUB sockets are read from the loop's reader callback on the socket's file descriptor.
That descriptor is edge-triggered (it signals that ZMQ_EVENTS may have changed, not that a
message is waiting), so the callback reads until ZMQ_EVENTS has no POLLIN; it reads at
most a budget of messages per call and schedules itself again for the rest, so a flood
of market data cannot starve the WebSocket side of the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import orjson
import zmq
import zmq.asyncio

from common import protocol
from common.config import ShardConfig
from common.matcher_client import MatcherError, MatcherTimeout

log = logging.getLogger("zmx.feed")

SUB_HWM = 500_000
READ_BUDGET = 2000
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_NOBLOCK = int(zmq.NOBLOCK)


class Subscriber:
    """A SUB socket whose messages are handed to `handle(topic, body)` from the event loop."""

    def __init__(self, context: zmq.Context, endpoint: str, topic: bytes,
                 handle: Callable[[bytes, bytes], None]) -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, SUB_HWM)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self.handle = handle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self.received = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.socket.getsockopt(zmq.FD), self._read)
        loop.call_soon(self._read)  # messages may be queued already: the descriptor signals edges only

    def _read(self) -> None:
        self._scheduled = False
        socket, handle = self.socket, self.handle
        budget = READ_BUDGET
        while socket.get(_EVENTS) & _POLLIN:
            if budget == 0:
                if not self._scheduled:
                    self._scheduled = True
                    self._loop.call_soon(self._read)
                return
            budget -= 1
            try:
                topic, body = socket.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue  # not [topic, body]: nothing the matcher sends
            self.received += 1
            try:
                handle(topic, body)
            except Exception:
                log.exception("failed to handle a matcher message", extra={"topic": topic[:64].decode(errors="replace")})

    def close(self) -> None:
        if self._loop is not None and not self.socket.closed:
            self._loop.remove_reader(self.socket.getsockopt(zmq.FD))
        self.socket.close()


class ShardLink:
    """The SUB sockets and the request DEALER of one shard."""

    def __init__(self, shard: ShardConfig, context: zmq.Context, on_public: Callable[[bytes, bytes], None],
                 on_private: Callable[[bytes, bytes], None], timeout: float) -> None:
        self.shard = shard
        self.timeout = timeout
        self.public = Subscriber(context, shard.public_endpoint, protocol.PUBLIC_TOPIC_PREFIX, on_public)
        self.private = Subscriber(context, shard.private_endpoint, protocol.PRIVATE_TOPIC_PREFIX, on_private)
        self._async_context = zmq.asyncio.Context.shadow(context.underlying)
        self.dealer = self._async_context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.SNDHWM, 10_000)
        self.dealer.setsockopt(zmq.RCVHWM, 10_000)
        self.dealer.connect(shard.command_endpoint)
        self._ids = itertools.count(1)
        self._waiters: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.public.start(loop)
        self.private.start(loop)
        self._reader = loop.create_task(self._read_replies())

    async def _read_replies(self) -> None:
        while True:
            frame = await self.dealer.recv()
            try:
                reply = orjson.loads(frame)
                waiter = self._waiters.pop(reply.get("id"), None)
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                log.warning("undecodable reply from the matcher", extra={"shard_id": self.shard.shard_id})
                continue
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)

    async def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send a request and return its `data`; raise MatcherError on a reject, MatcherTimeout after `timeout`."""
        request_id = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        try:
            await self.dealer.send(protocol.encode_request(request_id, op, **fields))
            reply = await asyncio.wait_for(waiter, self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise MatcherTimeout(f"shard {self.shard.shard_id} did not answer {op}") from None
        finally:
            self._waiters.pop(request_id, None)
        if not reply["ok"]:
            error = reply["error"]
            raise MatcherError(error["code"], error["message"], error.get("details"))
        return reply["data"]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.public.close()
        self.private.close()
        self.dealer.close()
