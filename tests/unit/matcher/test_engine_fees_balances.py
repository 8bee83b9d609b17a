"""Engine scenarios: fees and rebates, locks, the ledger invariant, deposits and withdrawals."""

from __future__ import annotations

import pytest

from common.types import Liquidity, RejectCode
from matcher.accounts import FEE_ACCOUNT_ID, fee_for
from tests.unit.matcher.engine_helpers import (
    ALICE,
    BOB,
    BUY,
    FILLED,
    FUNDS_BTC,
    FUNDS_USDT,
    NEW,
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


def fee_account(ex: Exchange) -> dict:
    return ex.balances(FEE_ACCOUNT_ID)[FEE_ACCOUNT_ID]


def assert_ledger_sums_to_net_deposits(ex: Exchange) -> None:
    for asset in ("BTC", "USDT"):
        total = sum(sum(account.balance(asset)) for account in ex.engine.ledger.accounts.values())
        assert total == ex.engine.ledger.net_deposits[asset], asset


# ---------------------------------------------------------------- fees


def test_fees_are_charged_in_the_asset_each_side_receives_taker_buys():
    ex = funded(maker_fee_bps=10, taker_fee_bps=20)
    maker = ex.limit(BOB, SELL, 10_000, 5)

    taker = ex.limit(ALICE, BUY, 10_000, 5)

    assert (state(taker), state(maker)) == ((FILLED, 5, 0), (FILLED, 5, 0))
    # ALICE receives 500 BTC units and pays 20 bps of them (1); BOB receives 50000 USDT and pays 10 bps (50).
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=499, usdt_delta=-50_000),
        BOB: wallet(btc_delta=-500, usdt_delta=49_950),
    }
    assert fee_account(ex) == {"BTC": (1, 0), "USDT": (50, 0)}
    private = ex.private()
    assert private[ALICE][4] == [(taker.order_id, trade_id(1), 10_000, 5, 1, "BTC", TAKER)]
    assert private[BOB][4] == [(maker.order_id, trade_id(1), 10_000, 5, 50, "USDT", MAKER)]
    assert FEE_ACCOUNT_ID not in ex.private()
    assert_ledger_sums_to_net_deposits(ex)
    ex.check()


def test_fees_are_charged_in_the_asset_each_side_receives_taker_sells():
    ex = funded(maker_fee_bps=10, taker_fee_bps=20)
    maker = ex.limit(ALICE, BUY, 10_000, 5)

    taker = ex.limit(BOB, SELL, 10_000, 5)

    # BOB (taker) pays 20 bps of 50000 USDT = 100; ALICE (maker) 10 bps of 500 BTC units = 0.5 -> 1.
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=499, usdt_delta=-50_000),
        BOB: wallet(btc_delta=-500, usdt_delta=49_900),
    }
    assert fee_account(ex) == {"BTC": (1, 0), "USDT": (100, 0)}
    private = ex.private()
    assert private[ALICE][4] == [(maker.order_id, trade_id(1), 10_000, 5, 1, "BTC", MAKER)]
    assert private[BOB][4] == [(taker.order_id, trade_id(1), 10_000, 5, 100, "USDT", TAKER)]
    ex.check()


def test_a_negative_maker_fee_is_a_rebate_paid_by_the_fee_account():
    ex = funded(maker_fee_bps=-5, taker_fee_bps=10)
    maker = ex.limit(ALICE, BUY, 10_000, 100)
    # 1,000,000 notional + 10 bps headroom: the lock covers the larger of the fees.
    assert ex.balance(ALICE, "USDT") == (FUNDS_USDT - 1_001_000, 1_001_000)

    taker = ex.limit(BOB, SELL, 10_000, 100)

    assert (state(maker), state(taker)) == ((FILLED, 100, 0), (FILLED, 100, 0))
    # ALICE gets 10000 BTC units plus a 5 bps rebate (5); BOB pays 10 bps of 1,000,000 (1000).
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=10_005, usdt_delta=-1_000_000),
        BOB: wallet(btc_delta=-10_000, usdt_delta=999_000),
    }
    assert fee_account(ex) == {"BTC": (-5, 0), "USDT": (1_000, 0)}
    assert ex.private()[ALICE][4] == [(maker.order_id, trade_id(1), 10_000, 100, -5, "BTC", MAKER)]
    assert_ledger_sums_to_net_deposits(ex)
    ex.check()  # the fee account alone may go negative, by paying rebates


