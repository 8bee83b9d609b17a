"""Candle bucketing and merging, and the average-cost position method, in exact integers."""

from __future__ import annotations

import random

import pytest

from common.store.aggregates import INTERVALS, Candle, Position, bucket, minute_candles, roll_up
from common.store.batch import MarketSpec
from common.types import Step

# BTC-USDT with tick 0.01 and lot 0.001; BTC and USDT with 8 decimals:
# one lot is 100,000 BTC units, one tick x one lot is 1,000 USDT units.
SPEC = MarketSpec("BTC-USDT", "BTC", "USDT", Step("0.01"), Step("0.001"), Step.from_decimals(8),
                  Step.from_decimals(8), 100_000, 1_000)
SPECS = {"BTC-USDT": SPEC}
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a day boundary


@pytest.mark.parametrize(("ts", "interval", "open_time"), [
    (T0, "1m", T0),
    (T0 + 59_999, "1m", T0),
    (T0 + 60_000, "1m", T0 + 60_000),
    (T0 - 1, "1m", T0 - 60_000),
    (T0 + 299_999, "5m", T0),
    (T0 + 300_000, "5m", T0 + 300_000),
    (T0 + 3 * 3_600_000 + 59 * 60_000, "4h", T0),
    (T0 + 4 * 3_600_000, "4h", T0 + 4 * 3_600_000),
    (T0 - 1, "1d", T0 - DAY),
    (T0 + DAY - 1, "1d", T0),
])
def test_buckets_are_utc_aligned(ts, interval, open_time):
    assert bucket(ts, interval) == open_time


def test_minute_candles_and_roll_up_at_edges():
    trades = [  # (pair, trade_id, ts, ticks, lots, the taker bought)
        ("BTC-USDT", 1, T0 - 1, 10_000, 1_000, True),          # last ms of the previous day
        ("BTC-USDT", 2, T0, 10_100, 500, True),                # first ms of the day
        ("BTC-USDT", 3, T0 + 59_999, 9_900, 2_000, False),     # last ms of the first minute
        ("BTC-USDT", 4, T0 + 60_000, 10_050, 1, True),         # next minute, same 5m/1h/1d
    ]
    candles = roll_up(minute_candles(trades, SPECS))
    assert candles[("BTC-USDT", "1m", T0 - 60_000)] == Candle(10_000, 10_000, 10_000, 10_000, 1_000,
                                                              10_000 * 1_000 * 1_000, 1, 1, 1,
                                                              1_000, 10_000 * 1_000 * 1_000)
    first_minute = candles[("BTC-USDT", "1m", T0)]
    assert (first_minute.open, first_minute.high, first_minute.low, first_minute.close) == (10_100, 10_100, 9_900, 9_900)
    assert (first_minute.volume, first_minute.trades, first_minute.first_trade_id, first_minute.last_trade_id) \
        == (2_500, 2, 2, 3)
    day = candles[("BTC-USDT", "1d", T0)]
    assert (day.open, day.high, day.low, day.close, day.volume, day.trades) == (10_100, 10_100, 9_900, 10_050, 2_501, 3)
    assert day.quote_volume == (10_100 * 500 + 9_900 * 2_000 + 10_050 * 1) * 1_000
    assert candles[("BTC-USDT", "1d", T0 - DAY)].trades == 1
    assert {interval for (_, interval, _) in candles} == set(INTERVALS)
    assert (day.taker_buy_volume, day.taker_buy_quote_volume) == (501, (10_100 * 500 + 10_050 * 1) * 1_000)
    assert day.as_row(SPEC) == ("101.00", "101.00", "99.00", "100.50", "2.501", "248.60050000", 3, 2, 4,
                                "0.501", "50.60050000")
    assert Candle.from_row(day.as_row(SPEC), SPEC) == day


def test_taker_buy_volumes_stay_unknown_once_merged_with_a_candle_recorded_without_them():
    known = Candle(100, 100, 100, 100, 5, 500, 1, 1, 1, 5, 500)
    recorded_before = Candle(101, 101, 101, 101, 2, 202, 1, 2, 2)

    known.merge(recorded_before)

    assert (known.volume, known.taker_buy_volume, known.taker_buy_quote_volume) == (7, None, None)
    assert known.as_row(SPEC)[9:] == (None, None)
    assert Candle.from_row(known.as_row(SPEC), SPEC) == known


