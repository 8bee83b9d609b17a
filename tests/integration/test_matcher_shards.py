"""Two matcher shards as two processes: market ownership and globally unique order ids."""

from __future__ import annotations

import pytest

from common.matcher_client import MatcherClient, MatcherError
from tests.integration.harness import wait_for_heartbeat

pytestmark = pytest.mark.integration

SHARD_MARKETS = {0: "BTC-USDT", 1: "ETH-USDT"}


@pytest.fixture
def shards(make_cluster):
    cluster = make_cluster(shards=[(shard_id, [pair]) for shard_id, pair in SHARD_MARKETS.items()])
    return {shard_id: cluster.start(shard_id) for shard_id in SHARD_MARKETS}


def code_of(client: MatcherClient, op: str, **fields) -> str:
    with pytest.raises(MatcherError) as caught:
        client.request(op, **fields)
    return caught.value.code


def test_a_shard_creates_only_the_markets_it_owns(shards):
    clients = {shard_id: process.client() for shard_id, process in shards.items()}
    for shard_id, client in clients.items():
        assert client.request("ping")["shard_id"] == shard_id
    assert code_of(clients[0], "create_market", pair="ETH-USDT", tick_size="0.01", lot_size="0.01") == "FORBIDDEN"
    assert code_of(clients[1], "create_market", pair="BTC-USDT", tick_size="0.01", lot_size="0.001") == "FORBIDDEN"
    for client in clients.values():
        assert code_of(client, "create_market", pair="SOL-USDT", tick_size="0.01", lot_size="0.01") == "FORBIDDEN"
    clients[0].request("create_market", pair="BTC-USDT", tick_size="0.01", lot_size="0.001")
    clients[1].request("create_market", pair="ETH-USDT", tick_size="0.01", lot_size="0.01")
    assert clients[0].request("ping")["markets"] == ["BTC-USDT"]
    assert clients[1].request("ping")["markets"] == ["ETH-USDT"]
    assert code_of(clients[0], "snapshot", pair="ETH-USDT") == "UNKNOWN_MARKET"
    # Each shard publishes its own markets on its own PUB.
    for shard_id, process in shards.items():
        pair = SHARD_MARKETS[shard_id]
        assert wait_for_heartbeat(process.subscriber("md."), pair)["pair"] == pair


def test_order_and_trade_ids_never_collide_across_shards(shards):
    order_ids: dict[int, list[int]] = {}
    trade_ids: dict[int, list[int]] = {}
    for shard_id, process in shards.items():
        pair = SHARD_MARKETS[shard_id]
        client = process.client()
        client.request("create_market", pair=pair, tick_size="0.01", lot_size="0.01")
        base, quote = pair.split("-")
        for account_id in (1, 2):
            client.request("deposit", account_id=account_id, asset=quote, amount="1000000")
            client.request("deposit", account_id=account_id, asset=base, amount="10000")
        pending = [
            client.send("place", account_id=1 + index % 2, pair=pair, side="buy" if index % 2 else "sell",
                        type="limit", price=f"{100 + index % 5}.00", quantity="0.10")
            for index in range(300)
        ]
        replies = [client.wait(request_id) for request_id in pending]
        assert all(reply["ok"] for reply in replies)
        order_ids[shard_id] = [reply["data"]["order_id"] for reply in replies]
        trade_ids[shard_id] = [fill["trade_id"] for reply in replies for fill in reply["data"]["fills"]]
    for shard_id in shards:
        assert len(set(order_ids[shard_id])) == 300
        assert {order_id & 1023 for order_id in order_ids[shard_id]} == {shard_id}
        assert trade_ids[shard_id] and {trade_id & 1023 for trade_id in trade_ids[shard_id]} == {shard_id}
    assert not set(order_ids[0]) & set(order_ids[1])
    assert not set(trade_ids[0]) & set(trade_ids[1])


def test_shards_keep_separate_journals_and_recover_independently(shards):
    clients = {shard_id: process.client() for shard_id, process in shards.items()}
    for shard_id, client in clients.items():
        client.request("create_market", pair=SHARD_MARKETS[shard_id], tick_size="0.01", lot_size="0.01")
    clients[1].request("deposit", account_id=1, asset="USDT", amount="10")
    shards[0].kill()
    assert clients[1].request("balances", account_id=1)[0]["total"] == "10.00000000"
    shards[0].start()
    assert shards[0].client().request("balances", account_id=1) == []
    assert shards[0].journal_dir != shards[1].journal_dir and shards[1].journal_segments()
