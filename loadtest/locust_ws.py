"""Locust load test of the WebSocket feed: subscribers that follow a book and its trades.

    locust -f loadtest/locust_ws.py --headless -u 50 -r 10 -t 60s \\
        --host ws://127.0.0.1:8001 --html ws-report.html

Run it against `zmx up` while something trades on `--pair` (default BTC-USDT, the demo
market): the demo bot, or loadtest/locust_rest.py in another terminal (docs/loadtest.md).
Each user opens one connection to `<host>/ws`, subscribes to `orderbook.{PAIR}` (or
`orderbook.{PAIR}.{DEPTH}` with `--depth`) and `trades.{PAIR}`, keeps the book from the
snapshot and the diffs, and reports to Locust, as request type `WS`:

    subscribe              time from opening the connection to holding the snapshot
    orderbook diff         per diff: its latency (below); a failure when its first_seq is
                           not the previous seq + 1 (a gap: the user reconnects for a
                           fresh snapshot) or when the book it leads to is crossed
    orderbook snapshot     a fresh snapshot on a held channel (the feed resynchronised)
    trades update          per message: its latency; a failure when a trade id does not
                           increase or the seq goes back
    connection             a failure when the connection drops (the user reconnects)
    feed error             a failure for every `error` message of the feed

Latency is the receipt time at the client minus the message's `ts` (the matcher's
timestamp of the newest event the message covers, integer milliseconds), so it includes
the feed's conflation interval (100 ms by default) and needs the client and the matcher
on the same clock: run it on the matcher's host, or on hosts synchronised by NTP and read
the figures with that error in mind. A user reads its messages in order as they come, so a
client that falls behind sees its later messages as late (no coordinated omission).

The feed accepts 100 connections per client address by default
(`feed.max_connections_per_ip`): raise it for more users from one host.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import websocket
from locust import User, constant, events, task

RECEIVE_TIMEOUT = 2.0


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument("--pair", default="BTC-USDT", help="market to follow")
    parser.add_argument("--depth", type=int, default=0, help="book depth channel (default 0: the full book)")


class StreamError(Exception):
    """A message that breaks the stream's contract; `name` is the Locust event it fails."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class BookSubscriber(User):
    """One WebSocket connection following one book and its trades."""

    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        pair = options.pair
        self.book_channel = f"orderbook.{pair}.{options.depth}" if options.depth else f"orderbook.{pair}"
        self.trades_channel = f"trades.{pair}"
        self.url = self.host.rstrip("/") + "/ws"
        self.connection: websocket.WebSocket | None = None
        self.connect()

    def on_stop(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def fire(self, name: str, response_time: float, length: int = 0, exception: Exception | None = None) -> None:
        self.environment.events.request.fire(request_type="WS", name=name, response_time=response_time,
                                             response_length=length, exception=exception, context={})

    def connect(self) -> None:
        """Connect, subscribe and wait for the book's snapshot; report how long it took."""
        self.seq: int | None = None
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        self.trade_id = 0
        self.trades_seq = 0
        started = time.perf_counter()
        try:
            self.connection = websocket.create_connection(self.url, timeout=RECEIVE_TIMEOUT)
            self.connection.send(json.dumps({"op": "subscribe", "channels": [self.book_channel, self.trades_channel]}))
            while self.seq is None:
                self.handle(self.connection.recv())
        except (OSError, websocket.WebSocketException, StreamError) as error:
            self.drop()
            self.fire("subscribe", (time.perf_counter() - started) * 1000, exception=error)
            return
        self.fire("subscribe", (time.perf_counter() - started) * 1000)

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None
        self.seq = None

    @task
    def receive(self) -> None:
        if self.connection is None:
            return self.connect()
        try:
            frame = self.connection.recv()
        except websocket.WebSocketTimeoutException:
            return  # an idle market sends nothing
        except (OSError, websocket.WebSocketException) as error:
            self.drop()
            self.fire("connection", 0, exception=error)
            return
        try:
            self.handle(frame)
        except StreamError as error:
            self.drop()  # reconnecting gets a fresh snapshot
            self.fire(error.name, 0, len(frame), error)

    def handle(self, frame: str) -> None:
        received_ms = time.time() * 1000
        message = json.loads(frame)
        channel = message.get("channel")
        if channel == self.book_channel:
            latency = received_ms - message["ts"]
            if message["type"] == "snapshot":
                if self.seq is not None:
                    self.fire("orderbook snapshot", latency, len(frame))
                self.seq = message["seq"]
                self.bids = {Decimal(price): size for price, size in message["data"]["bids"]}
                self.asks = {Decimal(price): size for price, size in message["data"]["asks"]}
                return
            if self.seq is None or message["first_seq"] != self.seq + 1:
                raise StreamError("orderbook diff", f"gap: diff {message['first_seq']}..{message['seq']} "
                                                    f"after seq {self.seq}")
            for levels, side in ((message["data"]["bids"], self.bids), (message["data"]["asks"], self.asks)):
                for price, size in levels:
                    if Decimal(size):
                        side[Decimal(price)] = size
                    else:
                        side.pop(Decimal(price), None)
            self.seq = message["seq"]
            crossed = self.bids and self.asks and max(self.bids) >= min(self.asks)
            self.fire("orderbook diff", latency, len(frame),
                      StreamError("orderbook diff", f"crossed book at seq {self.seq}") if crossed else None)
        elif channel == self.trades_channel:
            error = None
            if message["seq"] < self.trades_seq:
                error = StreamError("trades update", f"trades seq {message['seq']} after {self.trades_seq}")
            for trade in message["data"]:
                if trade["trade_id"] <= self.trade_id:
                    error = StreamError("trades update", f"trade id {trade['trade_id']} after {self.trade_id}")
                self.trade_id = trade["trade_id"]
            self.trades_seq = message["seq"]
            self.fire("trades update", received_ms - message["ts"], len(frame), error)
        elif message.get("op") == "error":
            raise StreamError("feed error", f"{message.get('code')}: {message.get('message')}")
