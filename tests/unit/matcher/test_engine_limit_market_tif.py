"""Engine scenarios: price-time priority, limit orders and their time in force, post-only, market orders.

Each test arranges a fixed book, acts once, then checks the whole L2, the orders, the
balances of every account involved, the public update and the engine invariants.
Standard market: price 10000 = 100.00 USDT, 1 lot = 100 BTC units, notional = price x lots.
"""

from __future__ import annotations

import pytest

from common.types import Liquidity, RejectCode, StpMode
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    DAVE,
    EXPIRED,
    FILLED,
    FOK,
    FUNDS_BTC,
    FUNDS_USDT,
    IOC,
    NEW,
    PAIR,
    PARTIALLY_FILLED,
    SELL,
    Exchange,
    funded,
    state,
    trade_id,
    wallet,
)

TAKER = int(Liquidity.TAKER)
MAKER = int(Liquidity.MAKER)


@pytest.fixture
def ex() -> Exchange:
    return funded()


# ---------------------------------------------------------------- price-time priority


def test_limit_buy_sweeps_better_prices_first_then_oldest_first_within_a_price(ex):
    a1 = ex.limit(ALICE, SELL, 10_100, 3)
    b1 = ex.limit(BOB, SELL, 10_000, 2)
    c1 = ex.limit(CAROL, SELL, 10_000, 4)
    a2 = ex.limit(ALICE, SELL, 10_200, 5)
    d1 = ex.limit(DAVE, BUY, 9_900, 1)
    seq = ex.market.seq

    taker = ex.limit(DAVE, BUY, 10_100, 7)

    assert ex.depth() == ([(9_900, 1)], [(10_100, 2), (10_200, 5)])
    assert state(taker) == (FILLED, 7, 0)
    assert state(b1) == (FILLED, 2, 0)
    assert state(c1) == (FILLED, 4, 0)
    assert state(a1) == (PARTIALLY_FILLED, 1, 2)
    assert state(a2) == (NEW, 0, 5)
    assert state(d1) == (NEW, 0, 1)
    assert ex.balances(ALICE, BOB, CAROL, DAVE) == {
        ALICE: wallet(btc_delta=-100, btc_locked=700, usdt_delta=10_100),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_delta=-400, usdt_delta=40_000),
        DAVE: wallet(btc_delta=700, usdt_delta=-70_100, usdt_locked=9_900),
    }
    ts = ex.ts
    assert ex.public() == [
        (
            PAIR, seq + 1, ts, [], [(10_000, 0), (10_100, 2)],
            [(trade_id(1), 10_000, 2, BUY, ts), (trade_id(2), 10_000, 4, BUY, ts), (trade_id(3), 10_100, 1, BUY, ts)],
            None,
        )
    ]
    assert ex.private()[DAVE][4] == [
        (taker.order_id, trade_id(1), 10_000, 2, 0, "BTC", TAKER),
        (taker.order_id, trade_id(2), 10_000, 4, 0, "BTC", TAKER),
        (taker.order_id, trade_id(3), 10_100, 1, 0, "BTC", TAKER),
    ]
    assert ex.private()[CAROL][4] == [(c1.order_id, trade_id(2), 10_000, 4, 0, "USDT", MAKER)]
    ex.check()


def test_limit_sell_trades_at_each_makers_price_not_its_own(ex):
    b1 = ex.limit(BOB, BUY, 10_000, 2)
    c1 = ex.limit(CAROL, BUY, 9_900, 3)
    seq = ex.market.seq

    taker = ex.limit(ALICE, SELL, 9_800, 4)

    assert ex.depth() == ([(9_900, 1)], [])
    assert state(taker) == (FILLED, 4, 0)
    assert state(b1) == (FILLED, 2, 0)
    assert state(c1) == (PARTIALLY_FILLED, 2, 1)
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=-400, usdt_delta=20_000 + 19_800),
        BOB: wallet(btc_delta=200, usdt_delta=-20_000),
        CAROL: wallet(btc_delta=200, usdt_delta=-19_800, usdt_locked=9_900),
    }
    ts = ex.ts
    assert ex.public() == [
        (PAIR, seq + 1, ts, [(10_000, 0), (9_900, 1)], [],
         [(trade_id(1), 10_000, 2, SELL, ts), (trade_id(2), 9_900, 2, SELL, ts)], None)
    ]
    ex.check()


