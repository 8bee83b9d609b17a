"""Authentication and the private channels: every event of a trader, in order, to that trader only.

The reference is the matcher's own private PUB, read by the test for each account: the
feed's `orders`, `fills` and `balances` messages must carry exactly those events, with
their seq, and nothing of another trader.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time

import pytest

from common.config import load_config
from common.protocol import private_topic
from common.store import open_store
from gateway import keys
from tests.integration.feed_harness import FeedProcess
from tests.integration.harness import receive, wait_private_ready
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
PRIVATE = ["orders", "fills", "balances"]


class Trader:
    def __init__(self, trader_id: int, api_key: str, secret: str) -> None:
        self.trader_id = trader_id
        self.api_key = api_key
        self.secret = secret

    def authenticate(self, client, timestamp: int | None = None, signature: str | None = None) -> dict:
        timestamp = int(time.time() * 1000) if timestamp is None else timestamp
        if signature is None:
            signature = hmac.new(self.secret.encode(), f"{timestamp}GET/ws".encode(), hashlib.sha256).hexdigest()
        return client.request("authenticate", "authenticated", api_key=self.api_key, timestamp=timestamp,
                              signature=signature)


@pytest.fixture
def setup(make_cluster):
    cluster = make_cluster()
    process = cluster.start(0)
    config = load_config(cluster.config_path, env={})
    store = open_store(config.effective_store_url())
    master = keys.load_master_secret(config)
    traders = []
    for name in ("alice", "bob"):
        trader_id = store.create_trader(name)["trader_id"]
        api_key = keys.new_api_key()
        store.replace_api_key(trader_id, keys.hash_api_key(api_key), keys.key_prefix(api_key), 0)
        traders.append(Trader(trader_id, api_key, keys.derive_secret(master, api_key)))
    matcher = process.client()
    matcher.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for trader in traders:
        matcher.request("deposit", account_id=trader.trader_id, asset="USDT", amount="10000000")
        matcher.request("deposit", account_id=trader.trader_id, asset="BTC", amount="10000")
    feed = FeedProcess(cluster, settings={"key_recheck_seconds": 0.2}).start()
    yield cluster, process, matcher, store, traders, feed
    feed.kill()
    store.close()


def test_each_trader_gets_exactly_its_own_events_in_order(setup) -> None:
    cluster, process, matcher, store, (alice, bob), feed = setup
    references = {}
    for trader in (alice, bob):
        sub = process.subscriber(private_topic(trader.trader_id), private=True)
        wait_private_ready(sub, matcher, trader.trader_id, "USDT", "1")
        references[trader.trader_id] = sub
    clients = {}
    for trader in (alice, bob):
        client = feed.client(max_queue=None)
        assert trader.authenticate(client) == {"op": "authenticated", "trader_id": trader.trader_id}
        client.subscribe(*PRIVATE)
        clients[trader.trader_id] = client
    # Both are live once a deposit of each shows up; everything after it is compared.
    start = {}
    for trader in (alice, bob):
        client = clients[trader.trader_id]
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the feed's private channel never became live"
            matcher.request("deposit", account_id=trader.trader_id, asset="USDT", amount="1")
            message = client.receive(0.3)
            if message is not None and message.get("channel") == "balances":
                break
        marker = matcher.request("deposit", account_id=trader.trader_id, asset="BTC", amount="1")["total"]
        event = client.wait_for(lambda message: message.get("channel") == "balances" and any(
            balance["asset"] == "BTC" and balance["total"] == marker for balance in message["data"]),
            what="the marker deposit")
        start[trader.trader_id] = event["seq"]
        client.received.clear()

    rng = random.Random(3)
    for _ in range(300):
        trader = rng.choice((alice, bob))
        side = rng.choice(("buy", "sell"))
        matcher.send("place", account_id=trader.trader_id, pair=PAIR, side=side, type="limit",
                     price=f"{rng.randint(95, 105)}.00", quantity=f"0.{rng.randint(1, 999):03d}", stp="none")
    for _ in range(300):
        matcher.receive()
    ends = {trader.trader_id: matcher.request("deposit", account_id=trader.trader_id, asset="USDT", amount="1")
            for trader in (alice, bob)}

    for trader_id, client in clients.items():
        end_total = ends[trader_id]["total"]
        client.wait_for(lambda message: message.get("channel") == "balances" and any(
            balance["asset"] == "USDT" and balance["total"] == end_total for balance in message["data"]),
            timeout=20, what="the final deposit")
        expected = []
        while True:
            item = receive(references[trader_id], 0.5)
            if item is None:
                break
            event = item[1]
            if event["seq"] <= start[trader_id]:
                continue
            for channel in PRIVATE:
                if event[channel]:
                    expected.append((channel, event["seq"], event[channel]))
            if any(balance["asset"] == "USDT" and balance["total"] == end_total for balance in event["balances"]):
                break
        got = [(message["channel"], message["seq"], message["data"]) for message in client.received
               if message.get("channel") in PRIVATE]
        assert got == expected
        assert len(expected) > 100
        assert all(message.get("type") == "update" for message in client.received if "channel" in message)
        orders = [order for channel, _, data in got if channel == "orders" for order in data]
        assert orders and all(order["account_id"] == trader_id for order in orders)


def test_authentication_failures_are_errors_and_the_connection_stays(setup) -> None:
    cluster, process, matcher, store, (alice, bob), feed = setup
    client = feed.client()
    now = int(time.time() * 1000)

    assert client.request("subscribe", "subscribed", channels=["orders"])["code"] == "MISSING_AUTHENTICATION"
    assert alice.authenticate(client, signature="00" * 32)["code"] == "INVALID_SIGNATURE"
    assert alice.authenticate(client, timestamp=now - 60_000)["code"] == "TIMESTAMP_OUT_OF_WINDOW"
    unknown = Trader(0, keys.new_api_key(), "0" * 64)
    assert unknown.authenticate(client)["code"] == "INVALID_API_KEY"
    assert Trader(0, "not-a-key", "x").authenticate(client)["code"] == "INVALID_API_KEY"

    timestamp = int(time.time() * 1000)
    assert alice.authenticate(client, timestamp=timestamp)["op"] == "authenticated"
    assert alice.authenticate(client)["code"] == "ALREADY_AUTHENTICATED"
    replay = feed.client()
    assert alice.authenticate(replay, timestamp=timestamp)["code"] == "INVALID_SIGNATURE"  # used once already
    assert bob.authenticate(replay)["trader_id"] == bob.trader_id
    assert client.subscribe("orders")["channels"] == ["orders"]


def test_a_revoked_key_closes_its_connections(setup) -> None:
    cluster, process, matcher, store, (alice, bob), feed = setup
    revoked, kept = feed.client(), feed.client()
    alice.authenticate(revoked)
    bob.authenticate(kept)

    store.revoke_api_keys(alice.trader_id)

    closed = revoked.closed()
    assert closed.rcvd.code == 1008
    assert any(message.get("code") == "INVALID_API_KEY" for message in revoked.received)
    assert kept.request("ping", "pong") == {"op": "pong"}
    poll_until(lambda: feed.health()["clients"] == 1, what="the revoked connection to be gone")


def test_a_trader_who_comes_back_is_not_told_of_lost_events(setup) -> None:
    cluster, process, matcher, store, (alice, bob), feed = setup
    first = feed.client()
    alice.authenticate(first)
    first.subscribe(*PRIVATE)
    deadline = time.monotonic() + 10
    while not any(message.get("channel") == "balances" for message in first.received):  # the feed knows alice's seq
        assert time.monotonic() < deadline, "no balances event"
        matcher.request("deposit", account_id=alice.trader_id, asset="USDT", amount="1")
        first.receive(0.2)
    first.close()
    poll_until(lambda: feed.health()["clients"] == 0, what="the first connection to be gone")
    for _ in range(5):  # events nobody on the feed listens to
        matcher.request("deposit", account_id=alice.trader_id, asset="USDT", amount="1")

    again = feed.client()
    alice.authenticate(again)
    again.subscribe(*PRIVATE)
    deadline = time.monotonic() + 10
    while not any(message.get("channel") == "balances" for message in again.received):
        assert time.monotonic() < deadline, "no balances event"
        matcher.request("deposit", account_id=alice.trader_id, asset="USDT", amount="1")
        again.receive(0.2)
    for _ in range(3):
        matcher.request("deposit", account_id=alice.trader_id, asset="USDT", amount="1")
    assert again.request("ping", "pong") == {"op": "pong"}
    seqs = [message["seq"] for message in again.received if message.get("channel") == "balances"]
    assert not [message for message in again.received if message.get("code") == "EVENTS_LOST"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
