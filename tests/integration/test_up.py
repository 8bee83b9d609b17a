"""`zmx up`: every process of the stack under one supervisor, used over REST, stopped cleanly."""

from __future__ import annotations

import re
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


def test_the_demo_is_quoted_traded_and_its_trader_can_trade_again_after_a_restart(tmp_path: Path) -> None:
    """What a newcomer gets from `zmx up`: a live market and a funded key, found again on the next start."""
    with UpStack(tmp_path, demo=True) as stack:
        banner = stack.log_text()
        api_key = re.search(r"api key +(\S+)", banner).group(1)
        api_secret = re.search(r"api secret +(\S+)", banner).group(1)
        assert {"bot market-maker", "bot taker"} <= {kind.split(" --")[0] for kind in stack.children_by_kind()}
        _, book = stack.request("GET", "/api/v1/markets/BTC-USDT/orderbook?depth=5")
        assert book["data"]["bids"] and book["data"]["asks"]  # the banner waited for the quotes
        poll_until(lambda: stack.request("GET", "/api/v1/markets/BTC-USDT/trades")[1]["data"]["items"], 30,
                   "the taker bot to trade with the market maker")
        demo = HttpClient(stack.http_port, api_key, api_secret)
        assert balances(demo) == {"BTC": "2.00000000", "USDT": "100000.00000000"}
        bought = demo.request("POST", "/api/v1/account/orders", {"pair": "BTC-USDT", "side": "buy", "type": "market",
                                                                 "quantity": "0.00100"})
        assert bought.status == 201 and bought.json["data"]["status"] == "FILLED", bought.json
        after_trade = balances(demo)
        demo.close()

    with UpStack(tmp_path, demo=True) as again:  # the same data directory
        banner = again.log_text()
        assert re.search(r"api key +(\S+)", banner).group(1) == api_key
        demo = HttpClient(again.http_port, api_key, api_secret)
        assert balances(demo) == after_trade  # found, not funded twice
        demo.close()
        poll_until(lambda: again.request("GET", "/api/v1/markets/BTC-USDT/orderbook?depth=1")[1]["data"]["asks"],
                   30, "the market maker to quote again")


def balances(client: HttpClient) -> dict[str, str]:
    answer = client.request("GET", "/api/v1/account/balances")
    assert answer.status == 200, answer.json
    return {item["asset"]: item["total"] for item in answer.json["data"]["items"]}
