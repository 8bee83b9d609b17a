"""Public deltas and heartbeats, the clone pattern, and private account events over PUB/SUB."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from tests.integration.harness import (
    apply_levels,
    drain,
    receive,
    replica_from_snapshot,
    wait_for_heartbeat,
    wait_for_message,
    wait_private_ready,
)

pytestmark = pytest.mark.integration

BTC, ETH = "BTC-USDT", "ETH-USDT"


@pytest.fixture
def client(matcher):
    client = matcher.client()
    client.request("create_market", pair=BTC, tick_size="0.01", lot_size="0.001")
    for account_id in (1, 2, 3, 12):
        client.request("deposit", account_id=account_id, asset="USDT", amount="1000000")
        client.request("deposit", account_id=account_id, asset="BTC", amount="1000")
    return client


def updates_until(sub, pair: str, seq: int, timeout: float = 10.0) -> list[dict]:
    """Collect `pair`'s updates until the one with `seq` arrives."""
    seen: list[dict] = []
    wait_for_message(sub, lambda message: message["pair"] == pair and message["type"] == "update"
                     and message["seq"] >= seq, timeout, seen=seen, what=f"{pair} update seq {seq}")
    return [message for message in seen if message["type"] == "update" and message["pair"] == pair]


def test_deltas_are_gapless_absolute_and_carry_trades(matcher, client):
    sub = matcher.subscriber(f"md.{BTC}")
    heartbeat = wait_for_heartbeat(sub, BTC)
    start = client.request("snapshot", pair=BTC)["seq"]
    assert heartbeat["seq"] == start

    client.request("place", account_id=1, pair=BTC, side="sell", type="limit", price="100.00", quantity="1.000")
    client.request("place", account_id=1, pair=BTC, side="sell", type="limit", price="100.00", quantity="0.500")
    client.request("place", account_id=2, pair=BTC, side="buy", type="limit", price="99.00", quantity="2.000")
    taker = client.request("place", account_id=3, pair=BTC, side="buy", type="limit", price="100.00",
                           quantity="1.200")
    end = client.request("snapshot", pair=BTC)["seq"]
    assert end == start + 4
    updates = updates_until(sub, BTC, end)
    assert [update["seq"] for update in updates] == list(range(start + 1, end + 1))
    assert all(isinstance(update["ts"], int) and isinstance(update["journal_seq"], int) for update in updates)
    assert [(update["bids"], update["asks"]) for update in updates] == [
        ([], [["100.00", "1.000"]]),
        ([], [["100.00", "1.500"]]),  # absolute size of the level, not the increment
        ([["99.00", "2.000"]], []),
        ([], [["100.00", "0.300"]]),
    ]
    trades = updates[-1]["trades"]
    assert [(trade["price"], trade["quantity"], trade["taker_side"], trade["pair"]) for trade in trades] == [
        ("100.00", "1.000", "buy", BTC), ("100.00", "0.200", "buy", BTC)]
    assert [trade["trade_id"] for trade in trades] == [fill["trade_id"] for fill in taker["fills"]]
    assert all(update["trades"] == [] for update in updates[:-1])

    client.request("cancel_all", account_id=1)
    [cleared] = updates_until(sub, BTC, end + 1)
    assert cleared["asks"] == [["100.00", "0.000"]] and cleared["seq"] == end + 1

    # Idle again: heartbeats carry the current seq, and nothing else arrives.
    for _ in range(3):
        heartbeat = wait_for_message(sub, lambda message: True, timeout=5.0)
        assert heartbeat == {"type": "heartbeat", "pair": BTC, "seq": end + 1, "ts": heartbeat["ts"]}


def test_halt_and_resume_publish_the_status(matcher, client):
    sub = matcher.subscriber(f"md.{BTC}")
    start = wait_for_heartbeat(sub, BTC)["seq"]
    client.request("halt", pair=BTC)
    client.request("resume", pair=BTC)
    updates = updates_until(sub, BTC, start + 2)
    assert [(update["seq"], update["status"]) for update in updates] == [(start + 1, "halted"),
                                                                         (start + 2, "trading")]


