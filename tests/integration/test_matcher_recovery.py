"""Durability: graceful restarts, kill -9 under load, a torn journal tail, snapshot plus replay."""

from __future__ import annotations

import random
import struct
from decimal import Decimal

import pytest

from common.matcher_client import MatcherClient
from tests.integration.harness import (
    MatcherProcess,
    account_state,
    book_state,
    drain,
    total_balances,
    wait_for_heartbeat,
    wait_for_message,
)
from tests.polling import poll_until

pytestmark = pytest.mark.integration

BTC, ETH = "BTC-USDT", "ETH-USDT"
ACCOUNTS = (1, 2, 3, 4, 5)
DEPOSITS = {"USDT": Decimal("1000000"), "BTC": Decimal("1000"), "ETH": Decimal("10000")}


def set_up(client: MatcherClient) -> None:
    """Two fee-free markets (so the fee account holds nothing) and five funded accounts."""
    client.request("create_market", pair=BTC, tick_size="0.01", lot_size="0.001")
    client.request("create_market", pair=ETH, tick_size="0.01", lot_size="0.01")
    for account_id in ACCOUNTS:
        for asset, amount in DEPOSITS.items():
            client.request("deposit", account_id=account_id, asset=asset, amount=str(amount))


def full_state(client: MatcherClient) -> tuple:
    markets = client.request("markets")
    return book_state(client, [BTC, ETH]), account_state(client, ACCOUNTS), markets


def random_order(rng: random.Random) -> dict:
    """A limit order near 100 that crosses about half the time, or an occasional IOC or market order."""
    side = rng.choice(("buy", "sell"))
    pair = BTC if rng.random() < 0.8 else ETH
    roll = rng.random()
    fields = {"account_id": rng.choice(ACCOUNTS), "pair": pair, "side": side}
    quantity = f"0.{rng.randint(1, 99):02d}0"
    if roll < 0.08:
        return {**fields, "type": "market", "quantity": quantity}
    center = 100 + (1 if side == "buy" else -1) * rng.choice((-3, -2, -1, 0, 1, 2))
    return {**fields, "type": "limit", "price": f"{center}.{rng.choice(('00', '50'))}", "quantity": quantity,
            "time_in_force": "IOC" if roll < 0.2 else "GTC"}


def assert_ledger_consistent(client: MatcherClient) -> None:
    """Balances sum to the deposits, and every account's locks equal what its open orders need."""
    totals = total_balances(client, ACCOUNTS)
    assert totals == {asset: amount * len(ACCOUNTS) for asset, amount in DEPOSITS.items()}
    for account_id in ACCOUNTS:
        needed: dict[str, Decimal] = {}
        for order in client.request("open_orders", account_id=account_id):
            base, quote = order["pair"].split("-")
            remaining = Decimal(order["remaining_quantity"])
            if order["side"] == "buy":  # no fees, so no fee headroom
                needed[quote] = needed.get(quote, Decimal(0)) + remaining * Decimal(order["price"])
            else:
                needed[base] = needed.get(base, Decimal(0)) + remaining
        for balance in client.request("balances", account_id=account_id):
            assert Decimal(balance["available"]) >= 0
            assert Decimal(balance["locked"]) == needed.get(balance["asset"], Decimal(0)), (account_id, balance)


def assert_seq_continues(matcher: MatcherProcess, client: MatcherClient, pair: str = BTC) -> None:
    """The first update after a restart has seq = the snapshot's seq + 1."""
    sub = matcher.subscriber(f"md.{pair}")
    heartbeat = wait_for_heartbeat(sub, pair)
    snapshot = client.request("snapshot", pair=pair)
    assert heartbeat["seq"] == snapshot["seq"]
    client.request("place", account_id=1, pair=pair, side="buy", type="limit", price="1.00", quantity="0.010")
    update = wait_for_message(sub, lambda message: message["type"] == "update", what=f"an update of {pair}")
    assert update["seq"] == snapshot["seq"] + 1