def test_new_orders_queue_behind_older_ones_at_the_same_price(ex):
    first = ex.limit(ALICE, BUY, 10_000, 1)
    second = ex.limit(BOB, BUY, 10_000, 2)
    third = ex.limit(ALICE, BUY, 10_000, 3)
    assert ex.queue(BUY, 10_000) == [first.order_id, second.order_id, third.order_id]

    taker = ex.limit(CAROL, SELL, 10_000, 2)

    assert ex.queue(BUY, 10_000) == [second.order_id, third.order_id]
    assert ex.depth() == ([(10_000, 4)], [])
    assert (state(first), state(second), state(third), state(taker)) == (
        (FILLED, 1, 0), (PARTIALLY_FILLED, 1, 1), (NEW, 0, 3), (FILLED, 2, 0),
    )
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=100, usdt_delta=-10_000, usdt_locked=30_000),
        BOB: wallet(btc_delta=100, usdt_delta=-10_000, usdt_locked=10_000),
        CAROL: wallet(btc_delta=-200, usdt_delta=20_000),
    }
    ex.check()


def test_gtc_remainder_rests_partially_filled_with_only_its_remainder_locked(ex):
    maker = ex.limit(BOB, SELL, 10_000, 2)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_100, 5)

    assert ex.depth() == ([(10_100, 3)], [])
    assert state(taker) == (PARTIALLY_FILLED, 2, 3)
    assert state(maker) == (FILLED, 2, 0)
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=200, usdt_delta=-20_000, usdt_locked=30_300),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
    }
    ts = ex.ts
    assert ex.public() == [(PAIR, seq + 1, ts, [(10_100, 3)], [(10_000, 0)], [(trade_id(1), 10_000, 2, BUY, ts)], None)]
    assert ex.engine.orders[taker.order_id] is taker
    ex.check()


# ---------------------------------------------------------------- IOC and FOK


def test_ioc_fills_what_it_can_and_the_rest_expires_with_its_lock_released(ex):
    maker = ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(CAROL, SELL, 10_200, 4)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_100, 5, tif=IOC)

    assert ex.depth() == ([], [(10_200, 4)])
    assert state(taker) == (EXPIRED, 2, 0)
    assert state(maker) == (FILLED, 2, 0)
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=200, usdt_delta=-20_000),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_locked=400),
    }
    ts = ex.ts
    assert ex.public() == [(PAIR, seq + 1, ts, [], [(10_000, 0)], [(trade_id(1), 10_000, 2, BUY, ts)], None)]
    assert taker.order_id not in ex.engine.orders
    ex.check()


def test_ioc_that_cannot_trade_expires_and_publishes_nothing(ex):
    ex.limit(BOB, SELL, 10_200, 4)
    seq = ex.market.seq

    taker = ex.limit(ALICE, SELL, 10_100, 5, tif=IOC)
    taker_buy = ex.limit(ALICE, BUY, 10_100, 5, tif=IOC)

    assert ex.depth() == ([], [(10_200, 4)])
    assert state(taker) == (EXPIRED, 0, 0)
    assert state(taker_buy) == (EXPIRED, 0, 0)
    assert ex.balances(ALICE, BOB) == {ALICE: wallet(), BOB: wallet(btc_locked=400)}
    assert ex.public() == [] and ex.market.seq == seq
    private = ex.private()[ALICE]
    assert [order[0] for order in private[3]] == [taker_buy.order_id]
    ex.check()