def test_two_markets_have_independent_seqs(matcher, client):
    sub = matcher.subscriber("md.")
    created = client.request("create_market", pair=ETH, tick_size="0.01", lot_size="0.01")
    assert created["seq"] == 1
    wait_for_heartbeat(sub, ETH)
    wait_for_heartbeat(sub, BTC)
    btc_start = client.request("snapshot", pair=BTC)["seq"]
    eth_start = client.request("snapshot", pair=ETH)["seq"]
    for index in range(5):
        client.request("place", account_id=1, pair=BTC, side="buy", type="limit", price=f"{90 + index}.00",
                       quantity="0.001")
    client.request("place", account_id=1, pair=ETH, side="buy", type="limit", price="10.00", quantity="0.01")
    assert client.request("snapshot", pair=BTC)["seq"] == btc_start + 5
    assert client.request("snapshot", pair=ETH)["seq"] == eth_start + 1
    seen: list[dict] = []
    wait_for_message(sub, lambda m: m["type"] == "update" and m["pair"] == BTC and m["seq"] == btc_start + 5,
                     seen=seen)
    wait_for_message(sub, lambda m: m["type"] == "update" and m["pair"] == ETH and m["seq"] == eth_start + 1,
                     seen=seen)
    updates = [m for m in seen if m["type"] == "update"]
    assert [m["seq"] for m in updates if m["pair"] == BTC] == list(range(btc_start + 1, btc_start + 6))
    assert [m["seq"] for m in updates if m["pair"] == ETH] == [eth_start + 1]


def test_clone_replica_from_snapshot_plus_deltas_equals_a_later_snapshot(matcher, client):
    """zguide's clone pattern: subscribe, snapshot, apply newer deltas; the replica matches the matcher."""
    sub = matcher.subscriber(f"md.{BTC}")
    wait_for_heartbeat(sub, BTC)
    trader = matcher.client()
    rng = random.Random(20240601)
    # Some book before the snapshot, so the replica starts from something non-trivial.
    for index in range(20):
        trader.request("place", account_id=1 + index % 3, pair=BTC, side="buy" if index % 2 else "sell",
                       type="limit", price=f"{(95 if index % 2 else 105) + rng.randint(0, 4)}.00", quantity="0.050")
    snapshot = client.request("snapshot", pair=BTC)
    replica = replica_from_snapshot(snapshot)
    replica_seq = snapshot["seq"]
    trades = 0

    def apply(message: dict) -> None:
        nonlocal replica_seq, trades
        if message["type"] != "update" or message["seq"] <= snapshot["seq"]:
            return
        assert message["seq"] == replica_seq + 1, "gap in the delta stream"
        apply_levels(replica["bids"], message["bids"])
        apply_levels(replica["asks"], message["asks"])
        trades += len(message["trades"])
        replica_seq = message["seq"]

    open_ids: list[tuple[int, int]] = []
    pending = []
    for _ in range(400):
        account_id = rng.choice((1, 2, 3))
        roll = rng.random()
        if roll < 0.15 and open_ids:
            owner, order_id = open_ids.pop(rng.randrange(len(open_ids)))
            pending.append(trader.send("cancel", account_id=owner, order_id=order_id))
        elif roll < 0.22 and open_ids:
            owner, order_id = rng.choice(open_ids)
            pending.append(trader.send("amend", account_id=owner, order_id=order_id,
                                       price=f"{rng.randint(96, 104)}.{rng.choice(('00', '50'))}"))
        elif roll < 0.28:
            pending.append(trader.send("place", account_id=account_id, pair=BTC, side=rng.choice(("buy", "sell")),
                                       type="market", quantity=f"0.{rng.randint(1, 200):03d}"))
        else:
            side = rng.choice(("buy", "sell"))
            center = 99 if side == "buy" else 101
            pending.append(trader.send(
                "place", account_id=account_id, pair=BTC, side=side, type="limit",
                price=f"{center + rng.randint(-4, 4)}.{rng.choice(('00', '25', '50'))}",
                quantity=f"0.{rng.randint(1, 300):03d}", time_in_force=rng.choice(("GTC", "GTC", "GTC", "IOC"))))
        if len(pending) >= 25:
            for request_id in pending:
                reply = trader.wait(request_id)
                data = reply.get("data")
                if reply["ok"] and isinstance(data, dict) and data.get("status") in ("NEW", "PARTIALLY_FILLED"):
                    open_ids.append((data["account_id"], data["order_id"]))
            pending.clear()
            for message in drain(sub):
                apply(message)
    for request_id in pending:
        trader.wait(request_id)

    final = client.request("snapshot", pair=BTC)
    assert final["seq"] > snapshot["seq"] + 200
    def caught_up(message: dict) -> bool:
        apply(message)
        return replica_seq >= final["seq"]

    if replica_seq < final["seq"]:
        wait_for_message(sub, caught_up, what=f"the delta with seq {final['seq']}")
    assert replica_seq == final["seq"]
    assert replica == replica_from_snapshot(final)
    assert trades > 0
    bids, asks = sorted(replica["bids"]), sorted(replica["asks"])
    assert not bids or not asks or bids[-1] < asks[0], "crossed replica"