def test_graceful_restart_keeps_books_balances_seqs_and_ids(make_cluster):
    matcher = make_cluster().start()
    client = matcher.client()
    set_up(client)
    rng = random.Random(7)
    order_ids = []
    for _ in range(150):
        reply = client.wait(client.send("place", **random_order(rng)))
        if reply["ok"]:
            order_ids.append(reply["data"]["order_id"])
    before = full_state(client)
    assert before[0][BTC]["bids"] and before[0][BTC]["asks"]

    matcher.restart()
    client = matcher.client()
    assert full_state(client) == before
    assert_ledger_consistent(client)
    order = client.request("place", account_id=2, pair=ETH, side="sell", type="limit", price="500.00",
                           quantity="0.10")
    assert order["order_id"] > max(order_ids)
    assert order["order_id"] & 1023 == 0
    assert_seq_continues(matcher, client)


@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_kill_9_under_a_stream_loses_no_acknowledged_order(make_cluster, fsync):
    matcher = make_cluster(fsync=fsync).start()
    setup_client = matcher.client()
    set_up(setup_client)
    sub = matcher.subscriber(f"md.{BTC}")
    start_seq = wait_for_heartbeat(sub, BTC)["seq"]

    rng = random.Random(1234)
    # Enough orders that the kill lands mid-stream even when this process is descheduled
    # while the matcher runs on (on a loaded machine 2,000 were once all done first).
    orders = [random_order(rng) for _ in range(10_000)]
    stream = matcher.client()
    sent = {stream.send("place", **order): order for order in orders}
    acked: dict[int, dict] = {}
    kill_after = 300
    while len(acked) < kill_after:
        reply = stream.receive(timeout=10.0)
        acked[reply["id"]] = reply
    matcher.kill()
    # Whatever reached our socket before the crash was acknowledged too: collect it all.
    while stream.socket.poll(200):
        reply = stream.receive()
        acked[reply["id"]] = reply
    assert len(acked) < len(orders), "the matcher finished the stream before it was killed"
    published = [message for message in drain(sub) if message["type"] == "update"]

    matcher.start()
    client = matcher.client()
    placed = 0
    for request_id, reply in acked.items():
        if not reply["ok"]:
            assert reply["error"]["code"] in ("INSUFFICIENT_BALANCE",), reply
            continue
        placed += 1
        before = reply["data"]
        assert before["account_id"] == sent[request_id]["account_id"]
        now = client.request("get_order", account_id=before["account_id"], order_id=before["order_id"])
        assert Decimal(now["filled_quantity"]) >= Decimal(before["filled_quantity"])
        if before["status"] in ("FILLED", "EXPIRED", "CANCELED"):
            assert (now["status"], now["filled_quantity"]) == (before["status"], before["filled_quantity"])
        else:
            assert now["status"] in ("NEW", "PARTIALLY_FILLED", "FILLED", "EXPIRED", "CANCELED"), now
    assert placed > kill_after // 2
    assert_ledger_consistent(client)

    # Every update published before the crash was gapless, and the recovered seq is not behind it.
    seqs = [message["seq"] for message in published]
    assert seqs == list(range(start_seq + 1, start_seq + 1 + len(seqs)))
    recovered_seq = client.request("snapshot", pair=BTC)["seq"]
    assert recovered_seq >= (seqs[-1] if seqs else start_seq)
    newest = max(reply["data"]["order_id"] for reply in acked.values() if reply["ok"])
    order = client.request("place", account_id=3, pair=BTC, side="sell", type="limit", price="900.00",
                           quantity="0.001")
    assert order["order_id"] > newest
    assert_seq_continues(matcher, client)


TORN_TAILS = {
    "random bytes": bytes(random.Random(5).randrange(256) for _ in range(333)),
    "a short header": b"\x07\x00\x00",
    "a header with a huge length": struct.pack("<IQI", 0xFFFFFFF0, 10**6, 0) + b"\x00" * 40,
    "a plausible header and half a payload": None,  # built from the journal's next seq
}


