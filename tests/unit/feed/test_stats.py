"""MarketStats: the rolling 24-hour ticker and current candles against a naive recomputation."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from feed.stats import DAY_MS, MINUTE_MS, Candle, MarketStats, window_start

T0 = 1_699_920_000_000  # midnight UTC: every interval's candle opens here


def test_window_start_is_the_first_whole_minute_after_now_minus_a_day() -> None:
    assert window_start(T0 + DAY_MS) == T0 + MINUTE_MS  # the minute opening exactly 24 h ago is out
    assert window_start(T0 + DAY_MS - 1) == T0


def test_ticker_sums_and_extremes_over_the_window() -> None:
    stats = MarketStats(quote_per_tick_lot=10)
    stats.add_trade(1, T0 + 1, 100, 2)
    stats.add_trade(2, T0 + MINUTE_MS + 1, 120, 1)
    stats.add_trade(3, T0 + 2 * MINUTE_MS + 1, 90, 3)

    ticker = stats.ticker(T0 + 2 * MINUTE_MS + 5)

    assert (ticker.open, ticker.high, ticker.low, ticker.last) == (100, 120, 90, 90)
    assert (ticker.volume, ticker.quote_volume, ticker.trades) == (6, (200 + 120 + 270) * 10, 3)
    assert (ticker.change, ticker.change_basis_points) == (-10, -1000)


def test_minutes_leave_the_window_and_the_extremes_follow() -> None:
    stats = MarketStats(1)
    stats.add_trade(1, T0, 150, 1)
    stats.add_trade(2, T0 + MINUTE_MS, 100, 1)

    stats.advance(T0 + DAY_MS)  # the first minute leaves
    ticker = stats.ticker(T0 + DAY_MS)

    assert (ticker.open, ticker.high, ticker.low, ticker.volume, ticker.trades) == (100, 100, 100, 1, 1)
    stats.advance(T0 + DAY_MS + MINUTE_MS)
    ticker = stats.ticker(T0 + DAY_MS + MINUTE_MS)
    assert (ticker.last, ticker.open, ticker.high, ticker.volume, ticker.trades) == (100, 100, 100, 0, 0)


def test_a_trade_counted_already_is_skipped() -> None:
    stats = MarketStats(1)
    stats.seed([(T0, Candle(100, 100, 100, 100, 5, 500, 2, 0, 0))], {}, last_trade_id=7, last_price=100)

    assert not stats.add_trade(7, T0 + 1, 200, 1)
    assert stats.add_trade(8, T0 + 2, 110, 1)

    ticker = stats.ticker(T0 + 3)
    assert (ticker.open, ticker.high, ticker.last, ticker.volume, ticker.trades) == (100, 110, 110, 6, 3)


def test_a_new_interval_closes_the_previous_candle() -> None:
    stats = MarketStats(1)
    stats.add_trade(1, T0 + 1, 100, 1)
    stats.take_changes()

    stats.add_trade(2, T0 + MINUTE_MS, 105, 2)
    closed, changed, ticker_changed = stats.take_changes()

    assert [(interval, open_time, candle.close) for interval, open_time, candle in closed] == [("1m", T0, 100)]
    one_minute = {interval: (open_time, candle) for interval, open_time, candle in changed}["1m"]
    assert one_minute == (T0 + MINUTE_MS, Candle(105, 105, 105, 105, 2, 210, 1, 2, 2))
    assert ticker_changed


def test_a_trade_from_a_clock_that_stepped_back_lands_in_its_own_minute() -> None:
    stats = MarketStats(1)
    stats.add_trade(1, T0 + 2 * MINUTE_MS, 100, 1)
    stats.add_trade(2, T0 + 1, 90, 1)

    assert [open_time for open_time, _ in stats.minutes] == [T0, T0 + 2 * MINUTE_MS]
    assert stats.ticker(T0 + 3 * MINUTE_MS).open == 90


TRADES = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3 * DAY_MS // 2), st.integers(1, 50), st.integers(1, 9)),
    max_size=40,
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(TRADES, st.integers(min_value=0, max_value=2 * DAY_MS))
def test_ticker_equals_a_naive_recomputation(steps, extra) -> None:
    stats = MarketStats(3)
    now = T0
    trades = []
    for trade_id, (delay, price, lots) in enumerate(steps, start=1):
        now += delay
        stats.advance(now)
        stats.add_trade(trade_id, now, price, lots)
        trades.append((now, price, lots))
    now += extra
    stats.advance(now)

    ticker = stats.ticker(now)

    start = window_start(now)
    window = [trade for trade in trades if trade[0] - trade[0] % MINUTE_MS >= start]
    assert ticker.last == (trades[-1][1] if trades else None)
    assert ticker.trades == len(window)
    assert ticker.volume == sum(lots for _, _, lots in window)
    assert ticker.quote_volume == sum(price * lots * 3 for _, price, lots in window)
    if window:
        assert (ticker.open, ticker.high, ticker.low) == (
            window[0][1], max(price for _, price, _ in window), min(price for _, price, _ in window))
    else:
        assert ticker.open == ticker.high == ticker.low == ticker.last
