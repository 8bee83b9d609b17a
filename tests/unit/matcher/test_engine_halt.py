"""Engine scenarios: halting and resuming a market (SPEC 3: new orders and amends refused, cancels work)."""

from __future__ import annotations

import pytest

from common.types import RejectCode
from matcher.engine import Reject
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CANCELED,
    FILLED,
    FOK,
    IOC,
    PAIR,
    SELL,
    Exchange,
    funded,
    state,
    trade_id,
    wallet,
)


@pytest.fixture
def halted() -> tuple[Exchange, dict]:
    ex = funded()
    orders = {"bid": ex.limit(ALICE, BUY, 10_000, 3), "ask": ex.limit(BOB, SELL, 10_100, 2), "ask2": ex.limit(BOB, SELL, 10_200, 1)}
    seq = ex.market.seq
    assert ex.engine.set_halted(PAIR, True, ex.next_ts()) is ex.market
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [], [], [], True)]
    assert ex.private() == {}
    return ex, orders


@pytest.mark.parametrize(
    "action",
    [
        lambda ex, orders: ex.place(ALICE, BUY, 10_100, 1),
        lambda ex, orders: ex.place(ALICE, BUY, 9_000, 1),
        lambda ex, orders: ex.place(ALICE, BUY, 9_000, 1, post_only=True),
        lambda ex, orders: ex.place(ALICE, BUY, 10_100, 1, tif=IOC),
        lambda ex, orders: ex.place(ALICE, BUY, 10_100, 1, tif=FOK),
        lambda ex, orders: ex.market_order(ALICE, BUY, 1),
        lambda ex, orders: ex.market_order(ALICE, BUY, quote_quantity=50_000),
        lambda ex, orders: ex.market_order(BOB, SELL, 1),
        lambda ex, orders: ex.amend(ALICE, orders["bid"].order_id, quantity=2),
        lambda ex, orders: ex.amend(ALICE, orders["bid"].order_id, price=10_100),
    ],
)
def test_a_halted_market_refuses_new_orders_and_amends_and_changes_nothing(halted, action):
    ex, orders = halted
    reject = ex.assert_rejected_without_change(lambda: action(ex, orders), RejectCode.MARKET_HALTED)
    assert reject.details == {"pair": PAIR}


def test_cancels_still_work_on_a_halted_market(halted):
    ex, orders = halted
    seq = ex.market.seq

    canceled = ex.cancel(ALICE, orders["bid"].order_id)

    assert state(canceled) == (CANCELED, 0, 0)
    assert ex.depth() == ([], [(10_100, 2), (10_200, 1)])
    assert ex.balances(ALICE) == {ALICE: wallet()}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 0)], [], [], None)]

    canceled_all = ex.cancel_all(BOB, PAIR)
    assert [state(order) for order in canceled_all] == [(CANCELED, 0, 0)] * 2
    assert ex.depth() == ([], [])
    assert ex.balances(BOB) == {BOB: wallet()}
    assert ex.public() == [(PAIR, seq + 2, ex.ts, [], [(10_100, 0), (10_200, 0)], [], None)]
    ex.check()


def test_resuming_publishes_the_status_and_accepts_orders_again(halted):
    ex, orders = halted
    seq = ex.market.seq

    assert ex.engine.set_halted(PAIR, False, ex.next_ts()) is ex.market
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [], [], [], False)]

    taker = ex.limit(ALICE, BUY, 10_100, 2)
    assert state(taker) == (FILLED, 2, 0)
    assert ex.depth() == ([(10_000, 3)], [(10_200, 1)])
    assert ex.public() == [(PAIR, seq + 2, ex.ts, [], [(10_100, 0)], [(trade_id(1), 10_100, 2, BUY, ex.ts)], None)]
    amended = ex.amend(ALICE, orders["bid"].order_id, quantity=1)
    assert amended.remaining == 1
    ex.check()


def test_halting_one_market_leaves_the_others_trading(halted):
    ex, _ = halted
    assert not isinstance(ex.engine.create_market("ETH-USDT", "0.01", "1", "0", "0", 0, 0, ex.next_ts()), Reject)
    order = ex.limit(ALICE, BUY, 2_000, 1, symbol="ETH-USDT")
    assert order.market == "ETH-USDT"
    assert ex.engine.markets["ETH-USDT"].halted is False
    ex.check()


def test_halting_an_unknown_market_is_rejected():
    ex = Exchange()
    ex.assert_rejected_without_change(lambda: ex.engine.set_halted("NOPE-USDT", True, ex.next_ts()), RejectCode.UNKNOWN_MARKET)
