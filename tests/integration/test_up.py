"""`zmx up`: every process of the stack under one supervisor, used over REST, stopped cleanly."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from tests.integration.feed_harness import BookFollower, FeedClient, snapshot_levels
from tests.integration.gateway_harness import HttpClient
from tests.integration.harness import REPO_ROOT, _die_with_parent, free_ports
from tests.polling import poll_until

pytestmark = pytest.mark.integration


def get(port: int, path: str, headers: dict[str, str] | None = None, body: object = None,
        method: str = "GET") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        payload = orjson.dumps(body) if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def healthy(port: int) -> bool:
    try:
        return get(port, "/health")[0] == 200
    except OSError:
        return False


def test_up_starts_every_process_serves_orders_and_stops_cleanly(tmp_path: Path) -> None:
    http_port, ws_port, *ports = free_ports(6)
    config = tmp_path / "zmx.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nhttp_port = {http_port}\nws_port = {ws_port}\n'
        '[gateway]\nworkers = 1\nthreads = 2\n'
        '[[shards]]\nshard_id = 0\nmarkets = ["*"]\n'
        + "".join(f'{key} = "tcp://127.0.0.1:{port}"\n' for key, port in zip(
            ("command_endpoint", "public_endpoint", "bot_endpoint", "private_endpoint"), ports))
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
    log = (tmp_path / "up.log").open("w+b")
    up = subprocess.Popen([sys.executable, "-m", "common.cli", "--config", str(config), "up", "--no-demo"],
                          cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        banner = poll_until(lambda: re.search(rb"admin token +(\S+)", (tmp_path / "up.log").read_bytes()), 60,
                            "zmx up to print its banner once every process is ready")
        assert healthy(http_port)
        token = banner.group(1).decode()
        admin = {"Authorization": f"Bearer {token}"}
        status, _ = get(http_port, "/api/v1/admin/markets", admin, {"pair": "BTC-USDT", "tick_size": "0.01",
                                                                     "lot_size": "0.001"}, "POST")
        assert status == 201
        commands = [" ".join(child.cmdline()) for child in psutil.Process(up.pid).children(recursive=True)]
        for process in ("matcher --shard 0", "recorder", "gateway", "feed"):
            assert any(command.endswith(f"--config {config} {process}") for command in commands), commands
        poll_until(lambda: get(http_port, "/api/v1/markets/BTC-USDT/trades")[0] == 200, 20,
                   "the recorder to have recorded the market")
        follow_the_book_over_websocket_while_trading_over_rest(http_port, ws_port, admin)
        children = psutil.Process(up.pid).children(recursive=True)
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
        log.seek(0)
        output = log.read().decode(errors="replace")
    assert code == 0, output[-5000:]
    assert not [child.pid for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]


def follow_the_book_over_websocket_while_trading_over_rest(http_port: int, ws_port: int,
                                                           admin: dict[str, str]) -> None:
    """A WebSocket client's book, built from snapshot + diffs, equals REST's book at the same seq."""
    traders = []
    for name in ("alice", "bob"):
        _, created = get(http_port, "/api/v1/admin/traders", admin, {"username": name}, "POST")
        trader = created["data"]
        for asset, amount in (("USDT", "100000"), ("BTC", "100")):
            get(http_port, "/api/v1/admin/deposits", admin,
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
        _, book = get(http_port, "/api/v1/markets/BTC-USDT/orderbook?depth=1000")
        book = book["data"]
        feed.wait_for(lambda message: follower.apply(message) and follower.seq >= book["seq"], 10)
    for trader in traders:
        trader.close()
    assert follower.seq == book["seq"]
    assert follower.levels() == snapshot_levels(book)
