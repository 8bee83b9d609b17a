"""The feed's order book and trades against a real matcher, over real WebSockets.

A client that rebuilds the book from the snapshot and the conflated diffs must hold
exactly the matcher's `snapshot` at the same seq, across thousands of random orders, for
the full book and for a depth-limited channel, whether it subscribed before the flow or
in the middle of it; the trades channel delivers every trade once, in order. Feeds that
restart, several feeds at once, and matchers that restart (or come back with another
state) all leave clients with a consistent book.
"""

from __future__ import annotations

import random
import shutil
import time

import pytest

from tests.integration.feed_harness import BookFollower, FeedClient, FeedProcess, snapshot_levels
from tests.integration.harness import MatcherCluster

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
BOOK, TOP = f"orderbook.{PAIR}", f"orderbook.{PAIR}.10"
ACCOUNTS = (1, 2, 3, 4)


class Flow:
    """A seeded random flow of limit orders around a wandering mid price, and cancels."""

    def __init__(self, client, seed: int) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.mid = 10_000  # ticks of 0.01
        self.open: list[tuple[int, int]] = []  # (account, order id)
        self.trade_ids: list[int] = []

    def run(self, count: int, batch: int = 250) -> None:
        for start in range(0, count, batch):
            requests = [self._send() for _ in range(min(batch, count - start))]
            for request_id, account in requests:
                reply = self.client.wait(request_id)
                if not reply["ok"]:
                    assert reply["error"]["code"] in ("ORDER_NOT_FOUND", "ORDER_NOT_OPEN"), reply
                    continue
                order = reply["data"]
                self.trade_ids += [fill["trade_id"] for fill in order["fills"] if fill["liquidity"] == "taker"]
                if order["status"] in ("NEW", "PARTIALLY_FILLED"):
                    self.open.append((account, order["order_id"]))

    def _send(self) -> tuple[int, int]:
        rng = self.random
        account = rng.choice(ACCOUNTS)
        if self.open and rng.random() < 0.3:
            account, order_id = self.open.pop(rng.randrange(len(self.open)))
            return self.client.send("cancel", account_id=account, order_id=order_id), account
        self.mid += rng.choice((-1, 0, 1))
        side = rng.choice(("buy", "sell"))
        offset = rng.randint(-3, 12)  # mostly resting, sometimes crossing
        ticks = self.mid - offset if side == "buy" else self.mid + offset
        price = f"{ticks // 100}.{ticks % 100:02d}"
        quantity = f"0.{rng.randint(1, 999):03d}"
        return self.client.send("place", account_id=account, pair=PAIR, side=side, type="limit", price=price,
                                quantity=quantity, stp="none"), account


def fund(client) -> None:
    client.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account in ACCOUNTS:
        client.request("deposit", account_id=account, asset="USDT", amount="100000000")
        client.request("deposit", account_id=account, asset="BTC", amount="100000")


@pytest.fixture
def cluster(make_cluster) -> MatcherCluster:
    cluster = make_cluster()
    cluster.start(0)
    return cluster


@pytest.fixture
def feeds(cluster):
    started: list[FeedProcess] = []

    def start(name: str = "feed", **settings) -> FeedProcess:
        feed = FeedProcess(cluster, name, settings)
        started.append(feed)
        return feed.start()

    yield start
    for feed in started:
        feed.kill()


def follow_to(client: FeedClient, followers: list[BookFollower], seq: int, timeout: float = 20.0) -> None:
    """Read until the first follower reaches `seq`, then up to a pong (the rest of that tick's write)."""
    deadline = time.monotonic() + timeout
    while followers[0].seq != seq:
        assert time.monotonic() < deadline, f"{followers[0].channel} at {followers[0].seq}, waiting for {seq}"
        message = client.receive(max(deadline - time.monotonic(), 0.01))
        if message is not None:
            for follower in followers:
                follower.apply(message)
    client.send("ping")
    while True:
        message = client.wait_for(lambda message: True, max(deadline - time.monotonic(), 0.01), what="pong")
        if message.get("op") == "pong":
            return
        for follower in followers:
            follower.apply(message)