def test_fee_rounding_charges_round_up_and_rebates_round_toward_zero():
    ex = funded(maker_fee_bps=-5, taker_fee_bps=10)
    ex.limit(ALICE, SELL, 10_001, 3)

    ex.limit(BOB, BUY, 10_001, 3)

    # Notional 30003: ALICE's rebate 5 bps = 15.0015 -> 15. BOB's fee 10 bps of 300 BTC units = 0.3 -> 1.
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=-300, usdt_delta=30_003 + 15),
        BOB: wallet(btc_delta=299, usdt_delta=-30_003),
    }
    assert fee_account(ex) == {"BTC": (1, 0), "USDT": (-15, 0)}
    assert_ledger_sums_to_net_deposits(ex)
    ex.check()


@pytest.mark.parametrize(
    "amount, bps, fee",
    [
        (10_000, 10, 10),
        (10_001, 10, 11),  # 10.001 -> 11
        (9_999, 10, 10),  # 9.999 -> 10
        (1, 1, 1),  # the smallest charge is one unit
        (0, 10, 0),
        (12_345, 0, 0),
        (10_001, -10, -10),  # -10.001 -> -10
        (9_999, -10, -9),  # -9.999 -> -9
        (1, -1, 0),
        (10**20, 1_000, 10**19),
    ],
)
def test_fee_for_rounds_in_the_exchanges_favour(amount, bps, fee):
    assert fee_for(amount, bps) == fee


# ---------------------------------------------------------------- locks


def test_a_buy_locks_notional_plus_taker_fee_headroom_and_releases_it_as_it_fills():
    ex = funded(taker_fee_bps=25)
    bid = ex.limit(ALICE, BUY, 10_001, 4)
    # 40004 + 25 bps (100.01 -> 101).
    assert ex.balance(ALICE, "USDT") == (FUNDS_USDT - 40_105, 40_105)

    ex.limit(BOB, SELL, 10_001, 1)

    assert state(bid) == (PARTIALLY_FILLED, 1, 3)
    # What 3 lots still need: 30003 + 76 (75.0075 -> 76).
    assert ex.balances(ALICE, BOB) == {
        ALICE: wallet(btc_delta=100, usdt_delta=-10_001, usdt_locked=30_079),
        BOB: wallet(btc_delta=-100, usdt_delta=10_001 - 26),
    }
    assert bid.locked == 30_079

    ex.cancel(ALICE, bid.order_id)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=100, usdt_delta=-10_001)}
    ex.check()


def test_a_sell_locks_its_quantity_in_base_and_releases_it_as_it_fills():
    ex = funded()
    ask = ex.limit(ALICE, SELL, 10_000, 5)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_locked=500)}
    ex.limit(BOB, BUY, 10_000, 2)
    assert state(ask) == (PARTIALLY_FILLED, 2, 3)
    assert ex.balances(ALICE) == {ALICE: wallet(btc_delta=-200, btc_locked=300, usdt_delta=20_000)}
    ex.check()


def test_a_limit_buy_needs_exactly_its_lock_available():
    ex = Exchange(taker_fee_bps=25)
    ex.fund(8, usdt=40_105)
    ex.fund(9, usdt=40_104)
    ex.assert_rejected_without_change(lambda: ex.place(9, BUY, 10_001, 4), RejectCode.INSUFFICIENT_BALANCE)
    bid = ex.limit(8, BUY, 10_001, 4)
    assert state(bid) == (NEW, 0, 4)
    assert ex.balance(8, "USDT") == (0, 40_105)
    ex.check()


def test_a_sell_needs_exactly_its_quantity_available():
    ex = Exchange()
    ex.fund(8, btc=400)
    ex.fund(9, btc=399)
    ex.assert_rejected_without_change(lambda: ex.place(9, SELL, 10_000, 4), RejectCode.INSUFFICIENT_BALANCE)
    assert state(ex.limit(8, SELL, 10_000, 4)) == (NEW, 0, 4)
    assert ex.balance(8, "BTC") == (0, 400)
    ex.check()


def test_market_buys_need_what_they_may_spend():
    ex = Exchange()
    ex.fund(BOB, btc=1_000)
    ex.limit(BOB, SELL, 10_000, 2)
    ex.limit(BOB, SELL, 10_100, 2)
    ex.fund(8, usdt=30_100)
    # By quote quantity: the whole budget must be available.
    ex.assert_rejected_without_change(lambda: ex.market_order(8, BUY, quote_quantity=30_101), RejectCode.INSUFFICIENT_BALANCE)
    # By quantity: the cost of that quantity against the book as it stands.
    ex.assert_rejected_without_change(lambda: ex.market_order(8, BUY, 4), RejectCode.INSUFFICIENT_BALANCE)
    # With a protection price: as a limit buy at that price would.
    ex.assert_rejected_without_change(lambda: ex.market_order(8, BUY, 3, protection=10_100), RejectCode.INSUFFICIENT_BALANCE)
    taker = ex.market_order(8, BUY, 3)
    assert state(taker) == (FILLED, 3, 0)
    assert ex.balances(8)[8] == {"BTC": (300, 0), "USDT": (0, 0)}
    ex.check()


