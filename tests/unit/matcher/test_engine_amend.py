"""Engine scenarios: amend (PATCH) — queue priority, crossing amends, and amends that must change nothing.

SPEC 3: `quantity` is the new total quantity; lowering it at the same price keeps the queue
position; raising it or changing the price loses it; a crossing new price trades as a taker;
a new quantity <= filled, or any invalid amend, is rejected and leaves the order as it was.
"""

from __future__ import annotations

import pytest

from common.types import Liquidity, RejectCode
from matcher.engine import Reject
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CANCELED,
    CAROL,
    FILLED,
    FUNDS_USDT,
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


@pytest.fixture
def level(ex):
    """ALICE 5, BOB 3, ALICE 2 bid at 10000, in that order."""
    a = ex.limit(ALICE, BUY, 10_000, 5)
    b = ex.limit(BOB, BUY, 10_000, 3)
    c = ex.limit(ALICE, BUY, 10_000, 2)
    return a, b, c


def test_lowering_the_quantity_at_the_same_price_keeps_the_queue_position(ex, level):
    a, b, c = level
    seq = ex.market.seq

    amended = ex.amend(ALICE, a.order_id, quantity=3)

    assert amended.order_id == a.order_id
    assert (amended.quantity, amended.price) == (3, 10_000)
    assert state(amended) == (NEW, 0, 3)
    assert ex.queue(BUY, 10_000) == [a.order_id, b.order_id, c.order_id]
    assert ex.depth() == ([(10_000, 8)], [])
    assert ex.balances(ALICE, BOB) == {ALICE: wallet(usdt_locked=50_000), BOB: wallet(usdt_locked=30_000)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 8)], [], [], None)]
    ex.check()

    # The front of the queue is still ALICE's amended order.
    ex.limit(CAROL, SELL, 10_000, 3)
    assert state(ex.engine.order(ALICE, a.order_id, None)) == (FILLED, 3, 0)
    assert state(b) == (NEW, 0, 3)
    ex.check()


def test_raising_the_quantity_sends_the_order_to_the_back_of_its_level(ex, level):
    a, b, c = level
    seq = ex.market.seq

    amended = ex.amend(ALICE, a.order_id, quantity=7)

    assert amended.order_id == a.order_id
    assert state(amended) == (NEW, 0, 7)
    assert ex.queue(BUY, 10_000) == [b.order_id, c.order_id, a.order_id]
    assert ex.depth() == ([(10_000, 12)], [])
    assert ex.balances(ALICE, BOB) == {ALICE: wallet(usdt_locked=90_000), BOB: wallet(usdt_locked=30_000)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 12)], [], [], None)]
    ex.check()

    ex.limit(CAROL, SELL, 10_000, 4)
    assert (state(b), state(c), state(amended)) == ((FILLED, 3, 0), (PARTIALLY_FILLED, 1, 1), (NEW, 0, 7))
    ex.check()


def test_changing_the_price_loses_priority_even_when_moving_back(ex, level):
    a, b, c = level
    d = ex.limit(CAROL, BUY, 9_900, 4)
    seq = ex.market.seq

    moved = ex.amend(ALICE, a.order_id, price=9_900)

    assert state(moved) == (NEW, 0, 5) and moved.price == 9_900
    assert ex.queue(BUY, 10_000) == [b.order_id, c.order_id]
    assert ex.queue(BUY, 9_900) == [d.order_id, a.order_id]
    assert ex.depth() == ([(10_000, 5), (9_900, 9)], [])
    assert ex.balances(ALICE, CAROL) == {ALICE: wallet(usdt_locked=49_500 + 20_000), CAROL: wallet(usdt_locked=39_600)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 5), (9_900, 9)], [], [], None)]
    ex.check()

    back = ex.amend(ALICE, a.order_id, price=10_000)
    assert ex.queue(BUY, 10_000) == [b.order_id, c.order_id, a.order_id]
    assert ex.depth() == ([(10_000, 10), (9_900, 4)], [])
    assert back.price == 10_000
    assert ex.balances(ALICE) == {ALICE: wallet(usdt_locked=70_000)}
    ex.check()


def test_changing_price_and_quantity_together(ex, level):
    a, b, c = level
    amended = ex.amend(ALICE, a.order_id, quantity=1, price=10_050)
    assert state(amended) == (NEW, 0, 1) and amended.price == 10_050
    assert ex.depth() == ([(10_050, 1), (10_000, 5)], [])
    assert ex.queue(BUY, 10_000) == [b.order_id, c.order_id]
    assert ex.balances(ALICE) == {ALICE: wallet(usdt_locked=10_050 + 20_000)}
    ex.check()


