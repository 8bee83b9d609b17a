"""Engine scenarios: self-trade prevention — all five modes, and the taker's mode decides."""

from __future__ import annotations

import pytest

from common.types import StpMode
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    EXPIRED,
    FILLED,
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


@pytest.fixture
def ex() -> Exchange:
    return funded()


def other_mode(mode: StpMode) -> StpMode:
    """A different mode for the maker, so only the taker's mode can explain the outcome."""
    return StpMode((mode + 1) % len(StpMode))


# ALICE's own ask 2 @ 10000 is at the front, BOB's 3 @ 10000 behind it; ALICE buys 4 @ 10000 GTC.
CASES = {
    # Own maker expired, 3 bought from BOB, the last lot rests.
    StpMode.EXPIRE_MAKER: dict(
        taker=(PARTIALLY_FILLED, 3, 1), own=(EXPIRED, 0, 0), depth=([(10_000, 1)], []),
        alice=wallet(btc_delta=300, usdt_delta=-30_000, usdt_locked=10_000),
        bob=wallet(btc_delta=-300, usdt_delta=30_000),
        bids=[(10_000, 1)], asks=[(10_000, 0)], trades=[(10_000, 3)],
    ),
    # The taker expires on meeting its own order; nothing else changes, so nothing is published.
    StpMode.EXPIRE_TAKER: dict(
        taker=(EXPIRED, 0, 0), own=(NEW, 0, 2), depth=([], [(10_000, 5)]),
        alice=wallet(btc_locked=200), bob=wallet(btc_locked=300),
        bids=None, asks=None, trades=[],
    ),
    StpMode.EXPIRE_BOTH: dict(
        taker=(EXPIRED, 0, 0), own=(EXPIRED, 0, 0), depth=([], [(10_000, 3)]),
        alice=wallet(), bob=wallet(btc_locked=300),
        bids=[], asks=[(10_000, 3)], trades=[],
    ),
    # Both shrink by the overlap (2) without trading: the own ask is emptied (EXPIRED) and the
    # taker, now 2 lots, fills them from BOB (FILLED).
    StpMode.DECREMENT: dict(
        taker=(FILLED, 2, 0), own=(EXPIRED, 0, 0), depth=([], [(10_000, 1)]),
        alice=wallet(btc_delta=200, usdt_delta=-20_000),
        bob=wallet(btc_delta=-200, btc_locked=100, usdt_delta=20_000),
        bids=[], asks=[(10_000, 1)], trades=[(10_000, 2)],
    ),
    # Self-trade allowed: 2 lots with itself, 2 with BOB.
    StpMode.NONE: dict(
        taker=(FILLED, 4, 0), own=(FILLED, 2, 0), depth=([], [(10_000, 1)]),
        alice=wallet(btc_delta=200, usdt_delta=-20_000),
        bob=wallet(btc_delta=-200, btc_locked=100, usdt_delta=20_000),
        bids=[], asks=[(10_000, 1)], trades=[(10_000, 2), (10_000, 2)],
    ),
}


@pytest.mark.parametrize("mode", list(StpMode))
def test_the_takers_stp_mode_decides_what_happens_when_it_meets_its_own_order(ex, mode):
    case = CASES[mode]
    own = ex.limit(ALICE, SELL, 10_000, 2, stp=other_mode(mode))
    bob = ex.limit(BOB, SELL, 10_000, 3)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_000, 4, stp=mode)

    assert state(taker) == case["taker"]
    assert state(own) == case["own"]
    assert ex.depth() == case["depth"]
    assert ex.balances(ALICE, BOB) == {ALICE: case["alice"], BOB: case["bob"]}
    ts = ex.ts
    if case["bids"] is None:
        assert ex.public() == [] and ex.market.seq == seq
    else:
        trades = [(trade_id(n), price, lots, BUY, ts) for n, (price, lots) in enumerate(case["trades"], start=1)]
        assert ex.public() == [(PAIR, seq + 1, ts, case["bids"], case["asks"], trades, None)]
    reported = {order[0]: order for order in ex.private()[ALICE][3]}
    assert taker.order_id in reported
    if case["own"][0] == EXPIRED:
        assert own.order_id in reported
    assert state(bob)[1] == sum(lots for _, lots in case["trades"]) - (2 if mode == StpMode.NONE else 0)
    ex.check()