def test_fok_fills_entirely_across_levels(ex):
    b1 = ex.limit(BOB, SELL, 10_000, 2)
    c1 = ex.limit(CAROL, SELL, 10_100, 3)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_100, 4, tif=FOK)

    assert ex.depth() == ([], [(10_100, 1)])
    assert (state(taker), state(b1), state(c1)) == ((FILLED, 4, 0), (FILLED, 2, 0), (PARTIALLY_FILLED, 2, 1))
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=400, usdt_delta=-40_200),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_delta=-200, btc_locked=100, usdt_delta=20_200),
    }
    ts = ex.ts
    assert ex.public() == [
        (PAIR, seq + 1, ts, [], [(10_000, 0), (10_100, 1)],
         [(trade_id(1), 10_000, 2, BUY, ts), (trade_id(2), 10_100, 2, BUY, ts)], None)
    ]
    ex.check()


@pytest.mark.parametrize(
    "side, price, quantity",
    [
        (BUY, 10_200, 6),  # more than the whole side
        (BUY, 10_100, 6),  # only 5 lots up to 10100
        (BUY, 10_000, 3),  # its limit leaves only 2 lots
        (SELL, 9_900, 6),
        (SELL, 9_950, 2),
    ],
)
def test_fok_that_cannot_fill_entirely_expires_with_the_book_unchanged(ex, side, price, quantity):
    ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(CAROL, SELL, 10_100, 3)
    ex.limit(BOB, BUY, 9_900, 1)
    ex.limit(CAROL, BUY, 9_950, 1)
    depth, seq = ex.depth(), ex.market.seq
    before = ex.balances(ALICE, BOB, CAROL)

    taker = ex.limit(ALICE, side, price, quantity, tif=FOK)

    assert state(taker) == (EXPIRED, 0, 0)
    assert ex.depth() == depth
    assert ex.balances(ALICE, BOB, CAROL) == before
    assert ex.public() == [] and ex.market.seq == seq and ex.engine.trade_counter == 0
    ex.check()


# Own ALICE 2@10000 at the front, BOB 3@10000 behind it, BOB 2@10100; ALICE FOK-buys 3 @ 10100.
@pytest.mark.parametrize(
    "stp, taker_state, own_state, depth",
    [
        # Own maker expired, the 3 lots come from BOB: the FOK fills.
        (StpMode.EXPIRE_MAKER, (FILLED, 3, 0), (EXPIRED, 0, 0), ([], [(10_100, 2)])),
        # The taker would stop at its own order: it cannot fill entirely, so nothing happens.
        (StpMode.EXPIRE_TAKER, (EXPIRED, 0, 0), (NEW, 0, 2), ([], [(10_000, 5), (10_100, 2)])),
        (StpMode.EXPIRE_BOTH, (EXPIRED, 0, 0), (NEW, 0, 2), ([], [(10_000, 5), (10_100, 2)])),
        (StpMode.DECREMENT, (EXPIRED, 0, 0), (NEW, 0, 2), ([], [(10_000, 5), (10_100, 2)])),
        # Self-trade allowed: 2 lots against itself, 1 from BOB.
        (StpMode.NONE, (FILLED, 3, 0), (FILLED, 2, 0), ([], [(10_000, 2), (10_100, 2)])),
    ],
)
def test_fok_blocked_by_own_orders_follows_the_takers_stp_mode(ex, stp, taker_state, own_state, depth):
    own = ex.limit(ALICE, SELL, 10_000, 2, stp=StpMode.NONE)
    ex.limit(BOB, SELL, 10_000, 3)
    ex.limit(BOB, SELL, 10_100, 2)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_100, 3, tif=FOK, stp=stp)

    assert state(taker) == taker_state
    assert state(own) == own_state
    assert ex.depth() == depth
    bought_from_bob = {StpMode.EXPIRE_MAKER: 3, StpMode.NONE: 1}.get(stp, 0)
    assert ex.balance(BOB, "BTC") == (FUNDS_BTC - 500, 500 - 100 * bought_from_bob)
    assert ex.balance(BOB, "USDT") == (FUNDS_USDT + 10_000 * bought_from_bob, 0)
    own_locked = 200 if own_state[0] == NEW else 0
    assert ex.balance(ALICE, "BTC") == (FUNDS_BTC - own_locked + 100 * bought_from_bob, own_locked)
    assert ex.balance(ALICE, "USDT") == (FUNDS_USDT - 10_000 * bought_from_bob, 0)
    if taker_state[0] == EXPIRED:
        assert ex.public() == [] and ex.market.seq == seq
    else:
        assert [update[1] for update in ex.public()] == [seq + 1]
    ex.check()


