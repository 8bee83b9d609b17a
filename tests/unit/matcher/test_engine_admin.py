"""Engine scenarios: creating assets and markets (exact unit conversion), bot keys."""

from __future__ import annotations

import pytest

from common.types import RejectCode, StpMode
from matcher.engine import Engine, Reject
from tests.unit.matcher.engine_helpers import ALICE, BOB, BUY, FILLED, GTC, LIMIT, SELL, Exchange, state

PAIR = "BTC-USDT"


def test_a_new_market_creates_its_assets_with_enough_precision_and_trades_in_exact_units():
    engine = Engine()
    market = engine.create_market(PAIR, "0.01", "0.00001", "0.0001", "10", 2, 7, 5)

    assert not isinstance(market, Reject)
    assert (engine.assets["BTC"].text, engine.assets["USDT"].text) == ("0.00000001", "0.00000001")
    # One lot is 0.00001 BTC = 1000 units; one tick x one lot is 0.0000001 USDT = 10 units.
    assert (market.base_per_lot, market.quote_per_tick_lot) == (1_000, 10)
    assert (market.min_quantity, market.min_notional) == (10, 10 * 10**8)
    assert [(u.market, u.seq, u.ts_ns, u.bids, u.asks, u.trades, u.halted) for u in engine.public] == [
        (PAIR, 1, 5, (), (), [], False)
    ]

    engine.deposit(ALICE, "USDT", 100 * 10**8, 6)
    engine.deposit(BOB, "BTC", 10**8, 7)
    price = 5_000_000  # 50000.00 USDT
    maker = engine.place(BOB, PAIR, SELL, LIMIT, GTC, price, 20, None, False, StpMode.EXPIRE_MAKER, None, 8)
    taker = engine.place(ALICE, PAIR, BUY, LIMIT, GTC, price, 20, None, False, StpMode.EXPIRE_MAKER, None, 9)

    assert (state(maker), state(taker)) == ((FILLED, 20, 0), (FILLED, 20, 0))
    # 0.0002 BTC for 10 USDT; ALICE pays 7 bps of 20000 BTC units (14), BOB 2 bps of 10 USDT (0.0002).
    assert engine.balances(ALICE) == [("BTC", 20_000 - 14, 0), ("USDT", 90 * 10**8, 0)]
    assert engine.balances(BOB) == [("BTC", 10**8 - 20_000, 0), ("USDT", 10**9 - 200_000, 0)]
    assert engine.balances(0) == [("BTC", 14, 0), ("USDT", 200_000, 0)]
    engine.check_invariants()


def test_a_market_on_existing_assets_uses_their_precision():
    engine = Engine()
    assert engine.create_asset("ETH", 4).text == "0.0001"
    assert engine.create_asset("USDC", 2).text == "0.01"
    market = engine.create_market("ETH-USDC", "1", "0.01", "0", "0", 0, 0, 1)
    assert (market.base_per_lot, market.quote_per_tick_lot) == (100, 1)
    assert (engine.assets["ETH"].text, engine.assets["USDC"].text) == ("0.0001", "0.01")


def test_asset_decimals_can_go_down_to_whole_units():
    engine = Engine()
    assert engine.create_asset("PTS", 0).text == "1"
    market = engine.create_market("PTS-USDT", "0.5", "1", "0", "0", 0, 0, 1)
    assert (market.base_per_lot, market.quote_per_tick_lot) == (1, 50_000_000)


@pytest.mark.parametrize(
    "symbol, decimals, code",
    [
        ("USDT", 2, RejectCode.ALREADY_EXISTS),
        ("eth", 8, RejectCode.INVALID_FIELD),
        ("", 8, RejectCode.INVALID_FIELD),
        ("ABCDEFGHIJKLM", 8, RejectCode.INVALID_FIELD),
        ("ET-H", 8, RejectCode.INVALID_FIELD),
        (5, 8, RejectCode.INVALID_FIELD),
        ("ETH", -1, RejectCode.INVALID_FIELD),
        ("ETH", 19, RejectCode.INVALID_FIELD),
        ("ETH", True, RejectCode.INVALID_FIELD),
        ("ETH", "8", RejectCode.INVALID_FIELD),
        ("ETH", 1.5, RejectCode.INVALID_FIELD),
    ],
)
def test_invalid_assets_are_rejected_and_change_nothing(symbol, decimals, code):
    ex = Exchange()
    ex.assert_rejected_without_change(lambda: ex.engine.create_asset(symbol, decimals), code)


# (pair, tick, lot, min quantity, min notional, maker bps, taker bps) -> code and field.
# The standard Exchange has BTC and USDT at 2 decimals and the BTC-USDT market.
VALID = ("ETH-USDT", "0.01", "1", "0", "0", 0, 0)


def variant(**changes):
    names = ("pair", "tick", "lot", "min_quantity", "min_notional", "maker", "taker")
    values = dict(zip(names, VALID))
    values.update(changes)
    return tuple(values[name] for name in names)


