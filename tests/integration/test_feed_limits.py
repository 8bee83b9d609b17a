"""Hostile and broken clients: malformed frames, limits, slow and dead connections.

Each misbehaving client gets an `{"op": "error", ...}` (or is dropped) while a well-behaved
client on the same feed keeps its book and its messages.
"""

from __future__ import annotations

import base64
import os
import socket
import time

import orjson
import pytest

from tests.integration.feed_harness import BookFollower, FeedProcess, snapshot_levels
from tests.integration.harness import MatcherCluster
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
BOOK = f"orderbook.{PAIR}"


@pytest.fixture
def cluster(make_cluster) -> MatcherCluster:
    cluster = make_cluster()
    client = cluster.start(0).client()
    client.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account in (1, 2):
        client.request("deposit", account_id=account, asset="USDT", amount="100000000")
        client.request("deposit", account_id=account, asset="BTC", amount="100000")
    return cluster


@pytest.fixture
def start_feed(cluster):
    started: list[FeedProcess] = []

    def start(**settings) -> FeedProcess:
        feed = FeedProcess(cluster, f"feed-{len(started)}", settings).start()
        started.append(feed)
        feed.wait_ready(live=1)
        return feed

    yield start
    for feed in started:
        feed.kill()


def place_many(client, count: int, cancel: bool = False) -> int:
    """Place `count` resting orders on distinct levels of both sides (no trades), cancel them if asked.

    Return the market's seq after them.
    """
    requests = []
    for index in range(count):
        side = "buy" if index % 2 else "sell"
        ticks = index // 2
        price = f"{90 - ticks // 100}.{99 - ticks % 100:02d}" if side == "buy" else f"{110 + ticks // 100}.{ticks % 100:02d}"
        requests.append(client.send("place", account_id=1 + index % 2, pair=PAIR, side=side, type="limit",
                                    price=price, quantity="0.001"))
    for request_id in requests:
        reply = client.wait(request_id)
        assert reply["ok"], reply
    if cancel:
        for account in (1, 2):
            client.request("cancel_all", account_id=account)
    return client.request("snapshot", pair=PAIR)["seq"]


