"""Candles and positions: state kept per key and advanced by trades and fills. No I/O.

Everything is exact integer arithmetic in the market's units (price ticks, lots, base and
quote units); the store keeps the results as decimal strings and parses them back with
the same steps. docs/store.md defines both precisely.

Candles: UTC-aligned buckets (`open_time = ts - ts % length`), so a 4h candle opens at
00:00, 04:00, ... UTC and a 1d candle at midnight UTC. Trades are first gathered into
one-minute partial candles, which then merge into every interval (merging is associative
and commutative: the open and close of the lowest and highest trade id, max high, min
low, sums). Merging does not detect a trade counted twice: the writer's progress
compare-and-set guarantees that each batch of trades is merged once.

Positions, per account and market, by the average-cost method:
- a fill moves the account's base by `d` and its quote by `m`: a buy receives its
  quantity less the fee (charged in base) and pays price x quantity; a sell gives its
  quantity and receives price x quantity less the fee (charged in quote);
- a fill in the direction of the position (or from flat) adds `d` to the quantity and
  `-m` to the cost;
- a fill against the position closes `c = min(|d|, |quantity|)` of it: the cost basis
  removed is `cost x c / |quantity|`, the proceeds are `m x c / |d|`, and the realized PnL
  grows by proceeds minus the basis removed; whatever is left of the fill opens a
  position the other way at the fill's own price;
- partial amounts are truncated toward zero to one unit of the quote asset.
"""

from __future__ import annotations

from common.store.batch import MarketSpec
from common.types import Step

INTERVALS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
MINUTE = INTERVALS["1m"]


def bucket(ts_ms: int, interval: str) -> int:
    """Return the open time (ms) of the `interval` candle holding `ts_ms`."""
    length = INTERVALS[interval]
    return ts_ms - ts_ms % length


class Candle:
    """One candle as integers: prices in ticks, volume in lots, quote volume in quote units.

    `taker_buy_volume` and `taker_buy_quote_volume` are the part of the volumes whose taker
    bought; None where they are not known (candles the store recorded before it kept them,
    and whatever merges with those).
    """

    __slots__ = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "first_trade_id",
                 "last_trade_id", "taker_buy_volume", "taker_buy_quote_volume")

    def __init__(self, open_, high, low, close, volume, quote_volume, trades, first_trade_id, last_trade_id,
                 taker_buy_volume=None, taker_buy_quote_volume=None):
        self.open = open_
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume
        self.quote_volume = quote_volume
        self.trades = trades
        self.first_trade_id = first_trade_id
        self.last_trade_id = last_trade_id
        self.taker_buy_volume = taker_buy_volume
        self.taker_buy_quote_volume = taker_buy_quote_volume

    def copy(self) -> "Candle":
        return Candle(self.open, self.high, self.low, self.close, self.volume, self.quote_volume, self.trades,
                      self.first_trade_id, self.last_trade_id, self.taker_buy_volume, self.taker_buy_quote_volume)

    def merge(self, other: "Candle") -> None:
        """Add another candle's trades (none of them already in this one) to this candle.

        Order-independent: the open and close follow the trade ids, so a matcher clock that
        steps back, putting later trades in an earlier bucket, still merges correctly.
        """
        if other.first_trade_id < self.first_trade_id:
            self.open = other.open
            self.first_trade_id = other.first_trade_id
        if other.last_trade_id > self.last_trade_id:
            self.close = other.close
            self.last_trade_id = other.last_trade_id
        if other.high > self.high:
            self.high = other.high
        if other.low < self.low:
            self.low = other.low
        self.volume += other.volume
        self.quote_volume += other.quote_volume
        self.trades += other.trades
        if self.taker_buy_volume is None or other.taker_buy_volume is None:
            self.taker_buy_volume = self.taker_buy_quote_volume = None
        else:
            self.taker_buy_volume += other.taker_buy_volume
            self.taker_buy_quote_volume += other.taker_buy_quote_volume

    def as_row(self, spec: MarketSpec) -> tuple:
        """Return (open, high, low, close, volume, quote_volume, trades, first_trade_id, last_trade_id,
        taker_buy_volume, taker_buy_quote_volume) as stored."""
        tick = spec.tick.format_cached
        known = self.taker_buy_volume is not None
        return (tick(self.open), tick(self.high), tick(self.low), tick(self.close), spec.lot.format(self.volume),
                spec.quote_step.format(self.quote_volume), self.trades, self.first_trade_id, self.last_trade_id,
                spec.lot.format(self.taker_buy_volume) if known else None,
                spec.quote_step.format(self.taker_buy_quote_volume) if known else None)

    @classmethod
    def from_row(cls, row, spec: MarketSpec) -> "Candle":
        """Parse a stored row (as `as_row` writes it) back."""
        tick = spec.tick.parse
        known = row[9] is not None
        return cls(tick(row[0]), tick(row[1]), tick(row[2]), tick(row[3]), spec.lot.parse(row[4]),
                   spec.quote_step.parse(row[5]), row[6], row[7], row[8],
                   spec.lot.parse(row[9]) if known else None, spec.quote_step.parse(row[10]) if known else None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Candle) and all(getattr(self, name) == getattr(other, name)
                                                 for name in self.__slots__)

    def __repr__(self) -> str:
        return "Candle(" + ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__) + ")"


