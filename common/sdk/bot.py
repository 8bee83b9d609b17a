"""Co-located bots over raw ZeroMQ: a synchronous and an asyncio client of the matcher's bot socket.

A bot holds a CURVE key pair whose public key an admin registered to one trader account
(`zmx admin register-bot-key`, which writes the key file `BotKey.load` reads). It connects
a DEALER to the bot ROUTER of the shard that owns its market (`bot_endpoints`), and may
follow order books from the shard's public PUB.

Both clients have the order methods of `common.sdk.orders` and add:
- `connect()`: wait for the CURVE handshake and ping. A key the matcher does not know is
  refused during the handshake: `AuthenticationError` (INVALID_API_KEY); libzmq does not
  try a refused key again, `reconnect()` does.
- events: the matcher sends a bot its account events unsolicited (from its first request
  on each connection); the clients add their own `{"type": "connected", "reconnect": bool}`,
  `{"type": "disconnected"}`, `{"type": "refused"}` and, when the account's seq skips
  numbers, `{"type": "events_lost", "first_seq", "last_seq"}`. After a reconnect or lost
  events, call `reconcile` (docs/zmq-protocol.md, "Reconnecting").
- `follow_book(pair)`: an `OrderBook` kept by the clone pattern (`BookSync`), resynced
  by itself after a gap.

The DEALER queues requests only on a completed connection (ZMQ_IMMEDIATE), so a request
either leaves now or fails with `ConnectionFailed` (not sent); one that left and gets no
reply, because of the timeout or because the connection dropped, raises `OutcomeUnknown`
(it may have run). Nothing is ever resent by the client.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from common import protocol
from common.config import Config, ConfigError
from common.errors import AuthenticationError, ConnectionFailed, OutcomeUnknown, ZmxError, error_from_wire
from common.files import write_private_file
from common.matcher_client import MatcherClient, dealer
from common.sdk.book import BookSync, OrderBook
from common.sdk.orders import AsyncOrderMethods, OrderMethods

Z85_KEY_LENGTH = 40
SUB_HWM = 100_000
_POLLIN = zmq.POLLIN
_MARKET_TOPIC_OFFSET = len(protocol.PUBLIC_TOPIC_PREFIX)
# The connection's life, not every connect attempt: a matcher that is away makes libzmq
# retry ten times a second, and nobody needs to hear about each try.
MONITORED_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED)


class BotKeyError(ValueError):
    """A bot key file that cannot be used; the message says why."""


@dataclass(frozen=True)
class BotKey:
    """A bot's CURVE key pair (Z85 text) and the trader account it is registered to."""

    account_id: int
    public_key: str
    secret_key: str

    @classmethod
    def generate(cls, account_id: int) -> "BotKey":
        public, secret = zmq.curve_keypair()
        return cls(account_id, public.decode(), secret.decode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "BotKey":
        """Read a key file `{"account_id", "public_key", "secret_key"}`; raise BotKeyError."""
        try:
            data = orjson.loads(Path(path).read_bytes())
        except OSError as error:
            raise BotKeyError(f"{path}: cannot read the bot key file: {error.strerror or error}") from None
        except orjson.JSONDecodeError:
            raise BotKeyError(f"{path}: not a JSON bot key file") from None
        if not isinstance(data, dict) or set(data) != {"account_id", "public_key", "secret_key"}:
            raise BotKeyError(f"{path}: expected exactly account_id, public_key and secret_key")
        account_id, public, secret = data["account_id"], data["public_key"], data["secret_key"]
        if type(account_id) is not int or account_id <= 0:
            raise BotKeyError(f"{path}: account_id must be a positive integer")
        for name, value in (("public_key", public), ("secret_key", secret)):
            if type(value) is not str or len(value) != Z85_KEY_LENGTH:
                raise BotKeyError(f"{path}: {name} must be a {Z85_KEY_LENGTH}-character Z85 CURVE key")
        try:
            derived = zmq.curve_public(secret.encode()).decode()
        except (zmq.ZMQError, ValueError):
            raise BotKeyError(f"{path}: secret_key is not a Z85 CURVE key") from None
        if derived != public:
            raise BotKeyError(f"{path}: public_key does not belong to secret_key")
        return cls(account_id, public, secret)

    def to_json(self) -> bytes:
        """The key file's content: `{"account_id", "public_key", "secret_key"}`."""
        return orjson.dumps({"account_id": self.account_id, "public_key": self.public_key,
                             "secret_key": self.secret_key})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file atomically, readable by its owner only (it holds the secret)."""
        write_private_file(Path(path), self.to_json())

    @property
    def curve(self) -> tuple[bytes, bytes]:
        return self.public_key.encode(), self.secret_key.encode()


@dataclass(frozen=True)
class BotEndpoints:
    """Where the bot of one market connects: its shard's bot ROUTER, public PUB and server key."""

    shard_id: int
    bot_endpoint: str
    public_endpoint: str
    server_public_key: bytes


def server_public_key_file(config: Config, shard_id: int) -> Path:
    """Return the file the shard's matcher writes its CURVE public key to (beside the secret)."""
    return config.curve_secret_key_file(shard_id).with_suffix(".pub")


def bot_endpoints(config: Config, pair: str) -> BotEndpoints:
    """Return the endpoints and server key of the shard that owns `pair`; raise ConfigError."""
    shard = config.shard_for_market(pair)
    path = server_public_key_file(config, shard.shard_id)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: start matcher shard {shard.shard_id} once first "
                          "(it writes its CURVE public key there)") from None
    if len(key) != Z85_KEY_LENGTH:
        raise ConfigError(f"{path}: expected a {Z85_KEY_LENGTH}-character Z85 CURVE public key")
    return BotEndpoints(shard.shard_id, shard.bot_endpoint, shard.public_endpoint, key)