class RawClient:
    """A WebSocket client by hand on a plain socket: it reads only when told to."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.socket.recv(4096)
            assert chunk, "closed during the handshake"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        self.buffer = response.partition(b"\r\n\r\n")[2]

    def send(self, message: dict) -> None:
        payload = orjson.dumps(message)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        assert len(payload) < 126
        self.socket.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def read_all(self, timeout: float = 10.0) -> bytes:
        """Read until the server closes the TCP connection; return everything received."""
        self.socket.settimeout(timeout)
        data = self.buffer
        while True:
            try:
                chunk = self.socket.recv(1 << 16)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.socket.close()


def error_of(client, frame) -> dict:
    client.send_raw(frame)
    reply = client.wait_for(lambda message: message.get("op") in ("error", "pong", "subscribed"), 5.0,
                            what="an error")
    assert reply["op"] == "error", reply
    return reply


def test_malformed_frames_get_errors_and_disturb_nobody(cluster, start_feed) -> None:
    matcher = cluster.matcher(0).client()
    feed = start_feed(max_frame_bytes=512, max_messages_per_second=100)
    bystander = feed.client(max_queue=None)
    bystander.subscribe(BOOK)
    follower = BookFollower(BOOK)
    hostile = feed.client()

    cases = [
        ("not json", "INVALID_JSON"),
        (b"\xff\xfe binary garbage", "INVALID_JSON"),
        ("[1,2,3]", "INVALID_JSON"),
        ('{"op": "explode"}', "UNKNOWN_COMMAND"),
        ('{"channels": ["x"]}', "UNKNOWN_COMMAND"),
        ('{"op": "subscribe", "channels": "trades.BTC-USDT"}', "INVALID_FIELD"),
        ('{"op": "subscribe", "channels": ["trades.BTC-USDT"], "id": 7}', "INVALID_FIELD"),
        ('{"op": "subscribe", "channels": ["orderbook.BTC-USDT.7"]}', "UNKNOWN_CHANNEL"),
        ('{"op": "subscribe", "channels": ["candles.BTC-USDT.2m"]}', "UNKNOWN_CHANNEL"),
        ('{"op": "subscribe", "channels": ["nonsense"]}', "UNKNOWN_CHANNEL"),
        ('{"op": "subscribe", "channels": ["trades.NOPE-USDT"]}', "UNKNOWN_MARKET"),
        ('{"op": "subscribe", "channels": ["orders"]}', "MISSING_AUTHENTICATION"),
        ('{"op": "ping", "pad": "' + "x" * 600 + '"}', "FRAME_TOO_LARGE"),
        ("[" * 10_000 + "]" * 10_000, "FRAME_TOO_LARGE"),
    ]
    for frame, code in cases:
        reply = error_of(hostile, frame)
        assert reply["code"] == code, (frame[:60], reply)
        assert reply["message"]
    # A refused subscribe changes nothing: the connection holds no channel.
    assert hostile.request("unsubscribe", "subscribed", channels=["trades.BTC-USDT"])["channels"] == []
    assert hostile.request("ping", "pong") == {"op": "pong"}

    seq = place_many(matcher, 50)
    bystander.wait_for(lambda message: follower.apply(message) and follower.seq == seq, what="the book at seq")
    assert follower.levels() == snapshot_levels(matcher.request("snapshot", pair=PAIR))
    assert follower.snapshots == 1


def test_a_frame_far_over_the_limit_closes_only_that_connection(cluster, start_feed) -> None:
    feed = start_feed(max_frame_bytes=256)
    bystander = feed.client()
    huge = feed.client()

    huge.send_raw("x" * (256 * 64 + 1))

    closed = huge.closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1009  # message too big
    assert bystander.request("ping", "pong") == {"op": "pong"}


def test_subscribe_and_unsubscribe_answer_the_connections_channels(cluster, start_feed) -> None:
    feed = start_feed(max_subscriptions_per_connection=3)
    client = feed.client()

    assert client.subscribe(f"trades.{PAIR}", f"ticker.{PAIR}")["channels"] == [f"trades.{PAIR}", f"ticker.{PAIR}"]
    ticker = client.wait_for(lambda message: message.get("channel") == f"ticker.{PAIR}", what="ticker snapshot")
    assert ticker["type"] == "snapshot" and ticker["data"]["pair"] == PAIR
    # Subscribing again is a no-op, and the limit counts channels, not requests.
    assert client.subscribe(f"trades.{PAIR}")["channels"] == [f"trades.{PAIR}", f"ticker.{PAIR}"]
    refused = client.request("subscribe", "subscribed", channels=[BOOK, f"orderbook.{PAIR}.5"])
    assert refused["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert client.request("unsubscribe", "subscribed", channels=[f"ticker.{PAIR}"])["channels"] == [f"trades.{PAIR}"]
    assert client.subscribe(BOOK, f"candles.{PAIR}.1m")["channels"] == [f"trades.{PAIR}", BOOK, f"candles.{PAIR}.1m"]
    candle = client.wait_for(lambda message: message.get("channel") == f"candles.{PAIR}.1m", what="candle snapshot")
    assert candle["type"] == "snapshot" and candle["data"] is None  # no trade yet


def test_message_rate_per_connection(cluster, start_feed) -> None:
    feed = start_feed(max_messages_per_second=5)
    client = feed.client()

    for _ in range(12):
        client.send("ping")
    replies = [client.wait_for(lambda message: message.get("op") in ("pong", "error"), what="a reply")
               for _ in range(12)]

    limited = [reply for reply in replies if reply["op"] == "error"]
    assert all(reply["code"] == "RATE_LIMITED" for reply in limited)
    assert 5 <= replies.count({"op": "pong"}) <= 7 and len(limited) >= 5
    # Tokens come back with time; the connection was never closed.
    assert poll_until(lambda: client.request("ping", "pong")["op"] == "pong", timeout=5, interval=0.3)


def test_connections_per_address_are_limited(cluster, start_feed) -> None:
    feed = start_feed(max_connections_per_ip=3)
    clients = [feed.client() for _ in range(3)]

    extra = feed.client()
    refusal = extra.wait_for(lambda message: True, what="the refusal")
    assert refusal["op"] == "error" and refusal["code"] == "TOO_MANY_CONNECTIONS"
    assert extra.closed().rcvd.code == 1008

    clients.pop().close()
    poll_until(lambda: feed.health()["clients"] == 2, what="the closed connection to be forgotten")
    again = feed.client()
    assert again.request("ping", "pong") == {"op": "pong"}


def test_health_metrics_and_other_paths(cluster, start_feed) -> None:
    import http.client

    feed = start_feed()
    client = feed.client()
    client.subscribe(BOOK)
    assert feed.health() == {"status": "ok", "markets": 1, "live": 1, "clients": 1}
    connection = http.client.HTTPConnection("127.0.0.1", feed.port, timeout=5)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
    assert "# TYPE zmx_feed_connections gauge\nzmx_feed_connections 1\n" in text
    assert "zmx_feed_markets_live 1\n" in text and "zmx_feed_slow_consumers_total 0\n" in text
    connection = http.client.HTTPConnection("127.0.0.1", feed.port, timeout=5)  # the feed closes after a response
    connection.request("GET", "/elsewhere")
    assert connection.getresponse().status == 404


def test_a_slow_consumer_is_dropped_and_told_why_while_a_normal_client_keeps_up(cluster, start_feed) -> None:
    matcher = cluster.matcher(0).client()
    feed = start_feed(max_queue_bytes=65536)
    normal = feed.client(max_queue=None)
    normal.subscribe(BOOK)
    follower = BookFollower(BOOK)
    place_many(matcher, 1000)  # a deep book: each snapshot of it is some 30 kB
    slow = RawClient(feed.port, receive_buffer=4096)
    slow.send({"op": "subscribe", "channels": [BOOK]})

    deadline = time.monotonic() + 30
    while feed.health()["clients"] > 1:  # the slow one is still there: make it ask for more
        assert time.monotonic() < deadline, "the slow client was never dropped"
        slow.send({"op": "unsubscribe", "channels": [BOOK]})
        slow.send({"op": "subscribe", "channels": [BOOK]})
        place_many(matcher, 20, cancel=True)

    received = slow.read_all()
    assert b'"code":"SLOW_CONSUMER"' in received
    slow.close()
    seq = place_many(matcher, 40, cancel=True)
    normal.wait_for(lambda message: follower.apply(message) and follower.seq == seq, what="the book at seq")
    assert follower.levels() == snapshot_levels(matcher.request("snapshot", pair=PAIR))
    assert '"slow_consumers":1' in feed.log_text() or feed.health()["clients"] == 1


def test_a_client_that_never_answers_pings_is_dropped(cluster, start_feed) -> None:
    feed = start_feed(ping_interval_seconds=0.2, ping_timeout_seconds=0.3)
    alive = feed.client()  # the websockets client answers pings by itself
    dead = RawClient(feed.port)  # never reads, never answers

    poll_until(lambda: feed.health()["clients"] == 1, timeout=10, what="the dead client to be dropped")

    assert alive.request("ping", "pong") == {"op": "pong"}
    dead.close()
