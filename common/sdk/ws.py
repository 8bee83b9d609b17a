"""An asyncio client of the WebSocket feed (docs/websocket-api.md) that keeps local order books.

    async with FeedClient("ws://127.0.0.1:8001/ws") as feed:
        await feed.subscribe("orderbook.BTC-USDT", "trades.BTC-USDT")
        async for message in feed:
            book = feed.books["orderbook.BTC-USDT"]

- Every `orderbook.*` channel gets an `OrderBook` in `books`, loaded from the channel's
  snapshot and moved on by its diffs. A diff whose `first_seq` is not the book's `seq` + 1
  is a gap: the diff is not applied and not delivered, the book is marked unsynced, and the
  client resubscribes to the channel, which brings a fresh snapshot (the feed never skips a
  message on a healthy connection, so this guards against bugs, not routine).
- Messages come out of `next_message()` / `async for` in the order they arrived, each data
  message after its book was updated. The client adds its own: `{"op": "resync",
  "channel"}` (a gap was found), `{"op": "disconnected", "code", "reason"}` and
  `{"op": "reconnected"}`.
- With `reconnect=True` (the default) a dropped connection is opened again with growing
  delays; the client authenticates again if it had, subscribes to every channel again,
  and each book is unsynced until its new snapshot. Account events sent while it was away
  are not replayed: after `reconnected`, fetch orders and balances over REST.
- Refusals of the client's own requests raise the `common.errors` class for their code;
  the feed's unsolicited errors (`EVENTS_LOST`, `SLOW_CONSUMER`, `TOO_MANY_CONNECTIONS`, a
  revoked key's `INVALID_API_KEY`) are delivered as messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import deque
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from common.errors import ConnectionFailed, OutcomeUnknown, ZmxError, error_from_wire
from common.sdk.book import GAP, OrderBook
from feed.protocol import ErrorCode

BOOK_CHANNEL_PREFIX = "orderbook."
_UNSOLICITED = frozenset({ErrorCode.EVENTS_LOST.value, ErrorCode.SLOW_CONSUMER.value,
                          ErrorCode.TOO_MANY_CONNECTIONS.value})
MAX_FRAME_BYTES = 64 << 20  # a deep book's snapshot is one frame


def _book_pair(channel: str) -> str:
    return channel[len(BOOK_CHANNEL_PREFIX):].split(".")[0]


class FeedClient:
    """One WebSocket connection to the feed (reopened when it drops), with order books kept per channel."""

    def __init__(self, url: str = "ws://127.0.0.1:8001/ws", api_key: str | None = None,
                 api_secret: str | None = None, *, reconnect: bool = True, reconnect_delay: float = 0.2,
                 max_reconnect_delay: float = 10.0, timeout: float = 10.0) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret.encode() if api_secret is not None else None
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.timeout = timeout
        self.books: dict[str, OrderBook] = {}
        self.channels: list[str] = []  # what the feed says this connection holds
        self.trader_id: int | None = None
        self.resyncs = 0
        self._authenticate_again = False
        self._connection: ClientConnection | None = None
        self._messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiters: deque[tuple[str, asyncio.Future]] = deque()
        self._resyncing: set[str] = set()
        self._runner: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # ------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Open the connection (and authenticate, when given a key); raise ConnectionFailed."""
        await self._open()
        self._runner = asyncio.get_running_loop().create_task(self._run())
        if self.api_key is not None:
            await self.authenticate()

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._connection is not None:
            await self._connection.close()
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    async def __aenter__(self) -> "FeedClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open(self) -> None:
        try:
            self._connection = await connect(self.url, open_timeout=self.timeout, compression=None,
                                             max_size=MAX_FRAME_BYTES)
        except (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as error:
            raise ConnectionFailed("CONNECTION_FAILED", f"cannot connect to {self.url}: {error}") from None

    async def _run(self) -> None:
        """Read the connection until it closes; then reopen it and restore the subscriptions."""
        delay = self.reconnect_delay
        while True:
            await self._read(self._connection)
            self._fail_waiters()
            for book in self.books.values():
                book.synced = False
            if self._closing:
                break
            self._deliver({"op": "disconnected", "code": self._connection.close_code,
                           "reason": self._connection.close_reason})
            if not self.reconnect:
                break
            while not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                try:
                    await self._open()
                except ConnectionFailed:
                    continue
                break
            if self._closing:
                break
            delay = self.reconnect_delay
            self._spawn(self._restore())
        self._messages.put_nowait(None)

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for frame in connection:
                self._handle(orjson.loads(frame))
        except ConnectionClosed:
            pass  # closed with an error: close_code says which

    async def _restore(self) -> None:
        """After a reconnect: authenticate and subscribe again, then say so."""
        channels, self.channels = self.channels, []
        self._resyncing.clear()
        try:
            if self._authenticate_again:
                await self.authenticate()
            if channels:
                await self.subscribe(*channels)
        except (ConnectionFailed, OutcomeUnknown):
            return  # dropped again: the next reconnect restores them
        except ZmxError as error:  # refused now (a revoked key, a market gone): say so, as the feed would
            self._deliver({"op": "error", "code": error.code, "message": error.message})
            return
        finally:
            if not self.channels:
                self.channels = channels  # keep what to restore next time
        self._deliver({"op": "reconnected"})

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ requests

    async def _request(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        if self._connection is None:
            raise ConnectionFailed("CONNECTION_FAILED", "not connected: call connect() first")
        waiter = asyncio.get_running_loop().create_future()
        entry = (reply, waiter)
        self._waiters.append(entry)  # before sending: the answer may come before send() returns
        try:
            await self._connection.send(orjson.dumps(message).decode())
        except ConnectionClosed:
            if entry in self._waiters:
                self._waiters.remove(entry)  # no answer will come for it
            raise ConnectionFailed("CONNECTION_FAILED", f"the connection is closed: {message['op']} was not sent") \
                from None
        try:
            answer = await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            raise OutcomeUnknown("TIMEOUT", f"no answer to {message['op']} within {self.timeout} s") from None
        if answer.get("op") == "error":
            raise error_from_wire(answer)
        return answer

    async def subscribe(self, *channels: str) -> list[str]:
        """Subscribe; return every channel the connection holds. Book channels get a book in `books`."""
        new_books = [channel for channel in channels
                     if channel.startswith(BOOK_CHANNEL_PREFIX) and channel not in self.books]
        for channel in new_books:
            self.books[channel] = OrderBook(_book_pair(channel))  # ready before its snapshot arrives
        try:
            answer = await self._request({"op": "subscribe", "channels": list(channels)}, "subscribed")
        except ZmxError:
            for channel in new_books:
                self.books.pop(channel, None)
            raise
        self.channels = answer["channels"]
        return self.channels

    async def unsubscribe(self, *channels: str) -> list[str]:
        answer = await self._request({"op": "unsubscribe", "channels": list(channels)}, "subscribed")
        self.channels = answer["channels"]
        for channel in channels:
            self.books.pop(channel, None)
        return self.channels

    async def authenticate(self) -> int:
        """Authenticate with the client's API key (private channels need it); return the trader id."""
        if self.api_key is None or self.api_secret is None:
            raise ValueError("authenticate needs an API key and secret (FeedClient(url, api_key, api_secret))")
        timestamp = int(time.time() * 1000)
        signature = hmac.new(self.api_secret, b"%dGET/ws" % timestamp, hashlib.sha256).hexdigest()
        answer = await self._request({"op": "authenticate", "api_key": self.api_key, "timestamp": timestamp,
                                      "signature": signature}, "authenticated")
        self._authenticate_again = True
        self.trader_id = answer["trader_id"]
        return self.trader_id

    async def ping(self) -> None:
        await self._request({"op": "ping"}, "pong")

    # ------------------------------------------------------------ messages

    async def next_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Return the next message; None after `timeout` seconds, or once the client is closed for good."""
        try:
            return await asyncio.wait_for(self._messages.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def __aiter__(self) -> "FeedClient":
        return self

    async def __anext__(self) -> dict[str, Any]:
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # every later call ends too
            raise StopAsyncIteration
        return message

    def _deliver(self, message: dict[str, Any]) -> None:
        self._messages.put_nowait(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if channel is None:
            self._handle_op(message)
            return
        book = self.books.get(channel)
        if book is not None:
            if message["type"] == "snapshot":
                book.load(message["data"])
                self._resyncing.discard(channel)
            else:
                data = message["data"]
                if book.apply(message["first_seq"], message["seq"], data["bids"], data["asks"]) == GAP:
                    if channel not in self._resyncing:
                        self._resyncing.add(channel)
                        self.resyncs += 1
                        self._deliver({"op": "resync", "channel": channel})
                        self._spawn(self._resync(channel))
                    return
        self._deliver(message)

    def _handle_op(self, message: dict[str, Any]) -> None:
        if message.get("op") == "error":
            code = message.get("code")
            expecting = self._waiters[0][0] if self._waiters else None
            if code in _UNSOLICITED or expecting is None or (
                    code == ErrorCode.INVALID_API_KEY.value and expecting != "authenticated"):
                self._deliver(message)
                return
        elif not self._waiters or message.get("op") != self._waiters[0][0]:
            self._deliver(message)
            return
        _, waiter = self._waiters.popleft()
        if not waiter.done():
            waiter.set_result(message)

    async def _resync(self, channel: str) -> None:
        """Get a fresh snapshot of a book channel: unsubscribe and subscribe again."""
        try:
            await self._request({"op": "unsubscribe", "channels": [channel]}, "subscribed")
            answer = await self._request({"op": "subscribe", "channels": [channel]}, "subscribed")
            self.channels = answer["channels"]
        except (ConnectionFailed, OutcomeUnknown):
            pass  # the connection dropped: the reconnect subscribes again

    def _fail_waiters(self) -> None:
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(OutcomeUnknown("DISCONNECTED", "the connection dropped before the answer"))
