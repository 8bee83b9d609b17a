"""Engine scenarios: every way to reject a new order, and proof that a reject changes nothing.

"Changes nothing" is checked with the whole snapshot (books, orders, balances, market and
account sequence numbers, id counters) before and after, plus empty public/private updates.
"""

from __future__ import annotations

import pytest

from common.types import RejectCode
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    CAROL,
    DAVE,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    MARKET,
    NEW,
    SELL,
    Exchange,
    funded,
    state,
)


@pytest.fixture
def strict() -> Exchange:
    """min quantity 2 lots, min notional 100.00 USDT; a book to cross; ALICE's open order "dup"."""
    ex = funded(min_quantity="2", min_notional="100")
    ex.limit(BOB, SELL, 10_100, 5)
    ex.limit(CAROL, BUY, 9_900, 5)
    ex.limit(ALICE, BUY, 9_000, 2, client_order_id="dup")
    return ex


LIMIT_CASES = [
    # (account, side, price, quantity, options, code, field)
    (ALICE, BUY, 10_000, 2, {"symbol": "NOPE-USDT"}, RejectCode.UNKNOWN_MARKET, None),
    (0, BUY, 10_000, 2, {}, RejectCode.FORBIDDEN, None),
    (ALICE, BUY, None, 2, {}, RejectCode.INVALID_FIELD, "price"),
    (ALICE, BUY, 0, 2, {}, RejectCode.INVALID_FIELD, "price"),
    (ALICE, SELL, -10_000, 2, {}, RejectCode.INVALID_FIELD, "price"),
    (ALICE, BUY, 10_000, None, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, BUY, 10_000, 0, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, SELL, 10_000, -2, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, BUY, 10_000, 2, {"quote_quantity": 20_000}, RejectCode.INVALID_FIELD, "quote_quantity"),
    (ALICE, BUY, 10_000, 1, {}, RejectCode.BELOW_MIN_QUANTITY, None),
    (ALICE, SELL, 10_200, 1, {"tif": IOC}, RejectCode.BELOW_MIN_QUANTITY, None),
    (ALICE, BUY, 4_999, 2, {}, RejectCode.BELOW_MIN_NOTIONAL, None),  # 99.98 USDT
    (ALICE, BUY, 10_000, 10**6, {}, RejectCode.INSUFFICIENT_BALANCE, None),
    (ALICE, SELL, 10_000, 10**6, {}, RejectCode.INSUFFICIENT_BALANCE, None),
    (ALICE, BUY, 10_000, 10**6, {"tif": FOK}, RejectCode.INSUFFICIENT_BALANCE, None),
    (55, BUY, 10_000, 2, {}, RejectCode.INSUFFICIENT_BALANCE, None),  # an account never seen
    (ALICE, BUY, 10_100, 2, {"post_only": True}, RejectCode.POST_ONLY_WOULD_TAKE, None),
    (ALICE, SELL, 9_900, 2, {"post_only": True}, RejectCode.POST_ONLY_WOULD_TAKE, None),
    (ALICE, BUY, 9_500, 2, {"client_order_id": "dup"}, RejectCode.DUPLICATE_CLIENT_ORDER_ID, None),
    (ALICE, SELL, 10_100, 2, {"client_order_id": "dup", "tif": IOC}, RejectCode.DUPLICATE_CLIENT_ORDER_ID, None),
]

MARKET_CASES = [
    # (account, side, protection price, quantity, quote quantity, tif, options, code, field)
    (ALICE, BUY, None, 2, None, GTC, {}, RejectCode.INVALID_FIELD, "time_in_force"),
    (ALICE, BUY, None, 2, 30_000, IOC, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, BUY, None, None, None, IOC, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, SELL, None, None, 30_000, IOC, {}, RejectCode.INVALID_FIELD, "quote_quantity"),
    (ALICE, BUY, None, None, 30_000, FOK, {}, RejectCode.INVALID_FIELD, "time_in_force"),
    (ALICE, BUY, None, None, 0, IOC, {}, RejectCode.INVALID_FIELD, "quote_quantity"),
    (ALICE, BUY, None, 0, None, IOC, {}, RejectCode.INVALID_FIELD, "quantity"),
    (ALICE, SELL, 0, 2, None, IOC, {}, RejectCode.INVALID_FIELD, "price"),
    (ALICE, BUY, None, 2, None, IOC, {"post_only": True}, RejectCode.INVALID_FIELD, "post_only"),
    (ALICE, SELL, None, 1, None, IOC, {}, RejectCode.BELOW_MIN_QUANTITY, None),
    (ALICE, BUY, None, None, 9_999, IOC, {}, RejectCode.BELOW_MIN_NOTIONAL, None),
    (ALICE, SELL, 4_000, 2, None, IOC, {}, RejectCode.BELOW_MIN_NOTIONAL, None),  # protection x quantity
    (ALICE, BUY, None, None, 10**12, IOC, {}, RejectCode.INSUFFICIENT_BALANCE, None),
    (ALICE, SELL, None, 10**6, None, FOK, {}, RejectCode.INSUFFICIENT_BALANCE, None),
    (ALICE, BUY, 10**9, 5, None, IOC, {}, RejectCode.INSUFFICIENT_BALANCE, None),
]


