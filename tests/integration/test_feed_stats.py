"""Ticker and candles: seeded from the history store, then live, equal to what the store computes.

A real recorder writes the matcher's trades into the store; a feed started afterwards
must report the same 24-hour ticker and the same candles as the store (REST's source),
without counting a trade twice, and keep agreeing as live trades arrive. Without a store
the feed starts empty and counts what it sees.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from common.config import load_config
from common.store import open_store
from tests.integration.feed_harness import FeedProcess
from tests.integration.harness import REPO_ROOT, _die_with_parent
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
COMPARED = ("open", "high", "low", "last", "volume", "quote_volume", "change", "change_percent", "trades")


def trade_flow(matcher, rng: random.Random, count: int) -> int:
    """Place crossing orders between two accounts; return the newest trade id."""
    newest = 0
    requests = [matcher.send("place", account_id=rng.choice((1, 2)), pair=PAIR, side=rng.choice(("buy", "sell")),
                             type="limit", price=f"{rng.randint(98, 102)}.00", quantity=f"0.{rng.randint(1, 999):03d}")
                for _ in range(count)]
    for request_id in requests:
        reply = matcher.wait(request_id)
        assert reply["ok"], reply
        newest = max([newest] + [fill["trade_id"] for fill in reply["data"]["fills"]])
    return newest


@pytest.fixture
def recorded(make_cluster):
    cluster = make_cluster()
    matcher = cluster.start(0).client()
    matcher.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account in (1, 2):
        matcher.request("deposit", account_id=account, asset="USDT", amount="100000000")
        matcher.request("deposit", account_id=account, asset="BTC", amount="100000")
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    log = open(cluster.directory / "recorder.log", "ab")
    recorder = subprocess.Popen([sys.executable, "-m", "common.cli", "--config", str(cluster.config_path), "recorder"],
                                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
    store = open_store(load_config(cluster.config_path, env={}).effective_store_url())
    yield cluster, matcher, store
    recorder.kill()
    recorder.wait(10)
    log.close()
    store.close()


def recorded_up_to(store, trade_id: int) -> None:
    def newest() -> bool:
        items = store.trades(PAIR, 1).items
        return bool(items) and items[0]["trade_id"] >= trade_id

    poll_until(newest, timeout=30, what=f"the recorder to store trade {trade_id}")


def latest(client, channel: str, predicate, what: str) -> dict:
    return client.wait_for(lambda message: message.get("channel") == channel and predicate(message["data"]),
                           timeout=20, what=what)


def test_ticker_and_candles_are_seeded_from_the_store_and_stay_equal_to_it(recorded) -> None:
    cluster, matcher, store = recorded
    rng = random.Random(9)
    newest = trade_flow(matcher, rng, 200)
    recorded_up_to(store, newest)

    feed = FeedProcess(cluster).start()
    try:
        feed.wait_ready(live=1)
        client = feed.client(max_queue=None)
        client.subscribe(f"ticker.{PAIR}", f"candles.{PAIR}.1m", f"candles.{PAIR}.1d")
        expected = store.ticker(PAIR, int(time.time() * 1000))
        assert expected["trades"] > 50
        ticker = latest(client, f"ticker.{PAIR}", lambda data: data["trades"] == expected["trades"],
                        "the seeded ticker")
        assert {key: ticker["data"][key] for key in COMPARED} == {key: expected[key] for key in COMPARED}

        newest = trade_flow(matcher, rng, 100)  # live trades on top of the seed
        recorded_up_to(store, newest)
        expected = store.ticker(PAIR, int(time.time() * 1000))
        ticker = latest(client, f"ticker.{PAIR}", lambda data: data["trades"] >= expected["trades"],
                        "the live ticker")
        assert {key: ticker["data"][key] for key in COMPARED} == {key: expected[key] for key in COMPARED}

        candles = {}
        client.send("ping")
        client.wait_for(lambda message: message.get("op") == "pong", what="pong")
        for message in client.received:
            if message.get("channel", "").startswith("candles.") and message["data"] is not None:
                candles[(message["data"]["interval"], message["data"]["open_time"])] = message["data"]
        day = [candle for (interval, _), candle in candles.items() if interval == "1d"]
        assert day, "no daily candle"
        for (interval, open_time), candle in candles.items():
            [stored] = store.candles(PAIR, interval, open_time, open_time, 1)
            # The feed's candles do not carry the store's taker-buy volumes (Binance's klines do).
            shared = {key: value for key, value in stored.items() if not key.startswith("taker_buy")}
            assert {key: candle[key] for key in shared} == shared, interval
    finally:
        feed.kill()


def test_without_a_store_the_ticker_counts_from_the_feeds_start(make_cluster) -> None:
    cluster = make_cluster()
    matcher = cluster.start(0).client()
    matcher.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account in (1, 2):
        matcher.request("deposit", account_id=account, asset="USDT", amount="100000000")
        matcher.request("deposit", account_id=account, asset="BTC", amount="100000")
    # A store URL that cannot be opened: the feed serves the book and counts live trades only.
    feed = FeedProcess(cluster, env={"ZMX_STORE_URL": "sqlite:////proc/no-such-dir/store.sqlite3"}).start()
    try:
        feed.wait_ready(live=1)
        client = feed.client(max_queue=None)
        client.subscribe(f"ticker.{PAIR}", f"trades.{PAIR}")
        trade_flow(matcher, random.Random(4), 100)
        poll_until(lambda: "ticker and candles start empty" in feed.log_text(), what="the warning")
        counted = latest(client, f"ticker.{PAIR}", lambda data: data["trades"] > 0, "a live ticker")
        assert counted["data"]["volume"] != "0.000"
    finally:
        feed.kill()