def test_fok_with_own_orders_behind_enough_liquidity_fills_under_every_stp_mode():
    for stp in StpMode:
        ex = funded()
        ex.limit(BOB, SELL, 10_000, 3)
        own = ex.limit(ALICE, SELL, 10_000, 2)
        taker = ex.limit(ALICE, BUY, 10_000, 3, tif=FOK, stp=stp)
        assert state(taker) == (FILLED, 3, 0), stp
        assert state(own) == (NEW, 0, 2), stp
        assert ex.depth() == ([], [(10_000, 2)]), stp
        ex.check()


# ---------------------------------------------------------------- post-only


def test_post_only_that_would_take_is_rejected_and_changes_nothing(ex):
    ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(BOB, BUY, 9_900, 2)
    reject = ex.assert_rejected_without_change(
        lambda: ex.place(ALICE, BUY, 10_000, 1, post_only=True), RejectCode.POST_ONLY_WOULD_TAKE
    )
    assert reject.message
    ex.assert_rejected_without_change(lambda: ex.place(ALICE, SELL, 9_900, 1, post_only=True), RejectCode.POST_ONLY_WOULD_TAKE)
    ex.assert_rejected_without_change(lambda: ex.place(ALICE, SELL, 9_000, 1, post_only=True), RejectCode.POST_ONLY_WOULD_TAKE)


def test_post_only_that_does_not_cross_rests_like_any_limit_order(ex):
    ex.limit(BOB, SELL, 10_000, 2)
    seq = ex.market.seq

    order = ex.limit(ALICE, BUY, 9_999, 3, post_only=True)

    assert state(order) == (NEW, 0, 3)
    assert ex.depth() == ([(9_999, 3)], [(10_000, 2)])
    assert ex.balances(ALICE) == {ALICE: wallet(usdt_locked=29_997)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(9_999, 3)], [], [], None)]
    ex.check()


# ---------------------------------------------------------------- market orders


@pytest.fixture
def asks(ex) -> Exchange:
    """BOB offers 2 @ 10000, CAROL 3 @ 10100."""
    ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(CAROL, SELL, 10_100, 3)
    return ex


def test_market_buy_by_quantity_takes_the_book_and_fills(asks):
    ex = asks
    seq = ex.market.seq

    taker = ex.market_order(ALICE, BUY, 4)

    assert state(taker) == (FILLED, 4, 0)
    assert ex.depth() == ([], [(10_100, 1)])
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=400, usdt_delta=-40_200),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_delta=-200, btc_locked=100, usdt_delta=20_200),
    }
    ts = ex.ts
    assert ex.public() == [
        (PAIR, seq + 1, ts, [], [(10_000, 0), (10_100, 1)],
         [(trade_id(1), 10_000, 2, BUY, ts), (trade_id(2), 10_100, 2, BUY, ts)], None)
    ]
    ex.check()


def test_market_buy_by_quantity_expires_when_the_book_runs_out(asks):
    ex = asks
    taker = ex.market_order(ALICE, BUY, 9)
    assert state(taker) == (EXPIRED, 5, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=500, usdt_delta=-50_300)}
    ex.check()


def test_market_buy_by_quote_quantity_that_spends_its_budget_exactly_is_filled(asks):
    ex = asks
    seq = ex.market.seq

    taker = ex.market_order(ALICE, BUY, quote_quantity=30_100)

    assert state(taker) == (FILLED, 3, 0)
    assert (taker.quantity, taker.filled_quote) == (3, 30_100)
    assert ex.depth() == ([], [(10_100, 2)])
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=300, usdt_delta=-30_100),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_delta=-100, btc_locked=200, usdt_delta=10_100),
    }
    ts = ex.ts
    assert ex.public() == [
        (PAIR, seq + 1, ts, [], [(10_000, 0), (10_100, 2)],
         [(trade_id(1), 10_000, 2, BUY, ts), (trade_id(2), 10_100, 1, BUY, ts)], None)
    ]
    ex.check()