# ---------------------------------------------------------------- connection and account state (no I/O)


class ConnectionState:
    """Follow a DEALER's monitor events; return the client events they mean."""

    __slots__ = ("connected", "connections", "refusal")

    def __init__(self) -> None:
        self.connected = False
        self.connections = 0  # handshakes completed
        self.refusal: str | None = None

    def reset(self) -> None:
        """Forget the current connection (a new socket is being made); keep the count."""
        self.connected = False
        self.refusal = None

    def on_event(self, event: int, value: int) -> dict[str, Any] | None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.connected = True
            self.connections += 1
            self.refusal = None
            return {"type": "connected", "reconnect": self.connections > 1}
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refusal = (f"the matcher refused this bot key (ZAP status {value}): it is not registered to a "
                            "trader (zmx admin register-bot-key) or it was revoked")
            return {"type": "refused", "status": value}
        if event == zmq.EVENT_DISCONNECTED and self.connected:
            self.connected = False
            return {"type": "disconnected"}
        return None

    def refused_error(self) -> AuthenticationError:
        return AuthenticationError("INVALID_API_KEY", self.refusal or "the matcher refused this bot key")


class AccountSeq:
    """Check that account events arrive with gapless seqs; say which were lost."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq: int | None = None

    def check(self, event: dict[str, Any]) -> dict[str, Any] | None:
        seq = event.get("seq")
        if type(seq) is not int:
            return None
        previous, self.seq = self.seq, seq
        if previous is not None and seq > previous + 1:
            return {"type": "events_lost", "first_seq": previous + 1, "last_seq": seq - 1}
        return None


def _disconnected(op: str) -> OutcomeUnknown:
    return OutcomeUnknown("DISCONNECTED", f"the connection to the matcher dropped with {op} in flight: it may or may "
                          "not have run; reconcile by client_order_id")


def _not_sent(endpoint: str, op: str) -> ConnectionFailed:
    return ConnectionFailed("CONNECTION_FAILED", f"not connected to {endpoint}: {op} was not sent")


def _no_handshake(endpoint: str, timeout: float) -> ConnectionFailed:
    return ConnectionFailed("CONNECTION_FAILED", f"no CURVE handshake with {endpoint} within {timeout} s: is the "
                            "matcher running, and is the server key the one in its curve.pub?")


def _market_socket(context: zmq.Context, endpoint: str) -> zmq.Socket:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, SUB_HWM)
    sub.connect(endpoint)
    return sub


class _BotClientBase:
    """What both bot clients hold: where they connect, with which key, and their books."""

    def __init__(self, endpoint: str, server_public_key: bytes | str, key: BotKey, public_endpoint: str | None,
                 timeout: float, connect_timeout: float) -> None:
        self.endpoint = endpoint
        self.server_public_key = server_public_key.encode() if isinstance(server_public_key, str) else server_public_key
        self.key = key
        self.public_endpoint = public_endpoint
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.books: dict[str, BookSync] = {}
        self.state = ConnectionState()
        self._account = AccountSeq()

    @classmethod
    def for_pair(cls, config: Config, key: BotKey, pair: str, **options: Any):
        """Return a client of the shard that owns `pair`, with order books from its PUB."""
        endpoints = bot_endpoints(config, pair)
        return cls(endpoints.bot_endpoint, endpoints.server_public_key, key,
                   public_endpoint=endpoints.public_endpoint, **options)

    @property
    def connected(self) -> bool:
        return self.state.connected

    def last_trade(self, pair: str) -> dict[str, Any] | None:
        """Return the newest trade seen on a followed market's stream."""
        sync = self.books.get(pair)
        return None if sync is None else sync.last_trade

    def _add_book(self, pair: str) -> bool:
        """Start a BookSync for `pair`; return False if it is followed already (True: subscribe to it)."""
        if self.public_endpoint is None:
            raise ValueError("follow_book needs the public PUB endpoint (public_endpoint=...)")
        if pair in self.books:
            return False
        self.books[pair] = BookSync(pair)
        return True