def minute_candles(trades, specs: dict[str, MarketSpec]) -> dict[tuple[str, int], Candle]:
    """Gather (pair, trade_id, ts, ticks, lots, taker_buys) trades, in trade order, into one-minute candles."""
    partials: dict[tuple[str, int], Candle] = {}
    for pair, trade_id, ts, ticks, lots, taker_buys in trades:
        key = (pair, ts - ts % MINUTE)
        quote = ticks * lots * specs[pair].quote_per_tick_lot
        candle = partials.get(key)
        if candle is None:
            partials[key] = Candle(ticks, ticks, ticks, ticks, lots, quote, 1, trade_id, trade_id,
                                   lots if taker_buys else 0, quote if taker_buys else 0)
        else:
            if taker_buys:
                candle.taker_buy_volume += lots
                candle.taker_buy_quote_volume += quote
            if ticks > candle.high:
                candle.high = ticks
            if ticks < candle.low:
                candle.low = ticks
            candle.close = ticks
            candle.volume += lots
            candle.quote_volume += quote
            candle.trades += 1
            candle.last_trade_id = trade_id
    return partials


def roll_up(partials: dict[tuple[str, int], Candle]) -> dict[tuple[str, str, int], Candle]:
    """Merge one-minute partial candles into every interval's buckets: (pair, interval, open_time) -> Candle."""
    candles: dict[tuple[str, str, int], Candle] = {}
    for (pair, minute), partial in partials.items():
        for interval, length in INTERVALS.items():
            key = (pair, interval, minute - minute % length)
            candle = candles.get(key)
            if candle is None:
                candles[key] = partial.copy()
            else:
                candle.merge(partial)
    return candles


# ------------------------------------------------------------------------------ positions


def _scaled(value: int, numerator: int, denominator: int) -> int:
    """Return value x numerator / denominator truncated toward zero."""
    product = value * numerator
    quotient = abs(product) // denominator
    return quotient if product >= 0 else -quotient


def parse_signed(step: Step, text: str) -> int:
    return -step.parse(text[1:]) if text.startswith("-") else step.parse(text)


class Position:
    """An account's position in one market: base units held through trading and their quote cost."""

    __slots__ = ("quantity", "cost", "realized", "bought", "sold", "last_fill_id")

    def __init__(self, quantity=0, cost=0, realized=0, bought=0, sold=0, last_fill_id=0) -> None:
        self.quantity = quantity
        self.cost = cost
        self.realized = realized
        self.bought = bought
        self.sold = sold
        self.last_fill_id = last_fill_id

    def apply(self, fill_id: int, is_buy: bool, lots: int, ticks: int, fee: int, spec: MarketSpec) -> bool:
        """Apply one fill; return False (and change nothing) if it is not after the last one applied."""
        if fill_id <= self.last_fill_id:
            return False
        self.last_fill_id = fill_id
        base = lots * spec.base_per_lot
        notional = ticks * lots * spec.quote_per_tick_lot
        if is_buy:
            delta, money = base - fee, -notional
            self.bought += base
        else:
            delta, money = -base, notional - fee
            self.sold += base
        quantity = self.quantity
        if quantity and delta and (quantity > 0) != (delta > 0):
            closing = min(abs(delta), abs(quantity))
            proceeds = money if closing == abs(delta) else _scaled(money, closing, abs(delta))
            basis = self.cost if closing == abs(quantity) else _scaled(self.cost, closing, abs(quantity))
            self.realized += proceeds - basis
            self.cost -= basis
            step = closing if delta > 0 else -closing
            self.quantity = quantity + step
            delta -= step
            money -= proceeds
        if delta:
            self.quantity += delta
            self.cost -= money
        elif not self.quantity:
            self.cost = 0
        return True

    def as_row(self, spec: MarketSpec) -> tuple:
        """Return (quantity, cost, realized_pnl, bought, sold, last_fill_id) as stored."""
        base, quote = spec.base_step.format, spec.quote_step.format
        return (base(self.quantity), quote(self.cost), quote(self.realized), base(self.bought), base(self.sold),
                self.last_fill_id)

    @classmethod
    def from_row(cls, row, spec: MarketSpec) -> "Position":
        base, quote = spec.base_step, spec.quote_step
        return cls(parse_signed(base, row[0]), parse_signed(quote, row[1]), parse_signed(quote, row[2]),
                   base.parse(row[3]), base.parse(row[4]), row[5])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Position) and all(getattr(self, name) == getattr(other, name)
                                                   for name in self.__slots__)

    def __repr__(self) -> str:
        return "Position(" + ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__) + ")"