def next_order_id(ex: Exchange) -> int:
    return ((ex.engine.order_counter + 1) << 10) | ex.engine.shard_id


@pytest.mark.parametrize("account, side, price, quantity, options, code, field", LIMIT_CASES)
def test_a_rejected_limit_order_changes_nothing_and_takes_no_id(strict, account, side, price, quantity, options, code, field):
    ex = strict
    expected_id = next_order_id(ex)
    reject = ex.assert_rejected_without_change(lambda: ex.place(account, side, price, quantity, **options), code)
    assert reject.message
    if field is not None:
        assert reject.details == {"field": field}
    assert ex.limit(ALICE, BUY, 9_000, 2).order_id == expected_id


@pytest.mark.parametrize("account, side, price, quantity, quote_quantity, tif, options, code, field", MARKET_CASES)
def test_a_rejected_market_order_changes_nothing_and_takes_no_id(
    strict, account, side, price, quantity, quote_quantity, tif, options, code, field
):
    ex = strict
    expected_id = next_order_id(ex)
    reject = ex.assert_rejected_without_change(
        lambda: ex.place(account, side, price, quantity, order_type=MARKET, tif=tif, quote_quantity=quote_quantity, **options),
        code,
    )
    if field is not None:
        assert reject.details == {"field": field}
    assert ex.limit(ALICE, BUY, 9_000, 2).order_id == expected_id


def test_orders_exactly_at_the_minimums_are_accepted(strict):
    ex = strict
    assert state(ex.limit(ALICE, BUY, 5_000, 2)) == (NEW, 0, 2)  # 100.00 USDT, 2 lots
    assert state(ex.market_order(ALICE, BUY, quote_quantity=10_100)) == (FILLED, 1, 0)  # below min quantity once filled is fine
    assert state(ex.market_order(ALICE, SELL, 2)) == (FILLED, 2, 0)
    ex.check()


# ---------------------------------------------------------------- client order ids


def test_a_client_order_id_is_reusable_once_the_first_order_closes():
    ex = funded()
    first = ex.limit(ALICE, BUY, 10_000, 2, client_order_id="again")
    ex.assert_rejected_without_change(
        lambda: ex.place(ALICE, SELL, 12_000, 1, client_order_id="again"), RejectCode.DUPLICATE_CLIENT_ORDER_ID
    )

    ex.limit(BOB, SELL, 10_000, 2)  # fills the first
    assert state(first) == (FILLED, 2, 0)
    second = ex.limit(ALICE, BUY, 10_000, 1, client_order_id="again")
    assert state(second) == (NEW, 0, 1)

    ex.cancel(ALICE, second.order_id)
    third = ex.limit(ALICE, BUY, 10_000, 1, client_order_id="again")
    assert third.order_id not in (first.order_id, second.order_id)
    assert ex.engine.order(ALICE, None, "again") is third
    ex.check()


def test_client_order_ids_are_per_account_and_only_open_orders_hold_them():
    ex = funded()
    ex.limit(ALICE, BUY, 10_000, 2, client_order_id="same")
    assert state(ex.limit(BOB, BUY, 10_000, 2, client_order_id="same")) == (NEW, 0, 2)
    # IOC and FOK orders never rest, so they never hold their client order id.
    for _ in range(2):
        order = ex.limit(CAROL, BUY, 9_000, 1, tif=IOC, client_order_id="ioc")
        assert state(order) == (EXPIRED, 0, 0)
    ex.limit(DAVE, SELL, 11_000, 1)
    filled_on_arrival = ex.limit(CAROL, BUY, 11_000, 1, client_order_id="gtc")
    assert state(filled_on_arrival) == (FILLED, 1, 0)
    assert state(ex.limit(CAROL, BUY, 8_000, 1, client_order_id="gtc")) == (NEW, 0, 1)
    ex.check()


def test_too_many_open_orders_refuses_resting_orders_but_not_takers():
    ex = funded(max_open_orders=2)
    ex.limit(ALICE, BUY, 9_000, 1)
    ex.limit(ALICE, SELL, 11_000, 1)
    ex.assert_rejected_without_change(lambda: ex.place(ALICE, BUY, 9_001, 1), RejectCode.TOO_MANY_OPEN_ORDERS)
    ex.limit(BOB, SELL, 10_000, 1)
    taker = ex.limit(ALICE, BUY, 10_000, 1, tif=IOC)
    assert state(taker) == (FILLED, 1, 0)
    assert len(ex.engine.open_orders(ALICE)) == 2
    ex.check()