def test_a_crossing_amend_trades_as_taker_and_pays_the_taker_fee():
    ex = funded(maker_fee_bps=10, taker_fee_bps=20)
    ask = ex.limit(BOB, SELL, 10_100, 2)
    bid = ex.limit(ALICE, BUY, 10_000, 3)
    # Resting buy: 30000 notional + 60 (20 bps) taker-fee headroom.
    assert ex.balance(ALICE, "USDT") == (FUNDS_USDT - 30_060, 30_060)
    seq = ex.market.seq

    amended = ex.amend(ALICE, bid.order_id, price=10_100)

    assert state(amended) == (PARTIALLY_FILLED, 2, 1)
    assert (amended.quantity, amended.price) == (3, 10_100)
    assert state(ask) == (FILLED, 2, 0)
    assert ex.depth() == ([(10_100, 1)], [])
    # ALICE pays 20 bps of 200 BTC units (0.4 -> 1) in BTC; BOB pays 10 bps of 20200 (20.2 -> 21) in USDT.
    # ALICE's remaining lot locks 10100 + 21 headroom.
    assert ex.balances(ALICE, BOB, 0) == {
        ALICE: wallet(btc_delta=199, usdt_delta=-20_200, usdt_locked=10_121),
        BOB: wallet(btc_delta=-200, usdt_delta=20_200 - 21),
        0: {"BTC": (1, 0), "USDT": (21, 0)},
    }
    ts = ex.ts
    assert ex.public() == [
        (PAIR, seq + 1, ts, [(10_100, 1), (10_000, 0)], [(10_100, 0)], [(trade_id(1), 10_100, 2, BUY, ts)], None)
    ]
    private = ex.private()
    assert private[ALICE][4] == [(bid.order_id, trade_id(1), 10_100, 2, 1, "BTC", int(Liquidity.TAKER))]
    assert private[BOB][4] == [(ask.order_id, trade_id(1), 10_100, 2, 21, "USDT", int(Liquidity.MAKER))]
    ex.check()


def test_a_crossing_amend_that_fills_entirely_closes_the_order_and_frees_its_client_order_id(ex):
    ex.limit(BOB, SELL, 10_100, 5)
    bid = ex.limit(ALICE, BUY, 10_000, 3, client_order_id="mine")

    amended = ex.amend(ALICE, bid.order_id, price=10_200)

    assert state(amended) == (FILLED, 3, 0)
    assert ex.depth() == ([], [(10_100, 2)])
    assert ex.engine.open_orders(ALICE) == []
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=300, usdt_delta=-30_300)}
    again = ex.limit(ALICE, BUY, 9_000, 1, client_order_id="mine")
    assert state(again) == (NEW, 0, 1)
    ex.check()


def test_amending_a_partially_filled_order_counts_the_new_total_including_what_filled(ex):
    a = ex.limit(ALICE, BUY, 10_000, 5)
    b = ex.limit(BOB, BUY, 10_000, 2)
    ex.limit(CAROL, SELL, 10_000, 2)
    assert state(a) == (PARTIALLY_FILLED, 2, 3)

    amended = ex.amend(ALICE, a.order_id, quantity=4)

    assert state(amended) == (PARTIALLY_FILLED, 2, 2) and amended.quantity == 4
    assert ex.queue(BUY, 10_000) == [a.order_id, b.order_id]
    assert ex.depth() == ([(10_000, 4)], [])
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=200, usdt_delta=-20_000, usdt_locked=20_000)}
    ex.check()

    raised = ex.amend(ALICE, a.order_id, quantity=6)
    assert state(raised) == (PARTIALLY_FILLED, 2, 4)
    assert ex.queue(BUY, 10_000) == [b.order_id, a.order_id]
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=200, usdt_delta=-20_000, usdt_locked=40_000)}
    ex.check()


@pytest.mark.parametrize("quantity", [2, 1, 0, -3])
def test_a_new_quantity_at_or_below_the_filled_quantity_is_rejected_and_changes_nothing(ex, quantity):
    a = ex.limit(ALICE, BUY, 10_000, 5)
    ex.limit(CAROL, SELL, 10_000, 2)
    ex.assert_rejected_without_change(lambda: ex.amend(ALICE, a.order_id, quantity=quantity), RejectCode.AMEND_REJECTED)
    assert state(ex.engine.orders[a.order_id]) == (PARTIALLY_FILLED, 2, 3)


def test_amending_a_sell_locks_and_releases_base(ex):
    ask = ex.limit(ALICE, SELL, 10_000, 5)
    ex.amend(ALICE, ask.order_id, quantity=8)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=800)}
    ex.amend(ALICE, ask.order_id, quantity=2)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=200)}
    ex.amend(ALICE, ask.order_id, price=12_000)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=200)}
    assert ex.depth() == ([], [(12_000, 2)])
    ex.check()


