"""`zmx up`: every process of the stack under one supervisor, used over REST, stopped cleanly."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.integration.feed_harness import BookFollower, FeedClient, snapshot_levels
from tests.integration.gateway_harness import HttpClient
from tests.integration.up_harness import UpStack, request
from tests.polling import poll_until

pytestmark = pytest.mark.integration


def test_up_starts_every_process_serves_orders_and_stops_cleanly(tmp_path: Path) -> None:
    stack = UpStack(tmp_path)
    try:
        stack.start()
        status, _ = stack.request("POST", "/api/v1/admin/markets", {"pair": "BTC-USDT", "tick_size": "0.01",
                                                                    "lot_size": "0.001"}, stack.admin)
        assert status == 201
        commands = [" ".join(child.cmdline()) for child in stack.children()]
        for process in ("matcher --shard 0", "recorder", "gateway", "feed"):
            assert any(command.endswith(f"--config {stack.config_path} {process}") for command in commands), commands
        poll_until(lambda: stack.request("GET", "/api/v1/markets/BTC-USDT/trades")[0] == 200, 20,
                   "the recorder to have recorded the market")
        follow_the_book_over_websocket_while_trading_over_rest(stack.http_port, stack.ws_port, stack.admin)
        children = stack.children()
    finally:
        code = stack.stop()
    assert code == 0, stack.log_text()[-5000:]
    assert not [child.pid for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def follow_the_book_over_websocket_while_trading_over_rest(http_port: int, ws_port: int,
                                                           admin: dict[str, str]) -> None:
    """A WebSocket client's book, built from snapshot + diffs, equals REST's book at the same seq."""
    traders = []
    for name in ("alice", "bob"):
        _, created = request(http_port, "/api/v1/admin/traders", admin, {"username": name}, "POST")
        trader = created["data"]
        for asset, amount in (("USDT", "100000"), ("BTC", "100")):
            request(http_port, "/api/v1/admin/deposits", admin,
                {"trader_id": trader["trader_id"], "asset": asset, "amount": amount}, "POST")
        traders.append(HttpClient(http_port, trader["api_key"], trader["api_secret"]))
    follower = BookFollower("orderbook.BTC-USDT")
    with FeedClient(f"ws://127.0.0.1:{ws_port}/ws") as feed:
        feed.subscribe("orderbook.BTC-USDT")
        for index in range(300):
            side = ("buy", "sell")[index % 2]
            price = f"{100 + (index * 7) % 11 - 5}.00"
            placed = traders[index % 3 % 2].request("POST", "/api/v1/account/orders", {
                "pair": "BTC-USDT", "side": side, "type": "limit", "price": price,
                "quantity": f"0.{index % 90 + 1:03d}"})
            assert placed.status == 201, placed
        _, book = request(http_port, "/api/v1/markets/BTC-USDT/orderbook?depth=1000")
        book = book["data"]
        feed.wait_for(lambda message: follower.apply(message) and follower.seq >= book["seq"], 10)
    for trader in traders:
        trader.close()
    assert follower.seq == book["seq"]
    assert follower.levels() == snapshot_levels(book)