def assert_matches(matcher_client, client, followers: list[BookFollower], depths: list[int | None]) -> int:
    snapshot = matcher_client.request("snapshot", pair=PAIR)
    follow_to(client, followers, snapshot["seq"])
    for follower, depth in zip(followers, depths):
        assert follower.levels(depth) == snapshot_levels(snapshot, depth), follower.channel
        assert follower.seq <= snapshot["seq"]
    return snapshot["seq"]


def test_clients_rebuild_the_matchers_book_across_thousands_of_random_orders(cluster, feeds) -> None:
    matcher = cluster.matcher(0).client()
    fund(matcher)
    feed = feeds()
    feed.wait_ready(live=1)
    early = feed.client(max_queue=None)
    early.subscribe(BOOK, TOP, f"trades.{PAIR}")
    early_book, early_top = BookFollower(BOOK), BookFollower(TOP)
    flow = Flow(matcher, seed=5)

    flow.run(1000)
    assert_matches(matcher, early, [early_book, early_top], [None, 10])
    late = feed.client(max_queue=None)
    late.subscribe(f"orderbook.{PAIR}.1", BOOK)
    late_top, late_book = BookFollower(f"orderbook.{PAIR}.1"), BookFollower(BOOK)
    for rounds in range(3):
        flow.run(700)
        assert_matches(matcher, early, [early_book, early_top], [None, 10])
        assert_matches(matcher, late, [late_book, late_top], [None, 1])

    assert early_book.snapshots == 1 and early_book.diffs >= 4
    assert len(early_book.bids) > 10 and len(early_book.asks) > 10
    trades = [trade for message in early.received if message.get("channel") == f"trades.{PAIR}"
              for trade in message["data"]]
    assert [trade["trade_id"] for trade in trades] == flow.trade_ids
    assert len(flow.trade_ids) > 100
    assert all(trade["pair"] == PAIR and trade["taker_side"] in ("buy", "sell") for trade in trades)


def test_a_restarted_feed_and_a_second_feed_serve_the_same_book(cluster, feeds) -> None:
    matcher = cluster.matcher(0).client()
    fund(matcher)
    first = feeds("first")
    flow = Flow(matcher, seed=11)
    flow.run(500)
    client = first.client(max_queue=None)
    client.subscribe(BOOK)
    follower = BookFollower(BOOK)
    flow.run(300)
    assert_matches(matcher, client, [follower], [None])

    second = feeds("second")  # a second feed process beside the first
    other = second.client(max_queue=None)
    other.subscribe(BOOK)
    other_follower = BookFollower(BOOK)
    first.kill()  # mid-stream: the client reconnects to a new feed and starts from its snapshot
    client.closed()
    restarted = feeds("first-again")
    client = restarted.client(max_queue=None)
    client.subscribe(BOOK)
    follower = BookFollower(BOOK)
    flow.run(500)

    assert_matches(matcher, client, [follower], [None])
    assert_matches(matcher, other, [other_follower], [None])
    assert follower.snapshots == 1 and other_follower.snapshots == 1


def test_a_matcher_restarted_mid_stream_leaves_clients_consistent(cluster, feeds) -> None:
    process = cluster.matcher(0)
    matcher = process.client()
    fund(matcher)
    feed = feeds()
    feed.wait_ready(live=1)
    client = feed.client(max_queue=None)
    client.subscribe(BOOK, TOP)
    book, top = BookFollower(BOOK), BookFollower(TOP)
    flow = Flow(matcher, seed=17)
    flow.run(400)

    process.kill()
    process.start()
    matcher = process.client()
    flow.client = matcher
    flow.run(400)

    assert_matches(matcher, client, [book, top], [None, 10])


def test_a_matcher_back_with_another_state_gives_clients_a_fresh_snapshot(cluster, feeds) -> None:
    process = cluster.matcher(0)
    matcher = process.client()
    fund(matcher)
    feed = feeds()
    feed.wait_ready(live=1)
    client = feed.client(max_queue=None)
    client.subscribe(BOOK)
    book = BookFollower(BOOK)
    flow = Flow(matcher, seed=23)
    flow.run(300)
    assert_matches(matcher, client, [book], [None])

    # Its journal lost: the market starts again from seq 1 with another book.
    process.kill()
    shutil.rmtree(process.shard_dir)
    process.start()
    matcher = process.client()
    fund(matcher)
    flow = Flow(matcher, seed=29)
    flow.run(40)

    assert_matches(matcher, client, [book], [None])
    assert book.snapshots == 2