def test_private_events_are_per_account_gapless_and_isolated(matcher, client):
    one = matcher.subscriber(b"acct.1.", private=True)
    twelve = matcher.subscriber(b"acct.12.", private=True)
    wait_private_ready(one, client, 1, "USDT", "1")
    wait_private_ready(twelve, client, 12, "USDT", "1")

    client.request("place", account_id=12, pair=BTC, side="sell", type="limit", price="100.00", quantity="1.000")
    taker = client.request("place", account_id=1, pair=BTC, side="buy", type="limit", price="100.00",
                           quantity="0.400")
    client.request("cancel_all", account_id=12)
    client.request("deposit", account_id=1, asset="BTC", amount="1")

    events = []
    wait_for_message(one, lambda message: message["balances"] and message["balances"][0]["asset"] == "BTC"
                     and message["orders"] == [], seen=events, what="account 1's BTC deposit")
    assert {event["account_id"] for event in events} == {1}
    assert [event["seq"] for event in events] == list(range(events[0]["seq"], events[0]["seq"] + 2))
    fill_event = events[0]
    assert fill_event["type"] == "account" and isinstance(fill_event["journal_seq"], int)
    assert [order["order_id"] for order in fill_event["orders"]] == [taker["order_id"]]
    assert fill_event["orders"][0]["status"] == "FILLED"
    assert [(fill["quantity"], fill["liquidity"], fill["fee"]) for fill in fill_event["fills"]] == [
        ("0.400", "taker", "0.00000000")]
    assert {balance["asset"] for balance in fill_event["balances"]} == {"BTC", "USDT"}

    events = []
    wait_for_message(twelve, lambda message: message["orders"] and message["orders"][0]["status"] == "CANCELED",
                     seen=events, what="account 12's cancel")
    assert {event["account_id"] for event in events} == {12}
    assert [event["seq"] for event in events] == list(range(events[0]["seq"], events[0]["seq"] + 3))
    placed, filled, canceled = events
    assert placed["orders"][0]["status"] == "NEW" and placed["fills"] == []
    assert placed["balances"] == [{"asset": "BTC", "available": "999.00000000", "locked": "1.00000000",
                                   "total": "1000.00000000"}]
    assert filled["orders"][0]["status"] == "PARTIALLY_FILLED"
    assert filled["fills"][0]["liquidity"] == "maker"
    assert canceled["balances"] == [{"asset": "BTC", "available": "999.60000000", "locked": "0.00000000",
                                     "total": "999.60000000"}]
    assert receive(one, 0.0) is None and receive(twelve, 0.0) is None


def test_private_seq_is_gapless_under_a_burst(matcher, client):
    sub = matcher.subscriber(b"acct.2.", private=True)
    wait_private_ready(sub, client, 2, "USDT", "1")
    first = client.request("deposit", account_id=2, asset="USDT", amount="1")
    ids = [client.send("place", account_id=2, pair=BTC, side="buy", type="limit", price="50.00", quantity="0.001")
           for _ in range(200)]
    for request_id in ids:
        assert client.wait(request_id)["ok"]
    events = []
    wait_for_message(sub, lambda message: len(events) == 201, seen=events, what="201 events of account 2")
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + 201))
    assert Decimal(events[0]["balances"][0]["total"]) == Decimal(first["total"])
