"""The feed process: WebSocket clients on one side, the matcher shards on the other.

One asyncio loop (uvloop) runs everything:

- per shard, a `ShardLink` (SUB to both PUBs, a DEALER for `markets` and `snapshot`);
- per market, a `MarketFeed`: clone-pattern sync (a resync runs as a task that retries
  the snapshot until the matcher answers), the book replica, trades and statistics;
- a tick every `conflation_ms`: each market emits one message per channel with news,
  encoded and framed once, the `Hub` queues the bytes for every subscriber and then
  writes each client's queue with one write (see feed/fanout.py);
- a watchdog that resyncs a market silent for longer than its heartbeat timeout
  (three matcher heartbeat intervals plus a second);
- the `websockets` server on `feed.host:ws_port`, path `/ws` (plus `GET /health` and
  `GET /metrics`, Prometheus text),
  with a handler coroutine per connection that reads and answers client ops;
- a periodic check that authenticated connections' API keys are still valid.

Private account events are never conflated: each one is sent to its trader's
connections as soon as it arrives, in order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from http import HTTPStatus
from typing import Any

import orjson
import zmq
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from common.config import Config, ConfigError
from common.matcher_client import MatcherError, MatcherTimeout
from feed import protocol
from feed.auth import Authenticator, StoreHandle
from feed.fanout import CLOSE_POLICY_VIOLATION, Client, Hub
from feed.market import MarketFeed, MarketInfo, parse_candle
from feed.protocol import CANDLE_INTERVALS, PRIVATE_CHANNELS, Channel, ErrorCode, FeedError
from feed.stats import window_start
from feed.upstream import ShardLink

log = logging.getLogger("zmx.feed")

REQUEST_TIMEOUT = 2.0
RESYNC_BACKOFF = (0.05, 2.0)
WATCHDOG_INTERVAL = 0.25
HARD_FRAME_FACTOR = 64
CLOSE_TIMEOUT = 1.0
# Linux grows a socket's send buffer up to 4 MiB by itself, and a client that stops reading
# would hold all of it before the feed's own queue even starts to fill; a fixed buffer
# (which the kernel doubles) bounds what a stalled client costs.
MAX_SOCKET_SEND_BUFFER = 256 * 1024
# asyncio's default of 100 overflows when a thousand clients reconnect at once (after a
# restart of the feed); the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
SEED_ATTEMPTS = 3


class FeedServer:
    """Own the shard links, the markets, the hub and the WebSocket server of one feed process."""

    def __init__(self, config: Config, context: zmq.Context | None = None) -> None:
        self.config = config
        self.settings = config.feed
        self._owns_context = context is None
        self.context = context or zmq.Context()
        self.hub = Hub(self.settings.max_queue_bytes, self._close_client)
        self.markets: dict[str, MarketFeed] = {}
        self.links: dict[int, ShardLink] = {}
        self.store = StoreHandle(config)
        self.authenticator = Authenticator(config, self.store)
        self.heartbeat_timeout = 3 * config.matcher.heartbeat_seconds + 1.0
        self.connections_by_address: dict[str, int] = {}
        self.counters = {"resyncs": 0, "snapshots_requested": 0, "events_lost": 0, "rejected_connections": 0}
        self._last_seen: dict[str, float] = {}
        self._syncing: dict[str, asyncio.Task] = {}
        self._learning: dict[int, asyncio.Task] = {}
        self._market_shards: dict[str, int] = {}
        self._account_seq: dict[tuple[int, int], int] = {}
        self._api_keys: dict[Client, str] = {}
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set."""
        loop = self._loop = asyncio.get_running_loop()
        for shard in self.config.shards:
            link = ShardLink(shard, self.context, self._public_handler(shard.shard_id),
                             self._private_handler(shard.shard_id), REQUEST_TIMEOUT)
            link.start(loop)
            self.links[shard.shard_id] = link
        settings = self.settings
        server = await serve(
            self._handle, settings.host, self.config.ws_port,
            process_request=self._process_request, compression=None, server_header=None,
            max_size=settings.max_frame_bytes * HARD_FRAME_FACTOR, max_queue=16,
            ping_interval=settings.ping_interval_seconds, ping_timeout=settings.ping_timeout_seconds,
            close_timeout=CLOSE_TIMEOUT, backlog=LISTEN_BACKLOG,
        )
        self.port = server.sockets[0].getsockname()[1]
        for shard_id in self.links:
            self._learn(shard_id)
        self._tasks += [loop.create_task(self._tick_forever()), loop.create_task(self._watchdog()),
                        loop.create_task(self._recheck_keys())]
        log.info("feed ready", extra={"host": settings.host, "port": self.port, "path": "/ws",
                                      "conflation_ms": settings.conflation_ms})
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            for task in [*self._tasks, *self._syncing.values(), *self._learning.values()]:
                task.cancel()
            for link in self.links.values():
                link.close()
            self.store.close()
            if self._owns_context:
                self.context.destroy(linger=0)
            log.info("feed stopped", extra={**self.counters, "slow_consumers": self.hub.slow_consumers})

    # ---------------------------------------------------------------- markets and sync

    def _learn(self, shard_id: int) -> asyncio.Task:
        """Ask a shard for its markets (once at a time) and start following the new ones."""
        task = self._learning.get(shard_id)
        if task is None or task.done():
            task = self._learning[shard_id] = self._loop.create_task(self._learn_markets(shard_id))
        return task

    async def _learn_markets(self, shard_id: int) -> None:
        link = self.links[shard_id]
        delay = RESYNC_BACKOFF[0]
        while True:
            try:
                reply = await link.request("markets")
                break
            except (MatcherTimeout, MatcherError) as error:
                log.warning("markets request failed", extra={"shard_id": shard_id, "error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESYNC_BACKOFF[1])
        for pair, info in MarketInfo.from_markets_reply(reply).items():
            if pair not in self.markets:
                self._add_market(info, shard_id)

    def _add_market(self, info: MarketInfo, shard_id: int) -> None:
        self._market_shards[info.pair] = shard_id
        market = self.markets[info.pair] = MarketFeed(info)
        self._last_seen[info.pair] = time.monotonic()
        log.info("following market", extra={"pair": info.pair, "shard_id": shard_id})
        self._resync(market, "new market")
        self._loop.create_task(self._seed_stats(market))

    def _resync(self, market: MarketFeed, reason: str) -> None:
        task = self._syncing.get(market.pair)
        if task is not None and not task.done():
            return  # a sync is running: it keeps buffering and retries by itself
        market.start_sync()
        if market.synced_once:
            self.counters["resyncs"] += 1
            log.warning("resyncing market", extra={"pair": market.pair, "reason": reason, "seq": market.replica.seq})
        self._syncing[market.pair] = self._loop.create_task(self._sync(market))

    async def _sync(self, market: MarketFeed) -> None:
        link = self.links[self._market_shards[market.pair]]
        delay = RESYNC_BACKOFF[0]
        while True:
            self.counters["snapshots_requested"] += 1
            try:
                snapshot = await link.request("snapshot", pair=market.pair)
                in_sync, changed = market.on_snapshot(snapshot)
            except (MatcherTimeout, MatcherError) as error:
                log.warning("snapshot request failed", extra={"pair": market.pair, "error": str(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESYNC_BACKOFF[1])
                continue
            except Exception:
                # A snapshot the feed cannot read must not leave the market syncing forever
                # without a word: say so and ask again.
                log.exception("could not load a snapshot", extra={"pair": market.pair})
                market.start_sync()
                await asyncio.sleep(RESYNC_BACKOFF[1])
                continue
            if changed:
                self._send_book_snapshots(market)
            if in_sync:
                self._last_seen[market.pair] = time.monotonic()
                return
            log.warning("gap in buffered updates; snapshot again", extra={"pair": market.pair})

    def _send_book_snapshots(self, market: MarketFeed) -> None:
        """Give every subscriber of the market's book channels the replica as it now is."""
        hub = self.hub
        channels = [(market.book_channel, None)]
        channels += [(f"{market.book_channel}.{depth}", depth) for depth in market.replica.views]
        for channel, depth in channels:
            subscribers = hub.subscribers.get(channel)
            if subscribers:
                hub.send_many(subscribers, market.book_snapshot(depth))

    def _shard_id(self, pair: str) -> int:
        return self.config.shard_for_market(pair).shard_id

    async def _market(self, pair: str) -> MarketFeed:
        """Return the market, asking its shard first if it is new to this feed; raise FeedError."""
        market = self.markets.get(pair)
        if market is not None:
            return market
        try:
            shard_id = self._shard_id(pair)
        except ConfigError:
            raise FeedError(ErrorCode.UNKNOWN_MARKET, f"no market {pair}") from None
        try:
            await asyncio.wait_for(asyncio.shield(self._learn(shard_id)), REQUEST_TIMEOUT)
        except asyncio.TimeoutError:
            raise FeedError(ErrorCode.MATCHER_UNAVAILABLE, f"the matcher of {pair} does not answer") from None
        market = self.markets.get(pair)
        if market is None:
            raise FeedError(ErrorCode.UNKNOWN_MARKET, f"no market {pair}")
        return market

    # ---------------------------------------------------------------- matcher messages

    def _public_handler(self, shard_id: int):
        markets, last_seen = self.markets, self._last_seen

        def handle(topic: bytes, body: bytes) -> None:
            message = orjson.loads(body)
            pair = message["pair"]
            market = markets.get(pair)
            if market is None:
                self._learn(shard_id)
                return
            last_seen[pair] = time.monotonic()
            if message["type"] == "update":
                if market.on_update(message):
                    self._resync(market, "gap" if message["seq"] > market.replica.seq else "seq went back")
            elif message["type"] == "heartbeat":
                if market.on_heartbeat(message):
                    self._resync(market, "heartbeat seq differs")

        return handle

    def _private_handler(self, shard_id: int):
        traders, account_seq = self.hub.traders, self._account_seq

        def handle(topic: bytes, body: bytes) -> None:
            try:
                account_id = int(topic[5:-1])
            except ValueError:
                return
            key = (shard_id, account_id)
            clients = traders.get(account_id)
            if not clients:
                # Nobody listens: forget the account's seq, so a trader who comes back is
                # not told that the events it was not there for were lost.
                if account_seq:
                    account_seq.pop(key, None)
                return
            event = orjson.loads(body)
            seq = event["seq"]
            last = account_seq.get(key)
            account_seq[key] = seq
            if last is not None and seq > last + 1:
                self.counters["events_lost"] += 1
                log.warning("account events lost", extra={"account_id": account_id, "after": last, "seq": seq})
                lost = protocol.text_frame(protocol.error(
                    ErrorCode.EVENTS_LOST,
                    f"account events {last + 1}..{seq - 1} of shard {shard_id} were lost: fetch orders and balances"
                    " over REST"))
                self.hub.send_many([client for client in clients
                                    if any(channel in client.channels for channel in PRIVATE_CHANNELS)], lost)
            ts = event["ts"]
            for channel in PRIVATE_CHANNELS:
                items = event[channel]
                if not items:
                    continue
                receivers = [client for client in clients if channel in client.channels]
                if receivers:
                    frame = protocol.text_frame(protocol.data(channel, "update", seq, items, ts))
                    self.hub.send_many(receivers, frame)

        return handle

    # ---------------------------------------------------------------- periodic work

    async def _tick_forever(self) -> None:
        loop = self._loop
        interval = self.settings.conflation_ms / 1000
        deadline = loop.time()
        while True:
            deadline += interval
            delay = deadline - loop.time()
            if delay < 0:
                deadline = loop.time()  # fell behind: do not try to catch up with a burst of ticks
                delay = 0
            await asyncio.sleep(delay)
            try:
                self.tick(time.time_ns() // 1_000_000)
            except Exception:
                log.exception("tick failed")

    def tick(self, now_ms: int) -> None:
        """Publish every market's news of the last interval and write it out."""
        hub = self.hub
        wanted = hub.has_subscribers
        for market in self.markets.values():
            for channel, frame in market.tick(now_ms, wanted):
                hub.publish(channel, frame)
        hub.flush()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            now = time.monotonic()
            for pair, market in self.markets.items():
                if market.state == "live" and now - self._last_seen.get(pair, now) > self.heartbeat_timeout:
                    self._resync(market, "no message within the heartbeat timeout")

    async def _recheck_keys(self) -> None:
        """Close authenticated connections whose API key was revoked or rotated."""
        while True:
            await asyncio.sleep(self.settings.key_recheck_seconds)
            for api_key in set(self._api_keys.values()):
                try:
                    trader_id = await self.authenticator.lookup(api_key, cached=False)
                except FeedError:
                    continue  # store unavailable: check again later
                if trader_id is not None:
                    continue
                for client in [client for client, key in self._api_keys.items() if key == api_key]:
                    self.hub.drop(client, ErrorCode.INVALID_API_KEY, "the API key was revoked or rotated")

    async def _seed_stats(self, market: MarketFeed) -> None:
        """Load the 24-hour minute candles and current candles from the history store, if it can."""
        try:
            seed = await self._loop.run_in_executor(None, self._read_seed, market)
        except Exception as error:
            log.warning("ticker and candles start empty: history store unavailable",
                        extra={"pair": market.pair, "error": repr(error)})
            self.store.reset()
            seed = None
        market.seed_stats(seed)

    def _read_seed(self, market: MarketFeed) -> tuple | None:
        """In a worker thread: the store's view of the market, consistent with its newest trade id."""
        store = self.store.get()
        info, pair = market.info, market.pair
        for _ in range(SEED_ATTEMPTS):
            newest = store.trades(pair, 1).items
            now_ms = time.time_ns() // 1_000_000
            minutes = [parse_candle(row, info) for row in
                       store.candles(pair, "1m", window_start(now_ms), now_ms, 1440)]
            current = {}
            for interval, length in CANDLE_INTERVALS.items():
                rows = store.candles(pair, interval, now_ms - now_ms % length, now_ms, 1)
                if rows:
                    current[interval] = parse_candle(rows[0], info)
            again = store.trades(pair, 1).items
            if newest == again:  # nothing was recorded meanwhile: candles and trade id agree
                break
        if not again:
            return [], {}, 0, None
        last = again[0]
        return minutes, current, last["trade_id"], info.tick.parse(last["price"])

    # ---------------------------------------------------------------- WebSocket side

    def _process_request(self, connection: ServerConnection, request) -> Any:
        path = request.path.partition("?")[0]
        if path == "/ws":
            return None
        if path == "/health":
            live = sum(1 for market in self.markets.values() if market.state == "live")
            body = orjson.dumps({"status": "ok", "markets": len(self.markets), "live": live,
                                 "clients": len(self.hub.clients)})
            headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.OK, "OK", headers, body)
        if path == "/metrics":
            body = self.metrics().encode()
            headers = Headers([("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                               ("Content-Length", str(len(body)))])
            return Response(HTTPStatus.OK, "OK", headers, body)
        return connection.respond(HTTPStatus.NOT_FOUND, "the WebSocket feed is at /ws\n")

    def metrics(self) -> str:
        """Return the feed's counters in the Prometheus text format."""
        hub, counters = self.hub, self.counters
        values = [
            ("zmx_feed_connections", "gauge", "open WebSocket connections", len(hub.clients)),
            ("zmx_feed_markets", "gauge", "markets followed", len(self.markets)),
            ("zmx_feed_markets_live", "gauge", "markets whose book is in sync with the matcher",
             sum(1 for market in self.markets.values() if market.state == "live")),
            ("zmx_feed_frames_sent_total", "counter", "WebSocket frames written to clients", hub.frames_sent),
            ("zmx_feed_writes_total", "counter", "socket writes to clients (one per client per tick)", hub.writes),
            ("zmx_feed_slow_consumers_total", "counter", "clients dropped with SLOW_CONSUMER", hub.slow_consumers),
            ("zmx_feed_connections_refused_total", "counter", "connections refused over a connection limit",
             counters["rejected_connections"]),
            ("zmx_feed_resyncs_total", "counter", "books resynced after a gap, a wrong heartbeat or silence",
             counters["resyncs"]),
            ("zmx_feed_snapshots_requested_total", "counter", "snapshot requests sent to matchers",
             counters["snapshots_requested"]),
            ("zmx_feed_account_events_lost_total", "counter", "account seq jumps reported as EVENTS_LOST",
             counters["events_lost"]),
            ("zmx_feed_matcher_messages_total", "counter", "messages received from the matchers' PUBs",
             sum(link.public.received + link.private.received for link in self.links.values())),
        ]
        lines = []
        for name, kind, help_text, value in values:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"

    async def _handle(self, connection: ServerConnection) -> None:
        address = (connection.remote_address or ("?",))[0]
        client = Client(connection, connection.transport, address)
        hub = self.hub
        settings = self.settings
        if len(hub.clients) >= settings.max_connections:
            await self._refuse(client, f"this feed holds its maximum of {settings.max_connections} connections")
            return
        if self.connections_by_address.get(address, 0) >= settings.max_connections_per_ip:
            await self._refuse(client, f"at most {settings.max_connections_per_ip} connections per address")
            return
        self.connections_by_address[address] = self.connections_by_address.get(address, 0) + 1
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            min(settings.max_queue_bytes, MAX_SOCKET_SEND_BUFFER))
        hub.add(client)
        client.tokens = settings.max_messages_per_second
        client.tokens_at = time.monotonic()
        try:
            async for message in connection:
                if client.dropped:
                    break
                try:
                    await self._on_message(client, message)
                except FeedError as error:
                    hub.send(client, protocol.text_frame(protocol.error(error.code, error.message)))
        except ConnectionClosed:
            pass
        finally:
            remaining = self.connections_by_address[address] - 1
            if remaining:
                self.connections_by_address[address] = remaining
            else:
                del self.connections_by_address[address]
            self._forget(client)

    async def _refuse(self, client: Client, message: str) -> None:
        self.counters["rejected_connections"] += 1
        client.transport.write(protocol.text_frame(protocol.error(ErrorCode.TOO_MANY_CONNECTIONS, message)))
        await client.connection.close(CLOSE_POLICY_VIOLATION, "too many connections")

    def _forget(self, client: Client) -> None:
        channels = list(client.channels)
        self.hub.remove(client)
        self._api_keys.pop(client, None)
        self._drop_unused_views(channels)

    def _close_client(self, client: Client, code: int, reason: str, channels: list[str]) -> None:
        self._api_keys.pop(client, None)
        self._drop_unused_views(channels)
        self._loop.create_task(client.connection.close(code, reason))

    async def _on_message(self, client: Client, message: str | bytes) -> None:
        settings = self.settings
        now = time.monotonic()
        rate = settings.max_messages_per_second
        client.tokens = min(rate, client.tokens + (now - client.tokens_at) * rate)
        client.tokens_at = now
        if client.tokens < 1:
            raise FeedError(ErrorCode.RATE_LIMITED, f"at most {rate} messages per second; this one was ignored")
        client.tokens -= 1
        size = len(message) if isinstance(message, bytes) else len(message.encode())
        if size > settings.max_frame_bytes:
            raise FeedError(ErrorCode.FRAME_TOO_LARGE, f"frames are limited to {settings.max_frame_bytes} bytes")
        op, fields = protocol.decode_op(message)
        if op == "ping":
            self.hub.send(client, protocol.text_frame(protocol.PONG))
        elif op == "subscribe":
            await self._subscribe(client, fields["channels"])
        elif op == "unsubscribe":
            self._unsubscribe(client, fields["channels"])
        else:
            await self._authenticate(client, fields)

    async def _subscribe(self, client: Client, names: list[str]) -> None:
        channels: dict[str, Channel] = {}
        for name in names:
            channel = protocol.parse_channel(name)
            if channel.private and client.trader_id is None:
                raise FeedError(ErrorCode.MISSING_AUTHENTICATION, f"authenticate before subscribing to {name}")
            channels[name] = channel
        markets = {channel.pair: await self._market(channel.pair)
                   for channel in channels.values() if channel.pair is not None}
        new = [channel for name, channel in channels.items() if name not in client.channels]
        limit = self.settings.max_subscriptions_per_connection
        if len(client.channels) + len(new) > limit:
            raise FeedError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} channels per connection")
        if client.dropped:
            return
        hub = self.hub
        for channel in new:
            hub.subscribe(client, channel.name)
            if channel.depth is not None:
                markets[channel.pair].replica.add_view(channel.depth)
        hub.send(client, protocol.text_frame(protocol.subscribed(list(client.channels))))
        now_ms = time.time_ns() // 1_000_000
        for channel in new:
            market = markets.get(channel.pair)
            if channel.kind == "orderbook":
                if market.synced_once:  # else the snapshot follows when the first sync completes
                    hub.send(client, market.book_snapshot(channel.depth))
            elif channel.kind == "ticker":
                hub.send(client, market.ticker_snapshot(now_ms))
            elif channel.kind == "candles":
                hub.send(client, market.candle_snapshot(channel.interval, now_ms))

    def _unsubscribe(self, client: Client, names: list[str]) -> None:
        channels = [protocol.parse_channel(name) for name in names]
        for channel in channels:
            self.hub.unsubscribe(client, channel.name)
        self._drop_unused_views([channel.name for channel in channels])
        self.hub.send(client, protocol.text_frame(protocol.subscribed(list(client.channels))))

    def _drop_unused_views(self, names: list[str]) -> None:
        for name in names:
            if name.startswith("orderbook.") and name.count(".") == 2 and not self.hub.has_subscribers(name):
                channel = protocol.parse_channel(name)
                market = self.markets.get(channel.pair)
                if market is not None:
                    market.replica.remove_view(channel.depth)

    async def _authenticate(self, client: Client, fields: dict[str, Any]) -> None:
        if client.trader_id is not None:
            raise FeedError(ErrorCode.ALREADY_AUTHENTICATED, f"this connection is trader {client.trader_id} already")
        trader_id = await self.authenticator.authenticate(fields["api_key"], fields["timestamp"], fields["signature"])
        if client.dropped:
            return
        self.hub.authenticate(client, trader_id)
        self._api_keys[client] = fields["api_key"]
        self.hub.send(client, protocol.text_frame(protocol.authenticated(trader_id)))


def run_feed(config: Config) -> None:
    """Run one feed process in the foreground (uvloop) until SIGINT or SIGTERM."""
    import uvloop

    # The library logs every connection at INFO: thousands of lines a second under load.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.getLogger().level))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await FeedServer(config).run(stop)

    uvloop.run(main())