def test_market_buy_by_quote_quantity_with_less_than_a_lot_left_is_filled_and_gets_the_change_back(asks):
    ex = asks
    taker = ex.market_order(ALICE, BUY, quote_quantity=35_000)
    # 2 @ 10000 + 1 @ 10100 = 30100; the 4900 left cannot buy a lot at 10100.
    assert state(taker) == (FILLED, 3, 0)
    assert ex.depth() == ([], [(10_100, 2)])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=300, usdt_delta=-30_100)}
    ex.check()


def test_market_buy_by_quote_quantity_expires_when_the_book_runs_out(asks):
    ex = asks
    taker = ex.market_order(ALICE, BUY, quote_quantity=100_000)
    assert state(taker) == (EXPIRED, 5, 0)
    assert taker.filled_quote == 50_300
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=500, usdt_delta=-50_300),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_delta=-300, usdt_delta=30_300),
    }
    ex.check()


def test_market_buy_never_trades_beyond_its_protection_price(asks):
    ex = asks
    seq = ex.market.seq

    taker = ex.market_order(ALICE, BUY, 4, protection=10_000)

    assert state(taker) == (EXPIRED, 2, 0)
    assert ex.depth() == ([], [(10_100, 3)])
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=200, usdt_delta=-20_000),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
        CAROL: wallet(btc_locked=300),
    }
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [], [(10_000, 0)], [(trade_id(1), 10_000, 2, BUY, ex.ts)], None)]
    ex.check()


def test_market_buy_by_quote_quantity_never_spends_beyond_its_budget_with_a_protection_price(ex):
    # Regression: with a protection price the budget was ignored and the whole level was bought.
    maker = ex.limit(BOB, SELL, 10_000, 5)

    taker = ex.market_order(ALICE, BUY, quote_quantity=15_000, protection=10_000)

    assert state(taker) == (FILLED, 1, 0)
    assert taker.filled_quote == 10_000
    assert state(maker) == (PARTIALLY_FILLED, 1, 4)
    assert ex.depth() == ([], [(10_000, 4)])
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=100, usdt_delta=-10_000),
        BOB: wallet(btc_delta=-100, btc_locked=400, usdt_delta=10_000),
    }
    ex.check()


def test_market_buy_by_quote_quantity_with_a_protection_price_stops_at_it(asks):
    ex = asks
    taker = ex.market_order(ALICE, BUY, quote_quantity=50_000, protection=10_000)
    assert state(taker) == (EXPIRED, 2, 0)
    assert ex.depth() == ([], [(10_100, 3)])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=200, usdt_delta=-20_000)}
    ex.check()


def test_market_buy_with_a_small_account_spends_only_what_it_has(ex):
    # The market buy locks the cost of its quantity against the book, so the account needs
    # exactly that much and not a unit of fee headroom.
    ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(BOB, SELL, 10_100, 1)
    ex.fund(9, usdt=30_100)
    taker = ex.market_order(9, BUY, 3)
    assert state(taker) == (FILLED, 3, 0)
    assert ex.balances(9)[9] == {"BTC": (300, 0), "USDT": (0, 0)}
    ex.check()


def test_market_sell_takes_bids_best_first_down_to_its_protection_price(ex):
    ex.limit(BOB, BUY, 10_000, 2)
    ex.limit(CAROL, BUY, 9_900, 3)
    seq = ex.market.seq

    taker = ex.market_order(ALICE, SELL, 4, protection=10_000)

    assert state(taker) == (EXPIRED, 2, 0)
    assert ex.depth() == ([(9_900, 3)], [])
    assert ex.balances(ALICE, BOB, CAROL) == {
        ALICE: wallet(btc_delta=-200, usdt_delta=20_000),
        BOB: wallet(btc_delta=200, usdt_delta=-20_000),
        CAROL: wallet(usdt_locked=29_700),
    }
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 0)], [], [(trade_id(1), 10_000, 2, SELL, ex.ts)], None)]
    ex.check()