@pytest.mark.parametrize("tail", list(TORN_TAILS))
def test_torn_journal_tail_is_truncated_on_restart(make_cluster, tail):
    matcher = make_cluster().start()
    client = matcher.client()
    set_up(client)
    rng = random.Random(99)
    for _ in range(60):
        assert client.wait(client.send("place", **random_order(rng)))["ok"]
    before = full_state(client)
    assert matcher.terminate() == 0

    [segment] = matcher.journal_segments()
    garbage = TORN_TAILS[tail]
    if garbage is None:
        next_seq = 2 + len(ACCOUNTS) * len(DEPOSITS) + 60 + 1
        garbage = struct.pack("<IQI", 200, next_seq, 0xDEADBEEF) + b'{"ts":1,"cmd":{"op":'
    size = segment.stat().st_size
    with open(segment, "ab") as handle:
        handle.write(garbage)

    matcher.start()
    assert "truncating torn tail" in matcher.log_text()
    assert segment.stat().st_size == size
    client = matcher.client()
    assert full_state(client) == before
    assert_ledger_consistent(client)
    # The journal goes on after the cut: new commands survive another restart.
    client.request("place", account_id=4, pair=BTC, side="sell", type="limit", price="777.00", quantity="0.001")
    after = full_state(client)
    matcher.restart()
    assert full_state(matcher.client()) == after


@pytest.mark.parametrize("graceful", [True, False], ids=["sigterm", "sigkill"])
def test_snapshot_plus_replay_restores_the_same_state(make_cluster, graceful):
    matcher = make_cluster(journal={"snapshot_every_commands": 50}).start()
    client = matcher.client()
    set_up(client)
    rng = random.Random(4242)
    open_orders: list[tuple[int, int]] = []
    commands = 0
    while commands < 500:
        roll = rng.random()
        if roll < 0.15 and open_orders:
            account_id, order_id = open_orders.pop(rng.randrange(len(open_orders)))
            reply = client.wait(client.send("cancel", account_id=account_id, order_id=order_id))
        elif roll < 0.25 and open_orders:
            account_id, order_id = rng.choice(open_orders)
            reply = client.wait(client.send("amend", account_id=account_id, order_id=order_id,
                                            quantity=f"0.{rng.randint(1, 9)}00"))
        elif roll < 0.3:
            reply = client.wait(client.send("deposit", account_id=rng.choice(ACCOUNTS), asset="USDT", amount="1"))
        else:
            reply = client.wait(client.send("place", **random_order(rng)))
        if reply["ok"]:
            commands += 1
            data = reply["data"]
            if data.get("status") in ("NEW", "PARTIALLY_FILLED") and "order_id" in data:
                open_orders.append((data["account_id"], data["order_id"]))
    # The loop writes a snapshot every 50 journaled commands; two are kept.
    poll_until(lambda: len(matcher.journal_snapshots()) >= 2, what="two snapshots")
    deposits = client.request("balances", account_id=1)
    before = full_state(client)

    matcher.restart(graceful=graceful)
    log = matcher.log_text().split("---- start 2")[1]
    assert "loaded snapshot" in log
    client = matcher.client()
    assert full_state(client) == before
    assert client.request("balances", account_id=1) == deposits
    bigger = client.request("place", account_id=5, pair=BTC, side="sell", type="limit", price="999.00",
                            quantity="0.001")
    assert bigger["order_id"] > max(order_id for _, order_id in open_orders)
    assert_seq_continues(matcher, client, ETH)


def test_an_order_closed_before_a_snapshot_is_still_known_after_a_restart(make_cluster):
    matcher = make_cluster(journal={"snapshot_every_commands": 5}).start()
    client = matcher.client()
    set_up(client)
    maker = client.request("place", account_id=1, pair=BTC, side="sell", type="limit", price="100.00",
                           quantity="0.100")
    taker = client.request("place", account_id=2, pair=BTC, side="buy", type="limit", price="100.00",
                           quantity="0.100")
    assert taker["status"] == "FILLED"
    filled_at = client.request("ping")["journal_seq"]
    for _ in range(5):  # make the next snapshot due
        client.request("deposit", account_id=3, asset="USDT", amount="1")
    poll_until(lambda: any(int(path.stem.split("-")[1]) >= filled_at for path in matcher.journal_snapshots()),
               what=f"a snapshot at or after journal seq {filled_at}")
    matcher.restart()
    client = matcher.client()
    assert client.request("get_order", account_id=1, order_id=maker["order_id"])["status"] == "FILLED"
    assert client.request("get_order", account_id=2, order_id=taker["order_id"])["status"] == "FILLED"