def test_decrement_with_a_larger_maker_shrinks_it_in_place_and_expires_the_taker(ex):
    own = ex.limit(ALICE, SELL, 10_000, 5)
    behind = ex.limit(BOB, SELL, 10_000, 1)
    seq = ex.market.seq

    taker = ex.limit(ALICE, BUY, 10_000, 3, stp=StpMode.DECREMENT)

    assert state(taker) == (EXPIRED, 0, 0)
    assert state(own) == (NEW, 0, 2)
    assert ex.queue(SELL, 10_000) == [own.order_id, behind.order_id]  # still at the front
    assert ex.depth() == ([], [(10_000, 3)])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=200)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [], [(10_000, 3)], [], None)]
    ex.check()


def test_decrement_of_a_resting_bid_releases_its_quote_lock(ex):
    own = ex.limit(ALICE, BUY, 10_000, 5)
    taker = ex.limit(ALICE, SELL, 10_000, 2, stp=StpMode.DECREMENT)
    assert state(taker) == (EXPIRED, 0, 0)
    assert state(own) == (NEW, 0, 3)
    assert ex.depth() == ([(10_000, 3)], [])
    assert ex.balances(ALICE) == {ALICE: wallet(usdt_locked=30_000)}
    ex.check()


def test_stp_applies_only_when_the_taker_reaches_its_own_order(ex):
    ex.limit(BOB, SELL, 10_000, 2)
    own = ex.limit(ALICE, SELL, 10_100, 2)
    ex.limit(CAROL, SELL, 10_200, 2)

    taker = ex.limit(ALICE, BUY, 10_200, 5, stp=StpMode.EXPIRE_TAKER)

    # 2 bought from BOB, then its own order stops it: the GTC remainder does not rest.
    assert state(taker) == (EXPIRED, 2, 0)
    assert state(own) == (NEW, 0, 2)
    assert ex.depth() == ([], [(10_100, 2), (10_200, 2)])
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=200, btc_locked=200, usdt_delta=-20_000),
        BOB: wallet(btc_delta=-200, usdt_delta=20_000),
    }
    ex.check()


def test_expire_maker_on_a_sell_taker_clears_own_bids_then_rests(ex):
    own = ex.limit(ALICE, BUY, 10_000, 2)
    taker = ex.limit(ALICE, SELL, 9_900, 2)  # default stp: expire_maker
    assert state(own) == (EXPIRED, 0, 0)
    assert state(taker) == (NEW, 0, 2)
    assert ex.depth() == ([], [(9_900, 2)])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=200)}
    ex.check()


def test_expire_maker_skips_every_own_order_in_the_way(ex):
    own = [ex.limit(ALICE, SELL, price, 1) for price in (10_000, 10_000, 10_100)]
    bob = ex.limit(BOB, SELL, 10_100, 2)
    taker = ex.limit(ALICE, BUY, 10_100, 2)
    assert [state(order)[0] for order in own] == [EXPIRED] * 3
    assert state(bob) == (FILLED, 2, 0)
    assert state(taker) == (FILLED, 2, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=200, usdt_delta=-20_200)}
    ex.check()


def test_different_accounts_always_trade_whatever_their_stp_mode(ex):
    for mode in StpMode:
        maker = ex.limit(BOB, SELL, 10_000, 1, stp=mode)
        taker = ex.limit(ALICE, BUY, 10_000, 1, stp=mode)
        assert (state(maker), state(taker)) == ((FILLED, 1, 0), (FILLED, 1, 0)), mode
    ex.check()


def test_a_crossing_amend_meets_its_own_order_under_its_own_stp_mode(ex):
    own_ask = ex.limit(ALICE, SELL, 10_000, 1)
    bid = ex.limit(ALICE, BUY, 9_900, 2, stp=StpMode.EXPIRE_TAKER)

    amended = ex.amend(ALICE, bid.order_id, price=10_000)

    assert state(amended) == (EXPIRED, 0, 0)
    assert state(own_ask) == (NEW, 0, 1)
    assert ex.depth() == ([], [(10_000, 1)])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=100)}
    assert ex.engine.open_orders(ALICE) == [own_ask]
    ex.check()


def test_after_decrement_quantity_minus_filled_is_what_rests_on_the_book(ex):
    own = ex.limit(ALICE, SELL, 10_000, 5)
    ex.limit(ALICE, BUY, 10_000, 3, stp=StpMode.DECREMENT)
    assert ex.depth() == ([], [(10_000, 2)])
    # The order shape users see has quantity and filled_quantity only.
    assert own.quantity - own.filled == 2