def test_market_sell_without_protection_sweeps_and_fills(ex):
    ex.limit(BOB, BUY, 10_000, 2)
    ex.limit(CAROL, BUY, 9_900, 3)
    taker = ex.market_order(ALICE, SELL, 4)
    assert state(taker) == (FILLED, 4, 0)
    assert ex.depth() == ([(9_900, 1)], [])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=-400, usdt_delta=20_000 + 19_800)}
    ex.check()


def test_market_fok_fills_entirely_or_expires_with_the_book_unchanged(asks):
    ex = asks
    depth = ex.depth()
    expired = ex.market_order(ALICE, BUY, 6, tif=FOK)
    assert state(expired) == (EXPIRED, 0, 0)
    assert ex.depth() == depth and ex.public() == []
    assert ex.balances(ALICE) == {ALICE: wallet()}

    filled = ex.market_order(ALICE, BUY, 5, tif=FOK)
    assert state(filled) == (FILLED, 5, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=500, usdt_delta=-50_300)}
    ex.check()


def test_market_order_on_an_empty_side_expires_and_publishes_nothing(ex):
    seq = ex.market.seq
    for order in (ex.market_order(ALICE, BUY, 2), ex.market_order(ALICE, SELL, 2), ex.market_order(ALICE, BUY, quote_quantity=500)):
        assert state(order) == (EXPIRED, 0, 0)
        assert ex.public() == []
    assert ex.market.seq == seq
    assert ex.balances(ALICE) == {ALICE: wallet()}
    ex.check()


@pytest.mark.parametrize("tif", [IOC, FOK])
def test_market_buy_expires_own_asks_and_still_buys_what_the_rest_of_the_book_offers(ex, tif):
    # Regression: the lock was the cost of the book *including* the taker's own orders, which
    # expire_maker removes instead of buying, so the taker ran out of lock after 1 lot (and a
    # FOK ended partially filled).
    own = ex.limit(ALICE, SELL, 10_000, 1)
    bob = ex.limit(BOB, SELL, 10_100, 2)

    taker = ex.market_order(ALICE, BUY, 2, tif=tif)

    assert state(taker) == (FILLED, 2, 0)
    assert state(own) == (EXPIRED, 0, 0)
    assert state(bob) == (FILLED, 2, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=200, usdt_delta=-20_200),
        BOB: wallet(btc_delta=-200, usdt_delta=20_200),
    }
    ex.check()


# ---------------------------------------------------------------- ids


def test_order_and_trade_ids_are_unique_and_carry_the_shard_id():
    ex = funded(shard_id=7)
    orders = [ex.limit(ALICE, SELL, 10_000 + i, 1) for i in range(5)]
    orders.append(ex.limit(BOB, BUY, 10_010, 7, tif=IOC))
    trade_ids = [trade[0] for trade in ex.engine.public[0].trades]
    assert ex.place(BOB, BUY, 10_010, 0).code == RejectCode.INVALID_FIELD  # a reject takes no id
    orders.append(ex.limit(BOB, BUY, 9_000, 1))
    orders.append(ex.limit(CAROL, SELL, 8_000, 1))

    order_ids = [order.order_id for order in orders]
    trade_ids += [trade[0] for trade in ex.engine.public[0].trades]
    assert order_ids == [(n << 10) | 7 for n in range(1, 9)]
    assert trade_ids == [(n << 10) | 7 for n in range(1, 7)]
    assert all(order_id & 1023 == 7 for order_id in order_ids + trade_ids)
    ex.check()


def test_market_buy_by_quote_quantity_that_cannot_afford_the_next_lot_is_filled(ex):
    # The book still offers a lot, but the 250 left cannot buy it at 300: the budget is spent
    # as far as the book allows, like Binance's quoteOrderQty (FILLED). The engine compares the
    # leftover with the average price so far (100) and answers EXPIRED.
    ex.limit(BOB, SELL, 100, 1)
    ex.limit(CAROL, SELL, 300, 1)
    taker = ex.market_order(ALICE, BUY, quote_quantity=350)
    assert (taker.filled, taker.filled_quote) == (1, 100)
    assert state(taker) == (FILLED, 1, 0)