def test_locks_follow_the_orders_through_a_busy_sequence():
    ex = funded(maker_fee_bps=-2, taker_fee_bps=7)
    orders = [ex.limit(ALICE, BUY, 10_000 - i * 7, 3 + i) for i in range(4)]
    orders += [ex.limit(BOB, SELL, 10_050 + i * 3, 2 + i) for i in range(4)]
    ex.limit(ALICE, BUY, 10_056, 6)
    ex.amend(ALICE, orders[1].order_id, quantity=2)
    ex.limit(BOB, SELL, 9_980, 9)
    ex.amend(BOB, orders[6].order_id, price=9_990)
    ex.cancel(ALICE, orders[0].order_id)
    ex.check()  # every order's lock == its recomputed need; account locks == sum of order locks
    assert_ledger_sums_to_net_deposits(ex)
    assert fee_account(ex)["USDT"][0] > 0


# ---------------------------------------------------------------- deposits and withdrawals


def test_a_deposit_credits_available_and_is_reported_privately_only():
    ex = Exchange()
    seq = ex.market.seq

    account = ex.engine.deposit(ALICE, "USDT", 12_345, ex.next_ts())

    assert account.balance("USDT") == (12_345, 0)
    assert ex.engine.ledger.net_deposits["USDT"] == 12_345
    assert ex.public() == [] and ex.market.seq == seq
    assert ex.private() == {ALICE: (ALICE, 1, ex.ts, [], [], [("USDT", 12_345, 0)])}
    ex.engine.deposit(ALICE, "USDT", 5, ex.next_ts())
    assert ex.private()[ALICE][1] == 2
    assert ex.balance(ALICE, "USDT") == (12_350, 0)
    ex.check()


def test_a_withdrawal_takes_only_from_available():
    ex = funded()
    ex.limit(ALICE, BUY, 10_000, 10)  # locks 100000
    available = FUNDS_USDT - 100_000
    ex.assert_rejected_without_change(
        lambda: ex.engine.withdraw(ALICE, "USDT", available + 1, ex.next_ts()), RejectCode.INSUFFICIENT_BALANCE
    )

    account = ex.engine.withdraw(ALICE, "USDT", available, ex.next_ts())

    assert account.balance("USDT") == (0, 100_000)
    assert ex.engine.ledger.net_deposits["USDT"] == 4 * FUNDS_USDT - available
    assert ex.private() == {ALICE: (ALICE, ex.engine.ledger.accounts[ALICE].seq, ex.ts, [], [], [("USDT", 0, 100_000)])}
    assert ex.public() == []
    ex.check()


@pytest.mark.parametrize(
    "action, code",
    [
        (lambda e: e.engine.deposit(ALICE, "DOGE", 1, 1), RejectCode.UNKNOWN_ASSET),
        (lambda e: e.engine.deposit(ALICE, "USDT", 0, 1), RejectCode.INVALID_AMOUNT),
        (lambda e: e.engine.deposit(ALICE, "USDT", -5, 1), RejectCode.INVALID_AMOUNT),
        (lambda e: e.engine.deposit(FEE_ACCOUNT_ID, "USDT", 5, 1), RejectCode.FORBIDDEN),
        (lambda e: e.engine.withdraw(ALICE, "DOGE", 1, 1), RejectCode.UNKNOWN_ASSET),
        (lambda e: e.engine.withdraw(ALICE, "USDT", 0, 1), RejectCode.INVALID_AMOUNT),
        (lambda e: e.engine.withdraw(ALICE, "USDT", -1, 1), RejectCode.INVALID_AMOUNT),
        (lambda e: e.engine.withdraw(ALICE, "BTC", FUNDS_BTC + 1, 1), RejectCode.INSUFFICIENT_BALANCE),
        (lambda e: e.engine.withdraw(77, "BTC", 1, 1), RejectCode.INSUFFICIENT_BALANCE),  # no such account
    ],
)
def test_invalid_deposits_and_withdrawals_change_nothing(action, code):
    ex = funded()
    ex.limit(ALICE, BUY, 10_000, 1)
    ex.assert_rejected_without_change(lambda: action(ex), code)