# ---------------------------------------------------------------- synchronous client


class BotClient(_BotClientBase, OrderMethods):
    """A bot's DEALER on the matcher's CURVE socket, and optionally a SUB for order books."""

    def __init__(self, endpoint: str, server_public_key: bytes | str, key: BotKey, *,
                 public_endpoint: str | None = None, timeout: float = 5.0, connect_timeout: float = 10.0,
                 context: zmq.Context | None = None) -> None:
        super().__init__(endpoint, server_public_key, key, public_endpoint, timeout, connect_timeout)
        self.context = context or zmq.Context.instance()
        self._late_replies = 0  # counted by the connections closed so far
        self._sub: zmq.Socket | None = None
        self._in_request: str | None = None
        self._open()

    def _open(self) -> None:
        self.state.reset()
        self.transport = MatcherClient(self.endpoint, self.timeout, self.context,
                                       curve=(self.server_public_key, *self.key.curve), immediate=True,
                                       monitor_events=MONITORED_EVENTS)
        self.transport.socket.setsockopt(zmq.SNDTIMEO, 0)  # not connected: fail now, never queue
        self.transport.watch(self.transport.monitor, self._on_monitor)
        if self._sub is not None:
            self.transport.watch(self._sub, self._on_market_data)

    def reconnect(self) -> None:
        """Drop the connection and make a new one (after a refusal, libzmq does not try again)."""
        self._late_replies += self.transport.late_replies
        self.transport.close()
        self._open()

    def close(self) -> None:
        self.transport.close()
        if self._sub is not None:
            self._sub.close()

    def __enter__(self) -> "BotClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def late_replies(self) -> int:
        """Replies that came after their request had been given up (timeout, dropped connection)."""
        return self._late_replies + self.transport.late_replies

    # ------------------------------------------------------------ requests

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the handshake, then ping (which also starts the account events); return the ping."""
        self._wait_connected(self.connect_timeout if timeout is None else timeout)
        return self.request("ping")

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request and return its `data`; raise the ZmxError subclass of the outcome."""
        if not self.state.connected:
            self._wait_connected(self.connect_timeout)
        self._in_request = op
        try:
            return self.transport.request(op, timeout, **fields)
        except zmq.Again:
            raise _not_sent(self.endpoint, op) from None
        finally:
            self._in_request = None

    def _execute(self, op: str, fields: dict[str, Any]) -> Any:
        return self.request(op, **fields)

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def markets(self) -> dict[str, Any]:
        """Return `{"markets": [...], "assets": [...]}` of this shard."""
        return self.request("markets")

    def snapshot(self, pair: str, depth: int | None = None) -> dict[str, Any]:
        return self.request("snapshot", pair=pair, depth=depth)

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        monitor = self.transport.monitor
        while not self.state.connected:
            if self.state.refusal is not None:
                raise self.state.refused_error()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _no_handshake(self.endpoint, timeout)
            if monitor.poll(int(remaining * 1000) + 1):
                self._on_monitor()

    def _on_monitor(self) -> bool:
        """Read the monitor's events; queue the client events they mean; fail a request in flight on a drop."""
        news = dropped = False
        monitor = self.transport.monitor
        while monitor.poll(0):
            message = parse_monitor_message(monitor.recv_multipart())
            event = self.state.on_event(message["event"], message["value"])
            if event is not None:
                self.transport.events.append(event)
                news = True
                dropped = dropped or event["type"] == "disconnected"
        if dropped and self._in_request is not None:
            raise _disconnected(self._in_request)
        return news

    # ------------------------------------------------------------ events and books

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """Wait up to `timeout` s for news; return the events that arrived (maybe none).

        Returns early when an event arrives or a followed book changes. Followed books are
        updated (and resynced when needed) as a side effect.
        """
        self._pump(timeout)
        events, queued = [], self.transport.events
        while queued:
            event = queued.popleft()
            if event.get("type") == "account":
                lost = self._account.check(event)
                if lost is not None:
                    events.append(lost)
            events.append(event)
        return events

    def _pump(self, timeout: float) -> None:
        """Read what the sockets have (waiting up to `timeout` s for something), and resync books."""
        transport = self.transport
        self._take(transport.serve(0.0 if transport.events else timeout))
        while transport.socket.poll(0):
            self._take(transport.serve(0))
        self._sync_books()

    def _take(self, message: dict[str, Any] | None) -> None:
        if message is not None:
            self.transport.take(message)

    def follow_book(self, pair: str) -> OrderBook:
        """Start keeping `pair`'s order book from the public PUB; return it (synced once `poll` has run)."""
        if self._add_book(pair):
            if self._sub is None:
                self._sub = _market_socket(self.context, self.public_endpoint)
                self.transport.watch(self._sub, self._on_market_data)
            self._sub.setsockopt(zmq.SUBSCRIBE, protocol.public_topic(pair))
        return self.books[pair].book

    def wait_for_book(self, pair: str, timeout: float = 10.0) -> OrderBook:
        """Follow `pair` and poll until its book is in sync; raise TimeoutError."""
        book = self.follow_book(pair)
        deadline = time.monotonic() + timeout
        while not book.synced:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the {pair} book did not sync within {timeout} s")
            self._pump(min(remaining, 0.5))
        return book

    def _on_market_data(self) -> bool:
        changed = False
        sub, books = self._sub, self.books
        while sub.get(zmq.EVENTS) & _POLLIN:
            topic, body = sub.recv_multipart()
            sync = books.get(topic[_MARKET_TOPIC_OFFSET:].decode())
            if sync is not None and sync.on_message(orjson.loads(body)) is not None:
                changed = True
        return changed

    def _sync_books(self) -> None:
        for pair, sync in self.books.items():
            if not sync.snapshot_due or not self.state.connected:
                continue
            sync.snapshot_requested()
            try:
                snapshot = self.request("snapshot", pair=pair)
            except ZmxError:
                sync.snapshot_failed()
                continue
            sync.on_snapshot(snapshot)


