"""Live 24-hour ticker and current candles of one market, computed from its trades. No I/O.

Everything is an integer in the market's units: prices in ticks, volume in lots, quote
volume in quote-asset units (ticks x lots x `quote_per_tick_lot`), time in epoch
milliseconds passed in by the caller. The definitions are the history store's
(docs/store.md), so the feed and `GET /markets/{pair}/candles` and `/ticker` agree:

- candles are UTC-aligned buckets (`open_time = ts - ts % length`); intervals without
  trades have no candle; open and close follow trade ids (the store's own `Candle`
  class, common/store/aggregates.py, holds them here too);
- the ticker covers the one-minute buckets opening in (now - 24 h, now]: `open` is the
  first trade's price in that window, `high`/`low` its extremes, `volume`,
  `quote_volume` and `trades` its sums, `last` the newest trade's price (also when the
  window is empty), `change` = last - open and `change_percent` its share of `open`
  with two decimals, truncated.

The ticker keeps one Candle per minute for 24 hours (at most 1,440) with running sums, so
a trade costs O(number of intervals) and the window slides by dropping whole minutes; the
extremes are recomputed over the kept minutes only when a minute that held one leaves.
`seed` loads what the history store already knows; trades with an id at or below the
seed's newest are skipped, so nothing is counted twice.
"""

from __future__ import annotations

from collections import deque

from common.store.aggregates import INTERVALS as CANDLE_INTERVALS
from common.store.aggregates import Candle

MINUTE_MS = 60_000
DAY_MS = 86_400_000


class Ticker:
    """The 24-hour statistics at one moment, as integers (None: no trade yet)."""

    __slots__ = ("open_time", "close_time", "last", "open", "high", "low", "volume", "quote_volume", "trades")

    def __init__(self, open_time, close_time, last, open_, high, low, volume, quote_volume, trades) -> None:
        self.open_time = open_time
        self.close_time = close_time
        self.last = last
        self.open = open_
        self.high = high
        self.low = low
        self.volume = volume
        self.quote_volume = quote_volume
        self.trades = trades

    @property
    def change(self) -> int | None:
        return None if self.last is None or self.open is None else self.last - self.open

    @property
    def change_basis_points(self) -> int | None:
        """Return the change in hundredths of a percent, truncated toward zero (None when open is 0)."""
        change = self.change
        if change is None or self.open <= 0:
            return None
        scaled = abs(change) * 10_000 // self.open
        return scaled if change >= 0 else -scaled