def test_merge_is_order_independent():
    rng = random.Random(3)
    trades = [("BTC-USDT", n, T0 + rng.randrange(0, 10 * 60_000), rng.randrange(9_000, 11_000), rng.randrange(1, 50),
               rng.random() < 0.5) for n in range(1, 200)]
    trades.sort(key=lambda trade: trade[1])
    whole = roll_up(minute_candles(trades, SPECS))[("BTC-USDT", "1h", T0)]
    pieces = [roll_up(minute_candles(trades[start:start + 37], SPECS))[("BTC-USDT", "1h", T0)]
              for start in range(0, len(trades), 37)]
    rng.shuffle(pieces)
    merged = pieces[0].copy()
    for piece in pieces[1:]:
        merged.merge(piece)
    assert merged == whole
    assert (merged.first_trade_id, merged.last_trade_id) == (1, 199)


def _buy(position, fill_id, lots, ticks, fee_units=0):
    position.apply(fill_id, True, lots, ticks, fee_units, SPEC)


def _sell(position, fill_id, lots, ticks, fee_units=0):
    position.apply(fill_id, False, lots, ticks, fee_units, SPEC)


def test_average_cost_weighted_by_buys_and_reduced_proportionally_by_sells():
    position = Position()
    _buy(position, 2, 1_000, 10_000)        # 1 BTC at 100.00
    _buy(position, 4, 1_000, 12_000)        # 1 BTC at 120.00
    assert (position.quantity, position.cost) == (200_000_000, 22_000_000_000)  # 2 BTC for 220 USDT
    _sell(position, 7, 500, 13_000)         # 0.5 BTC at 130: basis 55, proceeds 65
    assert position.quantity == 150_000_000
    assert position.cost == 16_500_000_000  # average cost still 110
    assert position.realized == 1_000_000_000  # +10 USDT
    assert position.as_row(SPEC) == ("1.50000000", "165.00000000", "10.00000000", "2.00000000", "0.50000000", 7)
    assert Position.from_row(position.as_row(SPEC), SPEC) == position


def test_fees_enter_cost_and_proceeds():
    position = Position()
    _buy(position, 2, 1_000, 10_000, fee_units=50_000)      # receives 0.9995 BTC for 100 USDT
    assert (position.quantity, position.cost) == (99_950_000, 10_000_000_000)
    _sell(position, 5, 1_000, 10_000, fee_units=5_000_000)  # sells 1 BTC: 0.0005 more than held
    # Closing 0.9995 BTC: proceeds (100 - 0.05) x 0.9995 truncated; the 0.0005 BTC left opens a short.
    assert position.quantity == -50_000
    assert position.realized == 9_995_000_000 * 99_950_000 // 100_000_000 - 10_000_000_000
    assert position.cost == -(9_995_000_000 - 9_995_000_000 * 99_950_000 // 100_000_000)


def test_selling_more_than_bought_flips_to_a_short_at_the_sale_price():
    position = Position()
    _sell(position, 3, 2_000, 10_000)       # 2 BTC sold from deposits: short 2 at 100
    assert (position.quantity, position.cost) == (-200_000_000, -20_000_000_000)
    _buy(position, 4, 1_000, 9_000)         # buy back 1 at 90: +10 realized
    assert position.realized == 1_000_000_000
    assert (position.quantity, position.cost) == (-100_000_000, -10_000_000_000)
    _buy(position, 6, 3_000, 11_000)        # closes the short at 110 (-10), then long 2 at 110
    assert position.realized == 0
    assert (position.quantity, position.cost) == (200_000_000, 22_000_000_000)


def test_a_fill_is_applied_once():
    position = Position()
    _buy(position, 10, 1_000, 10_000)
    assert not position.apply(10, True, 1_000, 10_000, 0, SPEC)
    assert not position.apply(9, False, 1_000, 10_000, 0, SPEC)
    assert position.quantity == 100_000_000
