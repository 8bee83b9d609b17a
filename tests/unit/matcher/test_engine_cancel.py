"""Engine scenarios: cancel and cancel_all; lookups of closed, foreign and unknown orders."""

from __future__ import annotations

import pytest

from common.types import RejectCode
from matcher import snapshot
from matcher.engine import Reject
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CANCELED,
    CAROL,
    FILLED,
    FUNDS_USDT,
    IOC,
    NEW,
    PAIR,
    PARTIALLY_FILLED,
    SELL,
    Exchange,
    funded,
    state,
    wallet,
)

ETH = "ETH-USDT"


@pytest.fixture
def ex() -> Exchange:
    return funded()


def test_cancel_takes_the_order_off_the_book_and_releases_its_lock(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 3)
    other = ex.limit(BOB, BUY, 10_000, 2)
    ex.limit(ALICE, SELL, 10_200, 4)
    seq = ex.market.seq

    canceled = ex.cancel(ALICE, bid.order_id)

    assert canceled is bid and state(canceled) == (CANCELED, 0, 0)
    assert ex.depth() == ([(10_000, 2)], [(10_200, 4)])
    assert ex.queue(BUY, 10_000) == [other.order_id]
    assert ex.balances(ALICE, BOB) == {ALICE: wallet(btc_locked=400), BOB: wallet(usdt_locked=20_000)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 2)], [], [], None)]
    private = ex.private()
    assert list(private) == [ALICE]
    assert [order[0] for order in private[ALICE][3]] == [bid.order_id]
    assert private[ALICE][5] == [("USDT", FUNDS_USDT, 0)]
    assert ex.engine.open_orders(ALICE) == [ex.engine.orders[ex.queue(SELL, 10_200)[0]]]
    ex.check()


def test_cancel_of_a_partially_filled_order_keeps_what_filled(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 5)
    ex.limit(CAROL, SELL, 10_000, 2)
    seq = ex.market.seq

    canceled = ex.cancel(ALICE, bid.order_id)

    assert state(canceled) == (CANCELED, 2, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE, CAROL) == {
        ALICE: wallet(btc_delta=200, usdt_delta=-20_000),
        CAROL: wallet(btc_delta=-200, usdt_delta=20_000),
    }
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 0)], [], [], None)]
    ex.check()


def test_cancel_from_the_middle_of_a_level_keeps_the_others_in_order(ex):
    a = ex.limit(ALICE, SELL, 10_000, 1)
    b = ex.limit(BOB, SELL, 10_000, 1)
    c = ex.limit(CAROL, SELL, 10_000, 1)

    ex.cancel(BOB, b.order_id)

    assert ex.queue(SELL, 10_000) == [a.order_id, c.order_id]
    assert ex.depth() == ([], [(10_000, 2)])
    taker = ex.limit(BOB, BUY, 10_000, 1)
    assert (state(taker), state(a), state(c)) == ((FILLED, 1, 0), (FILLED, 1, 0), (NEW, 0, 1))
    ex.check()


def test_cancel_by_client_order_id(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 3, client_order_id="abc_1-X")
    canceled = ex.cancel(ALICE, client_order_id="abc_1-X")
    assert canceled.order_id == bid.order_id and state(canceled) == (CANCELED, 0, 0)
    assert ex.depth() == ([], [])
    assert ex.balances(ALICE) == {ALICE: wallet()}
    ex.check()


def test_cancel_of_a_closed_order_is_order_not_open_and_changes_nothing(ex):
    filled = ex.limit(ALICE, SELL, 10_000, 1)
    ex.limit(BOB, BUY, 10_000, 1)
    canceled = ex.limit(ALICE, BUY, 9_000, 1)
    ex.cancel(ALICE, canceled.order_id)
    expired = ex.limit(ALICE, BUY, 9_000, 1, tif=IOC)
    ex.limit(ALICE, BUY, 8_000, 1)  # something open, so "nothing changed" means something

    for order, status in ((filled, "FILLED"), (canceled, "CANCELED"), (expired, "EXPIRED")):
        reject = ex.assert_rejected_without_change(lambda: ex.cancel(ALICE, order.order_id), RejectCode.ORDER_NOT_OPEN)
        assert reject.details["status"] == status


def test_cancel_of_another_accounts_order_is_order_not_found_even_when_it_is_closed(ex):
    open_order = ex.limit(ALICE, BUY, 10_000, 1, client_order_id="alice-1")
    closed = ex.limit(ALICE, BUY, 9_000, 1)
    ex.cancel(ALICE, closed.order_id)
    for action in (
        lambda: ex.cancel(BOB, open_order.order_id),
        lambda: ex.cancel(BOB, closed.order_id),
        lambda: ex.cancel(BOB, client_order_id="alice-1"),
        lambda: ex.cancel(ALICE, 4242 << 10),
        lambda: ex.cancel(ALICE, client_order_id="never-used"),
        lambda: ex.cancel(77, open_order.order_id),  # an account that does not exist
    ):
        ex.assert_rejected_without_change(action, RejectCode.ORDER_NOT_FOUND)
    assert state(open_order) == (NEW, 0, 1)