def test_an_amended_order_keeps_its_client_order_id(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 2, client_order_id="keep-me")
    amended = ex.amend(ALICE, bid.order_id, quantity=4)
    assert amended.client_order_id == "keep-me"
    duplicate = ex.place(ALICE, BUY, 9_000, 1, client_order_id="keep-me")
    assert isinstance(duplicate, Reject) and duplicate.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    canceled = ex.cancel(ALICE, client_order_id="keep-me")
    assert canceled.order_id == bid.order_id and state(canceled) == (CANCELED, 0, 0)
    assert ex.balances(ALICE) == {ALICE: wallet()}
    ex.check()


def test_amend_is_reported_in_the_owners_private_update(ex, level):
    a, _, _ = level
    seq = ex.engine.ledger.accounts[ALICE].seq
    amended = ex.amend(ALICE, a.order_id, quantity=4)
    private = ex.private()
    assert list(private) == [ALICE]
    account_id, private_seq, _, orders, fills, balances = private[ALICE]
    assert (private_seq, [order[0] for order in orders], fills) == (seq + 1, [amended.order_id], [])
    assert balances == [("USDT", FUNDS_USDT - 60_000, 60_000)]


# ---------------------------------------------------------------- invalid amends change nothing


@pytest.fixture
def strict() -> tuple[Exchange, dict]:
    """min quantity 2 lots, min notional 100.00 USDT; ALICE has a bid, a post-only bid and a closed order."""
    ex = funded(min_quantity="2", min_notional="100")
    orders = {
        "bid": ex.limit(ALICE, BUY, 10_000, 3),
        "post_only": ex.limit(ALICE, BUY, 9_900, 2, post_only=True),
        "ask": ex.limit(BOB, SELL, 10_100, 2),
        "closed": ex.limit(ALICE, BUY, 9_000, 2),
    }
    ex.cancel(ALICE, orders["closed"].order_id)
    return ex, orders


@pytest.mark.parametrize(
    "account, target, quantity, price, code",
    [
        (ALICE, "bid", None, None, RejectCode.AMEND_REJECTED),  # nothing to change
        (ALICE, "bid", 3, None, RejectCode.AMEND_REJECTED),  # the same quantity
        (ALICE, "bid", None, 10_000, RejectCode.AMEND_REJECTED),  # the same price
        (ALICE, "bid", 3, 10_000, RejectCode.AMEND_REJECTED),
        (ALICE, "bid", 0, None, RejectCode.AMEND_REJECTED),
        (ALICE, "bid", -1, None, RejectCode.AMEND_REJECTED),
        (ALICE, "bid", None, 0, RejectCode.INVALID_FIELD),
        (ALICE, "bid", 2, -10_000, RejectCode.INVALID_FIELD),
        (ALICE, "bid", 1, None, RejectCode.BELOW_MIN_QUANTITY),
        (ALICE, "bid", None, 3_000, RejectCode.BELOW_MIN_NOTIONAL),  # 3 x 3000 = 90.00 USDT
        (ALICE, "post_only", None, 10_100, RejectCode.POST_ONLY_WOULD_TAKE),
        (ALICE, "post_only", 3, 10_200, RejectCode.POST_ONLY_WOULD_TAKE),
        (ALICE, "bid", 10**6, None, RejectCode.INSUFFICIENT_BALANCE),
        (ALICE, "bid", None, 10**9, RejectCode.INSUFFICIENT_BALANCE),
        (BOB, "bid", 2, None, RejectCode.ORDER_NOT_FOUND),  # someone else's order
        (ALICE, "ask", None, 10_000, RejectCode.ORDER_NOT_FOUND),
        (ALICE, "closed", 3, None, RejectCode.ORDER_NOT_OPEN),
        (ALICE, None, 3, None, RejectCode.ORDER_NOT_FOUND),  # no such order id
    ],
)
def test_an_invalid_amend_leaves_order_balances_book_and_seqs_exactly_as_they_were(strict, account, target, quantity, price, code):
    ex, orders = strict
    order_id = orders[target].order_id if target is not None else 999 << 10
    queue = ex.queue(BUY, 10_000)
    ex.assert_rejected_without_change(lambda: ex.amend(account, order_id, quantity=quantity, price=price), code)
    assert ex.queue(BUY, 10_000) == queue


def test_an_amend_by_client_order_id_works_like_one_by_order_id(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 3, client_order_id="by-name")
    amended = ex.engine.amend(ALICE, None, "by-name", 2, None, ex.next_ts())
    assert amended.order_id == bid.order_id and state(amended) == (NEW, 0, 2)
    missing = ex.engine.amend(BOB, None, "by-name", 2, None, ex.next_ts())
    assert isinstance(missing, Reject) and missing.code == RejectCode.ORDER_NOT_FOUND
    assert ex.balances(ALICE) == {ALICE: wallet(usdt_locked=20_000)}
    ex.check()