@pytest.mark.parametrize(
    "arguments, code, field",
    [
        (variant(pair="BTC-USDT"), RejectCode.ALREADY_EXISTS, None),
        (variant(pair="ETHUSDT"), RejectCode.INVALID_FIELD, "pair"),
        (variant(pair="eth-usdt"), RejectCode.INVALID_FIELD, "pair"),
        (variant(pair="USDT-USDT"), RejectCode.INVALID_FIELD, "pair"),
        (variant(pair=None), RejectCode.INVALID_FIELD, "pair"),
        (variant(tick="0"), RejectCode.INVALID_FIELD, "tick_size"),
        (variant(tick="-0.01"), RejectCode.INVALID_FIELD, "tick_size"),
        (variant(tick="NaN"), RejectCode.INVALID_FIELD, "tick_size"),
        (variant(tick="one"), RejectCode.INVALID_FIELD, "tick_size"),
        (variant(tick=0.01), RejectCode.INVALID_FIELD, "tick_size"),
        (variant(lot="0"), RejectCode.INVALID_FIELD, "lot_size"),
        (variant(lot="inf"), RejectCode.INVALID_FIELD, "lot_size"),
        (variant(maker=1_001), RejectCode.INVALID_FIELD, "maker_fee_bps"),
        (variant(maker=-1_001, taker=1_000), RejectCode.INVALID_FIELD, "maker_fee_bps"),
        (variant(maker=True), RejectCode.INVALID_FIELD, "maker_fee_bps"),
        (variant(taker=-1), RejectCode.INVALID_FIELD, "taker_fee_bps"),
        (variant(taker=1_001), RejectCode.INVALID_FIELD, "taker_fee_bps"),
        (variant(taker="5"), RejectCode.INVALID_FIELD, "taker_fee_bps"),
        (variant(maker=-11, taker=10), RejectCode.INVALID_FIELD, "maker_fee_bps"),  # rebate above the taker fee
        (variant(pair="BTC-EUR", lot="0.001"), RejectCode.INVALID_FIELD, "lot_size"),  # BTC has 2 decimals
        (variant(tick="0.001"), RejectCode.INVALID_FIELD, "tick_size"),  # tick x lot finer than USDT's 0.01
        (variant(min_quantity="0.5"), RejectCode.INVALID_FIELD, "min_quantity"),
        (variant(min_quantity="-1"), RejectCode.INVALID_FIELD, "min_quantity"),
        (variant(min_notional="0.001"), RejectCode.INVALID_FIELD, "min_notional"),
        # Each step is representable, their product is not: once crashed the matcher.
        (variant(pair="XX-YY", tick="99999999999999999999", lot="99999999999999999999"), RejectCode.INVALID_FIELD,
         "tick_size"),
    ],
)
def test_invalid_markets_are_rejected_and_change_nothing(arguments, code, field):
    ex = Exchange()
    reject = ex.assert_rejected_without_change(lambda: ex.engine.create_market(*arguments, ex.next_ts()), code)
    if field is not None:
        assert reject.details == {"field": field}
    assert list(ex.engine.markets) == [PAIR]
    assert sorted(ex.engine.assets) == ["BTC", "USDT"]


def test_a_rebate_equal_to_the_taker_fee_is_allowed():
    ex = Exchange()
    market = ex.engine.create_market(*variant(maker=-10, taker=10), ex.next_ts())
    assert (market.maker_fee_bps, market.taker_fee_bps) == (-10, 10)


def test_the_fee_account_does_not_trade():
    ex = Exchange()
    ex.assert_rejected_without_change(lambda: ex.place(0, BUY, 10_000, 1), RejectCode.FORBIDDEN)


# ---------------------------------------------------------------- bot keys

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


def test_a_bot_key_binds_to_one_trader_until_revoked():
    ex = Exchange()
    assert ex.engine.register_bot_key(ALICE, KEY) is None
    assert ex.engine.bot_keys == {KEY: ALICE}
    reject = ex.assert_rejected_without_change(lambda: ex.engine.register_bot_key(BOB, KEY), RejectCode.ALREADY_EXISTS)
    assert reject.details == {"account_id": ALICE}
    assert ex.engine.revoke_bot_key(KEY) is None
    assert ex.engine.bot_keys == {}
    assert ex.engine.register_bot_key(BOB, KEY) is None
    assert ex.engine.bot_keys == {KEY: BOB}


@pytest.mark.parametrize(
    "account_id, key, code",
    [
        (0, KEY, RejectCode.FORBIDDEN),
        (-1, KEY, RejectCode.FORBIDDEN),
        (ALICE, KEY[:-1], RejectCode.INVALID_FIELD),
        (ALICE, KEY + "x", RejectCode.INVALID_FIELD),
        (ALICE, None, RejectCode.INVALID_FIELD),
    ],
)
def test_invalid_bot_keys_are_rejected_and_change_nothing(account_id, key, code):
    ex = Exchange()
    ex.assert_rejected_without_change(lambda: ex.engine.register_bot_key(account_id, key), code)


def test_revoking_an_unknown_bot_key_is_not_found():
    ex = Exchange()
    ex.assert_rejected_without_change(lambda: ex.engine.revoke_bot_key(KEY), RejectCode.NOT_FOUND)


def test_a_market_finer_than_18_decimals_is_refused():
    engine = Engine()
    result = engine.create_market("TINY-USDT", "0.01", "1e-21", "0", "0", 0, 0, 1)
    assert isinstance(result, Reject) and result.code == RejectCode.INVALID_FIELD
    assert engine.assets == {} and engine.markets == {}