@pytest.fixture
def two_markets(ex):
    """ALICE: BTC bid, BTC ask, ETH bid; BOB: a BTC bid."""
    assert not isinstance(ex.engine.create_market(ETH, "0.01", "1", "0", "0", 0, 0, ex.next_ts()), Reject)
    orders = {
        "btc_bid": ex.limit(ALICE, BUY, 10_000, 2),
        "eth_bid": ex.limit(ALICE, BUY, 2_000, 5, symbol=ETH),
        "btc_ask": ex.limit(ALICE, SELL, 10_500, 3),
        "bob_bid": ex.limit(BOB, BUY, 9_900, 1),
    }
    return ex, orders


def test_cancel_all_in_one_market_leaves_other_markets_and_accounts_alone(two_markets):
    ex, orders = two_markets
    eth = ex.engine.markets[ETH]
    seq, eth_seq = ex.market.seq, eth.seq

    canceled = ex.cancel_all(ALICE, PAIR)

    assert [order.order_id for order in canceled] == [orders["btc_bid"].order_id, orders["btc_ask"].order_id]
    assert all(state(order) == (CANCELED, 0, 0) for order in canceled)
    assert ex.depth() == ([(9_900, 1)], [])
    assert eth.book.depth() == ([(2_000, 5)], [])
    assert state(orders["eth_bid"]) == (NEW, 0, 5)
    assert ex.balances(ALICE, BOB) == {ALICE: wallet(usdt_locked=10_000), BOB: wallet(usdt_locked=9_900)}
    assert ex.public() == [(PAIR, seq + 1, ex.ts, [(10_000, 0)], [(10_500, 0)], [], None)]
    assert eth.seq == eth_seq
    assert list(ex.private()) == [ALICE]
    ex.check()


def test_cancel_all_without_a_market_cancels_everywhere_with_one_update_per_market(two_markets):
    ex, orders = two_markets
    eth = ex.engine.markets[ETH]
    seq, eth_seq = ex.market.seq, eth.seq

    canceled = ex.cancel_all(ALICE)

    assert sorted(order.order_id for order in canceled) == sorted(
        orders[name].order_id for name in ("btc_bid", "eth_bid", "btc_ask")
    )
    assert ex.depth() == ([(9_900, 1)], [])
    assert eth.book.depth() == ([], [])
    assert ex.balances(ALICE) == {ALICE: wallet()}
    assert sorted(ex.public()) == sorted([
        (PAIR, seq + 1, ex.ts, [(10_000, 0)], [(10_500, 0)], [], None),
        (ETH, eth_seq + 1, ex.ts, [(2_000, 0)], [], [], None),
    ])
    assert ex.engine.open_orders(ALICE) == []
    ex.check()


def test_cancel_all_with_nothing_open_returns_nothing_and_publishes_nothing(two_markets):
    ex, _ = two_markets
    seq = ex.market.seq
    assert ex.cancel_all(CAROL) == []  # funded, never traded
    assert ex.cancel_all(99) == []  # no such account
    assert ex.cancel_all(BOB, ETH) == []
    assert ex.public() == [] and ex.private() == {} and ex.market.seq == seq
    ex.check()


def test_cancel_all_in_an_unknown_market_is_rejected(two_markets):
    ex, _ = two_markets
    ex.assert_rejected_without_change(lambda: ex.cancel_all(ALICE, "NOPE-USDT"), RejectCode.UNKNOWN_MARKET)


def test_after_cancel_all_the_client_order_ids_are_free_again(ex):
    ex.limit(ALICE, BUY, 10_000, 1, client_order_id="a")
    ex.limit(ALICE, SELL, 11_000, 1, client_order_id="b")
    ex.cancel_all(ALICE)
    again = [ex.limit(ALICE, BUY, 10_000, 1, client_order_id=name) for name in ("a", "b")]
    assert [state(order) for order in again] == [(NEW, 0, 1), (NEW, 0, 1)]
    ex.check()


def test_cancel_reports_partially_filled_status_before_and_canceled_after(ex):
    bid = ex.limit(ALICE, BUY, 10_000, 4)
    ex.limit(BOB, SELL, 10_000, 1)
    assert ex.engine.order(ALICE, bid.order_id, None).status == PARTIALLY_FILLED
    ex.cancel(ALICE, bid.order_id)
    assert ex.engine.order(ALICE, bid.order_id, None).status == CANCELED
    assert ex.engine.order(BOB, bid.order_id, None) is None
    ex.check()


def test_a_closed_order_is_found_by_client_order_id_until_an_open_one_takes_the_id(ex):
    filled = ex.limit(ALICE, SELL, 10_000, 1, client_order_id="mine")
    ex.limit(BOB, BUY, 10_000, 1)
    assert ex.engine.order(ALICE, None, "mine") is filled and state(filled) == (FILLED, 1, 0)
    assert ex.engine.order(BOB, None, "mine") is None

    restored = snapshot.decode(snapshot.encode(ex.engine))
    assert restored.order(ALICE, None, "mine").order_id == filled.order_id

    reused = ex.limit(ALICE, BUY, 9_000, 1, client_order_id="mine")
    assert ex.engine.order(ALICE, None, "mine") is reused
    ex.cancel(ALICE, client_order_id="mine")
    assert ex.engine.order(ALICE, None, "mine") is reused  # the newest closed one
    ex.check()
