"""Tests for matcher.snapshot: a restored engine continues exactly as the original would."""

from __future__ import annotations

import pytest

from common.types import RejectCode, StpMode
from matcher import snapshot
from matcher.book import Order
from matcher.engine import Engine, Reject
from tests.unit.matcher.engine_helpers import (
    BUY,
    GTC,
    LIMIT,
    SELL,
    Exchange,
    RandomFlow,
    flow_engine,
    outcome,
    run,
)


def restore(engine: Engine) -> Engine:
    """Encode to bytes and decode, as the server does."""
    return snapshot.decode(snapshot.encode(engine))


def drive(engine: Engine, flow: RandomFlow, commands: int) -> None:
    for _ in range(commands):
        flow.note(run(engine, flow.command(engine)))


def assert_json_safe(value, path="state") -> None:
    """Only exact str/int/bool/None/list/dict: no enums, tuples, floats or Step objects."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            assert type(key) is str, f"{path}: key {key!r} is not a str"
            assert_json_safe(item, f"{path}.{key}")
    elif kind is list:
        for index, item in enumerate(value):
            assert_json_safe(item, f"{path}[{index}]")
    else:
        assert kind in (str, int, bool, type(None)), f"{path} is a {kind.__name__}: {value!r}"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_restored_engine_continues_identically(seed):
    engine = flow_engine()
    flow = RandomFlow(seed)
    drive(engine, flow, 400)
    assert engine.orders, "the flow should leave resting orders to restore"

    state = snapshot.dump(engine)
    assert_json_safe(state)
    restored = restore(engine)
    assert snapshot.dump(restored) == state
    restored.check_invariants()

    # recent_closed is in the snapshot too: orders closed before it answer ORDER_NOT_OPEN
    # on both engines, so the flow keeps targeting them.
    for step in range(400):
        command = flow.command(engine)
        original_result = run(engine, command)
        expected = outcome(engine, original_result)
        actual = outcome(restored, run(restored, command))
        assert actual == expected, f"step {step}: {command}"
        flow.note(original_result)
    restored.check_invariants()
    assert snapshot.dump(restored) == snapshot.dump(engine)


def test_flow_exercises_trades_rejects_and_every_command():
    """Guard against the random flow degenerating into rejects only."""
    engine = flow_engine()
    flow = RandomFlow(7)
    names, trades, rejects = set(), 0, 0
    for _ in range(800):
        command = flow.command(engine)
        result = run(engine, command)
        flow.note(result)
        names.add(command[0])
        rejects += isinstance(result, Reject)
        trades += sum(len(update.trades) for update in engine.public)
    assert names == {"place", "amend", "cancel", "cancel_all", "deposit", "withdraw", "set_halted"}
    assert trades > 80
    assert 50 < rejects < 500


def test_snapshot_of_a_fresh_engine_round_trips():
    engine = Engine(shard_id=9, max_open_orders=7)
    restored = restore(engine)
    assert snapshot.dump(restored) == snapshot.dump(engine)
    assert (restored.shard_id, restored.max_open_orders) == (9, 7)


def test_restore_keeps_queue_priority_market_rules_and_halt():
    ex = Exchange(maker_fee_bps=-1, taker_fee_bps=4, min_quantity="2", min_notional="1.50", shard_id=3)
    for account in (1, 2):
        ex.fund(account, btc=10_000, usdt=10_000_000)
    first = ex.limit(1, BUY, 10_000, 5)
    second = ex.limit(2, BUY, 10_000, 4)
    third = ex.limit(1, BUY, 10_000, 3)
    ex.amend(1, first.order_id, quantity=9)  # raising the quantity sends it to the back
    ex.limit(2, SELL, 10_100, 6, client_order_id="ask-1")
    ex.engine.set_halted("BTC-USDT", True, ex.next_ts())

    restored = restore(ex.engine)

    market = restored.markets["BTC-USDT"]
    level = market.book.bids[-10_000]
    assert [order.order_id for order in level.orders()] == [second.order_id, third.order_id, first.order_id]
    assert market.book.depth() == ([(10_000, 16)], [(10_100, 6)])
    assert market.halted is True
    assert (market.min_quantity, market.min_notional, market.maker_fee_bps, market.taker_fee_bps) == (2, 150, -1, 4)
    assert (market.tick.text, market.lot.text, market.seq) == ("0.01", "1", ex.market.seq)
    assert restored.ledger.accounts[2].client_ids["ask-1"].price == 10_100
    # Restored orders carry real enums, so the wire encoders can call `.wire` on them.
    resting = restored.orders[first.order_id]
    assert (resting.side.wire, resting.order_type.wire, resting.time_in_force.wire, resting.stp.wire) == (
        "buy", "limit", "GTC", "expire_maker",
    )
    assert resting.status.wire == "NEW"


def test_restore_keeps_the_order_in_which_cancel_all_reports_orders():
    ex = Exchange()
    ex.fund(1, usdt=10_000_000)
    first = ex.limit(1, BUY, 9_000, 1)
    second = ex.limit(1, BUY, 9_500, 1)
    ex.amend(1, first.order_id, quantity=2)  # re-indexed behind `second`
    restored = restore(ex.engine)

    original = [order.order_id for order in ex.cancel_all(1)]
    after_restore = [order.order_id for order in restored.cancel_all(1, None, ex.ts)]
    assert original == after_restore == [second.order_id, first.order_id]


def test_restored_engine_hands_out_the_next_ids_and_seqs():
    ex = Exchange(shard_id=6)
    ex.fund(1, btc=1_000)
    ex.fund(2, usdt=1_000_000)
    ex.limit(1, SELL, 10_000, 5)
    restored = restore(ex.engine)
    expected = ex.limit(2, BUY, 10_000, 2)
    taker = restored.place(2, "BTC-USDT", BUY, LIMIT, GTC, 10_000, 2, None, False, StpMode.EXPIRE_MAKER, None, ex.ts)
    assert taker.order_id == expected.order_id and taker.order_id & 1023 == 6
    assert outcome(restored, taker) == outcome(ex.engine, expected)


def test_restored_engine_still_knows_recently_closed_orders():
    ex = Exchange()
    ex.fund(1, usdt=1_000_000)
    closed = ex.limit(1, BUY, 9_000, 1)
    ex.cancel(1, closed.order_id)
    restored = restore(ex.engine)
    assert restored.order(1, closed.order_id, None).status == closed.status
    reject = restored.cancel(1, closed.order_id, None, ex.next_ts())
    assert isinstance(reject, Reject) and reject.code == RejectCode.ORDER_NOT_OPEN


def test_order_fields_cover_every_order_slot_but_the_level():
    # A new Order slot must be added to the snapshot, or restored orders would lose it.
    assert set(snapshot.ORDER_FIELDS) == set(Order.__slots__) - {"level"}


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.5])
def test_load_refuses_unknown_versions(version):
    state = snapshot.dump(Engine())
    if version is None:
        del state["version"]
    else:
        state["version"] = version
    with pytest.raises(ValueError, match="version"):
        snapshot.load(state)


def test_load_refuses_open_order_ids_that_disagree_with_the_books():
    ex = Exchange()
    ex.fund(1, btc=1_000)
    ex.limit(1, SELL, 10_000, 5)
    state = snapshot.dump(ex.engine)
    state["open_order_ids"] = []
    with pytest.raises(ValueError, match="open_order_ids"):
        snapshot.load(state)


def test_load_refuses_an_order_listed_twice():
    ex = Exchange()
    ex.fund(1, btc=1_000)
    ex.limit(1, SELL, 10_000, 5)
    state = snapshot.dump(ex.engine)
    orders = state["markets"][0]["orders"]
    orders.append(dict(orders[0]))
    with pytest.raises(ValueError, match="twice"):
        snapshot.load(state)


def test_balances_beyond_64_bits_survive_a_snapshot():
    engine = Engine()
    engine.create_asset("ETH", 18)
    engine.create_market("ETH-USDT", "0.01", "0.0001", "0", "0", 0, 0, 1)
    huge = engine.assets["ETH"].parse("1000000")  # 10**24 units, beyond orjson's 64-bit integers
    engine.deposit(1, "ETH", huge, 2)
    restored = snapshot.decode(snapshot.encode(engine))
    assert restored.balances(1) == [("ETH", huge, 0)]
    restored.check_invariants()