# ---------------------------------------------------------------- asyncio client


class AsyncBotClient(_BotClientBase, AsyncOrderMethods):
    """The asyncio twin of BotClient: the same methods as coroutines, events from `next_event`."""

    def __init__(self, endpoint: str, server_public_key: bytes | str, key: BotKey, *,
                 public_endpoint: str | None = None, timeout: float = 5.0, connect_timeout: float = 10.0,
                 context: zmq.asyncio.Context | None = None) -> None:
        super().__init__(endpoint, server_public_key, key, public_endpoint, timeout, connect_timeout)
        self.context = context or zmq.asyncio.Context.instance()
        self.late_replies = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._waiters: dict[int, tuple[str, asyncio.Future]] = {}
        self._sub: zmq.asyncio.Socket | None = None
        self._tasks: set[asyncio.Task] = set()
        self._dealer_tasks: list[asyncio.Task] = []
        self._state_changed = asyncio.Event()
        self._books_changed = asyncio.Event()
        self._socket: zmq.asyncio.Socket | None = None

    def _open(self) -> None:
        self.state.reset()
        socket, monitor = dealer(self.context, self.endpoint, (self.server_public_key, *self.key.curve),
                                 immediate=True, monitor_events=MONITORED_EVENTS)
        self._socket = socket
        self._dealer_tasks = [self._spawn(self._read_replies(socket)), self._spawn(self._read_monitor(socket, monitor))]

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Open the connection, wait for the handshake, then ping; return the ping."""
        if self._socket is None:
            self._open()
        await self._wait_connected(self.connect_timeout if timeout is None else timeout)
        return await self.request("ping")

    async def reconnect(self) -> None:
        """Drop the connection and make a new one (after a refusal, libzmq does not try again)."""
        self._close_dealer()
        self._open()

    def _close_dealer(self) -> None:
        for task in self._dealer_tasks:
            task.cancel()
        self._fail_waiters()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def close(self) -> None:
        self._close_dealer()
        for task in list(self._tasks):
            task.cancel()
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    async def __aenter__(self) -> "AsyncBotClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------ requests

    async def request(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request and return its `data`; raise the ZmxError subclass of the outcome."""
        if self._socket is None:
            self._open()
        if not self.state.connected:
            await self._wait_connected(self.connect_timeout)
        request_id = next(self._ids)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = (op, waiter)
        try:
            try:
                await self._socket.send(protocol.encode_request(request_id, op, **fields), flags=zmq.NOBLOCK)
            except zmq.Again:
                raise _not_sent(self.endpoint, op) from None
            wait = self.timeout if timeout is None else timeout
            try:
                reply = await asyncio.wait_for(waiter, wait)
            except asyncio.TimeoutError:
                raise OutcomeUnknown("TIMEOUT", f"no reply to {op} within {wait} s: it may or may not have run; "
                                     "reconcile by client_order_id") from None
        finally:
            self._waiters.pop(request_id, None)
        if not reply["ok"]:
            raise error_from_wire(reply["error"])
        return reply["data"]

    async def _execute(self, op: str, fields: dict[str, Any]) -> Any:
        return await self.request(op, **fields)

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def markets(self) -> dict[str, Any]:
        return await self.request("markets")

    async def snapshot(self, pair: str, depth: int | None = None) -> dict[str, Any]:
        return await self.request("snapshot", pair=pair, depth=depth)

    async def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.state.connected:
            if self.state.refusal is not None:
                raise self.state.refused_error()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _no_handshake(self.endpoint, timeout)
            self._state_changed.clear()
            try:
                await asyncio.wait_for(self._state_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _read_replies(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            message = protocol.decode_reply(await socket.recv())
            if "id" not in message:
                self._deliver(message)
                continue
            entry = self._waiters.get(message["id"])
            if entry is None or entry[1].done():
                self.late_replies += 1
            else:
                entry[1].set_result(message)

    async def _read_monitor(self, socket: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
        try:
            while True:
                message = parse_monitor_message(await monitor.recv_multipart())
                event = self.state.on_event(message["event"], message["value"])
                if event is None:
                    continue
                if event["type"] == "disconnected":
                    self._fail_waiters()
                elif event["type"] == "connected":
                    self._schedule_snapshots()
                self._deliver(event)
                self._state_changed.set()
        finally:
            monitor.close()

    def _fail_waiters(self) -> None:
        for op, waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(_disconnected(op))

    def _deliver(self, event: dict[str, Any]) -> None:
        if event.get("type") == "account":
            lost = self._account.check(event)
            if lost is not None:
                self.events.put_nowait(lost)
        self.events.put_nowait(event)

    async def next_event(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Return the next event, or None after `timeout` seconds."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except asyncio.TimeoutError:
            return None

    # ------------------------------------------------------------ books

    def follow_book(self, pair: str) -> OrderBook:
        """Start keeping `pair`'s order book from the public PUB; return it (it syncs in the background)."""
        if self._add_book(pair):
            if self._sub is None:
                self._sub = _market_socket(self.context, self.public_endpoint)
                self._spawn(self._read_market_data(self._sub))
            self._sub.setsockopt(zmq.SUBSCRIBE, protocol.public_topic(pair))
        return self.books[pair].book

    async def wait_for_book(self, pair: str, timeout: float = 10.0) -> OrderBook:
        """Follow `pair` and wait until its book is in sync; raise TimeoutError."""
        book = self.follow_book(pair)
        deadline = time.monotonic() + timeout
        while not book.synced:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the {pair} book did not sync within {timeout} s")
            self._books_changed.clear()
            try:
                await asyncio.wait_for(self._books_changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return book

    async def _read_market_data(self, sub: zmq.asyncio.Socket) -> None:
        while True:
            topic, body = await sub.recv_multipart()
            sync = self.books.get(topic[_MARKET_TOPIC_OFFSET:].decode())
            if sync is not None:
                sync.on_message(orjson.loads(body))
                self._books_changed.set()
                if sync.snapshot_due:
                    self._schedule_snapshots()

    def _schedule_snapshots(self) -> None:
        for pair, sync in self.books.items():
            if sync.snapshot_due and self.state.connected:
                sync.snapshot_requested()
                self._spawn(self._fetch_snapshot(pair, sync))

    async def _fetch_snapshot(self, pair: str, sync: BookSync) -> None:
        try:
            snapshot = await self.request("snapshot", pair=pair)
        except ZmxError:
            sync.snapshot_failed()
            return
        sync.on_snapshot(snapshot)
        self._books_changed.set()
        if sync.snapshot_due:
            self._schedule_snapshots()