def window_start(now_ms: int) -> int:
    """Return the open time of the oldest minute in the ticker's window (now - 24 h, now]."""
    return -(-(now_ms - DAY_MS + 1) // MINUTE_MS) * MINUTE_MS


class MarketStats:
    """The rolling ticker and the current candle of every interval for one market."""

    def __init__(self, quote_per_tick_lot: int) -> None:
        self.quote_per_tick_lot = quote_per_tick_lot
        self.minutes: deque[tuple[int, Candle]] = deque()  # ascending open times
        self.volume = self.quote_volume = self.trades = 0  # sums over `minutes`
        self.high: int | None = None
        self.low: int | None = None
        self.last: int | None = None
        self.last_trade_id = 0
        # interval -> (open_time, candle) of the candle still open
        self.candles: dict[str, tuple[int, Candle]] = {}
        self.changed_candles: set[str] = set()
        self.closed_candles: list[tuple[str, int, Candle]] = []
        self.ticker_changed = False

    # ---------------------------------------------------------------- input

    def seed(self, minutes: list[tuple[int, Candle]], current: dict[str, tuple[int, Candle]],
             last_trade_id: int, last_price: int | None) -> None:
        """Load the store's one-minute candles, current candles and newest trade (before any live trade)."""
        self.minutes = deque(sorted(minutes, key=lambda item: item[0]))
        self.volume = sum(candle.volume for _, candle in self.minutes)
        self.quote_volume = sum(candle.quote_volume for _, candle in self.minutes)
        self.trades = sum(candle.trades for _, candle in self.minutes)
        self._recompute_extremes()
        self.candles = dict(current)
        self.last_trade_id = last_trade_id
        self.last = last_price
        self.ticker_changed = True

    def add_trade(self, trade_id: int, ts: int, ticks: int, lots: int) -> bool:
        """Count one trade; return False (and count nothing) if its id was counted already."""
        if trade_id <= self.last_trade_id:
            return False
        self.last_trade_id = trade_id
        self.last = ticks
        quote = ticks * lots * self.quote_per_tick_lot
        minute = ts - ts % MINUTE_MS
        minutes = self.minutes
        if minutes and minutes[-1][0] == minute:
            minutes[-1][1].merge(_one_trade(trade_id, ticks, lots, quote))
        elif not minutes or minutes[-1][0] < minute:
            minutes.append((minute, _one_trade(trade_id, ticks, lots, quote)))
        else:
            # The matcher's clock stepped back: find the trade's own minute.
            self._add_to_older_minute(minute, trade_id, ticks, lots, quote)
        self.volume += lots
        self.quote_volume += quote
        self.trades += 1
        if self.high is None or ticks > self.high:
            self.high = ticks
        if self.low is None or ticks < self.low:
            self.low = ticks
        self.ticker_changed = True
        for interval, length in CANDLE_INTERVALS.items():
            open_time = ts - ts % length
            current = self.candles.get(interval)
            if current is None or current[0] < open_time:
                if current is not None:
                    self.closed_candles.append((interval, current[0], current[1]))
                self.candles[interval] = (open_time, _one_trade(trade_id, ticks, lots, quote))
            elif current[0] == open_time:
                current[1].merge(_one_trade(trade_id, ticks, lots, quote))
            else:
                continue  # a trade from before the current candle: only the minute buckets keep it
            self.changed_candles.add(interval)
        return True

    def _add_to_older_minute(self, minute: int, trade_id: int, ticks: int, lots: int, quote: int) -> None:
        for index in range(len(self.minutes) - 1, -1, -1):
            open_time, candle = self.minutes[index]
            if open_time == minute:
                candle.merge(_one_trade(trade_id, ticks, lots, quote))
                return
            if open_time < minute:
                self.minutes.insert(index + 1, (minute, _one_trade(trade_id, ticks, lots, quote)))
                return
        self.minutes.appendleft((minute, _one_trade(trade_id, ticks, lots, quote)))

    def advance(self, now_ms: int) -> None:
        """Let time pass: drop minutes that left the 24-hour window and close candles whose interval ended."""
        start = window_start(now_ms)
        minutes = self.minutes
        dropped_extreme = False
        while minutes and minutes[0][0] < start:
            _, candle = minutes.popleft()
            self.volume -= candle.volume
            self.quote_volume -= candle.quote_volume
            self.trades -= candle.trades
            dropped_extreme = dropped_extreme or candle.high == self.high or candle.low == self.low
            self.ticker_changed = True
        if dropped_extreme:
            self._recompute_extremes()
        for interval, (open_time, candle) in list(self.candles.items()):
            if now_ms >= open_time + CANDLE_INTERVALS[interval]:
                self.closed_candles.append((interval, open_time, candle))
                del self.candles[interval]
                self.changed_candles.discard(interval)

    def _recompute_extremes(self) -> None:
        if self.minutes:
            self.high = max(candle.high for _, candle in self.minutes)
            self.low = min(candle.low for _, candle in self.minutes)
        else:
            self.high = self.low = None

    # ---------------------------------------------------------------- output

    def ticker(self, now_ms: int) -> Ticker:
        """Return the statistics of the window (now - 24 h, now]; call `advance(now_ms)` first."""
        if not self.minutes:
            last = self.last
            return Ticker(window_start(now_ms), now_ms, last, last, last, last, 0, 0, 0)
        return Ticker(window_start(now_ms), now_ms, self.last, self.minutes[0][1].open, self.high, self.low,
                      self.volume, self.quote_volume, self.trades)

    def take_changes(self) -> tuple[list[tuple[str, int, Candle]], list[tuple[str, int, Candle]], bool]:
        """Return (closed candles, changed current candles, whether the ticker changed) and forget them."""
        closed, self.closed_candles = self.closed_candles, []
        changed = [(interval, *self.candles[interval]) for interval in self.changed_candles
                   if interval in self.candles]
        self.changed_candles = set()
        ticker_changed, self.ticker_changed = self.ticker_changed, False
        return closed, changed, ticker_changed


def _one_trade(trade_id: int, ticks: int, lots: int, quote: int) -> Candle:
    return Candle(ticks, ticks, ticks, ticks, lots, quote, 1, trade_id, trade_id)
