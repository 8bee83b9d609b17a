"""One market as the feed sees it: clone-pattern sync state, book replica, trades, stats. No I/O.

The server hands a `MarketFeed` every decoded `md.<PAIR>` message and the matcher's
snapshot replies, and calls `tick(now_ms)` once per conflation interval; the market
answers with the outgoing messages of its channels, each encoded and framed once.

Sync states
    SYNCING: updates are buffered until a snapshot arrives (`on_snapshot`); then the
    buffered updates after the snapshot's seq are applied and the market is LIVE.
    LIVE: each update must be the next seq. A gap, a heartbeat whose seq differs from the
    replica's, or an update at a seq already applied that lies after the snapshot (the
    matcher went back) makes `on_update`/`on_heartbeat` return True: the caller calls
    `start_sync()` and asks for a new snapshot. A market silent for longer than the
    caller's heartbeat timeout is resynced the same way.

A heartbeat (the market is idle) lets the next tick send an empty diff to clients whose
last message's seq lags, so every client learns within a heartbeat that it is current.

Trades do not wait for the book: every update's trades are taken once (by seq) as soon
as it arrives, in SYNCING too, for the trades channel and the statistics.

After a resync, `on_snapshot` says whether the book differs from what clients hold; only
then do subscribers get a fresh snapshot (a matcher that restarted with the same state
costs them nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.types import InexactValue, Step
from feed import protocol
from feed.replica import GAP, STALE, BookReplica, Levels
from feed.stats import Candle, MarketStats, Ticker

SYNCING, LIVE = "syncing", "live"
_SIZE_CACHE_LIMIT = 4096


class MarketInfo:
    """A market's steps, from the matcher's `markets` reply: decimal strings <-> integers."""

    __slots__ = ("pair", "tick", "lot", "quote_step", "quote_per_tick_lot", "_sizes")

    def __init__(self, pair: str, tick_size: str, lot_size: str, quote_decimals: int) -> None:
        self.pair = pair
        self.tick = Step(tick_size)
        self.lot = Step(lot_size)
        self.quote_step = Step.from_decimals(quote_decimals)
        notional = Step(f"{self.tick.multiplier * self.lot.multiplier}e-{self.tick.decimals + self.lot.decimals}")
        self.quote_per_tick_lot = notional.units_per(self.quote_step)
        self._sizes: dict[str, int] = {}

    @classmethod
    def from_markets_reply(cls, reply: dict[str, Any]) -> dict[str, "MarketInfo"]:
        """Return every market of a `markets` reply by pair."""
        decimals = {asset["asset"]: asset["decimals"] for asset in reply["assets"]}
        return {market["pair"]: cls(market["pair"], market["tick_size"], market["lot_size"],
                                    decimals[market["quote"]])
                for market in reply["markets"]}

    def levels(self, levels: list[list[str]]) -> Levels:
        """Parse [[price, size]...] into integers; a size of zero stays 0 (delete)."""
        price_of, sizes = self.tick.parse_positive_cached, self._sizes
        parsed = []
        for price, size in levels:
            lots = sizes.get(size)
            if lots is None:
                lots = self.lot.parse(size)
                if len(sizes) >= _SIZE_CACHE_LIMIT:
                    sizes.clear()
                sizes[size] = lots
            parsed.append((price_of(price), lots))
        return parsed

    def format_levels(self, levels: Levels) -> list[list[str]]:
        price, size = self.tick.format_cached, self.lot.format_cached
        return [[price(ticks), size(lots)] for ticks, lots in levels]

    def price(self, ticks: int | None) -> str | None:
        return None if ticks is None else self.tick.format_cached(ticks)


class MarketFeed:
    """The sync state, replica, pending trades and statistics of one market."""

    def __init__(self, info: MarketInfo) -> None:
        self.info = info
        self.pair = info.pair
        self.replica = BookReplica()
        self.state = SYNCING
        self.synced_once = False
        self.snapshot_seq = 0
        self._buffer: list[tuple[int, Levels, Levels, int]] = []
        self.seq = 0  # newest seq seen in any message
        self.ts = 0  # ms of the newest event
        self.trade_seq = 0
        self._trades: list[dict[str, Any]] = []
        self._trades_seq = 0
        self._trades_ts = 0
        self.stats = MarketStats(info.quote_per_tick_lot)
        self.stats_ready = False  # false until seeded (or given up seeding): trades wait
        self._unseeded_trades: list[tuple[int, int, int, int]] = []
        self._best: tuple | None = None
        self._idle = False
        self.book_channel = f"orderbook.{self.pair}"
        self.trades_channel = f"trades.{self.pair}"
        self.ticker_channel = f"ticker.{self.pair}"
        self.candle_channels = {interval: f"candles.{self.pair}.{interval}" for interval in protocol.CANDLE_INTERVALS}

    # ---------------------------------------------------------------- clone pattern

    def start_sync(self) -> None:
        """Buffer updates from now on until the next snapshot."""
        self.state = SYNCING
        self._buffer = []

    def on_update(self, message: dict[str, Any]) -> bool:
        """Take one `update` message; return True if the caller must resync the book."""
        seq = message["seq"]
        ts = message["ts"]
        if seq > self.seq:
            self.seq = seq
        if ts > self.ts:
            self.ts = ts
        trades = message["trades"]
        if trades and seq > self.trade_seq:
            self._take_trades(seq, ts, trades)
        info = self.info
        bids = info.levels(message["bids"]) if message["bids"] else []
        asks = info.levels(message["asks"]) if message["asks"] else []
        if self.state is SYNCING:
            self._buffer.append((seq, bids, asks, ts))
            return False
        outcome = self.replica.apply(seq, bids, asks)
        if outcome is GAP:
            return True
        # A seq already applied after the snapshot can only come from a matcher that went back.
        return outcome is STALE and seq > self.snapshot_seq

    def on_heartbeat(self, message: dict[str, Any]) -> bool:
        """Take one heartbeat; return True if it shows the replica is out of date."""
        seq = message["seq"]
        if seq > self.seq:
            self.seq = seq
        if self.state is not LIVE:
            return False
        if not self.replica.check_heartbeat(seq):
            return True
        self._idle = True  # the next tick brings lagging clients up to this seq
        return False

    def on_snapshot(self, snapshot: dict[str, Any]) -> tuple[bool, bool]:
        """Load the matcher's snapshot and the buffered updates after it.

        Returns (in sync, book changed for clients): not in sync means a buffered update
        is missing (resync again); changed means subscribers need a fresh snapshot.
        """
        seq = snapshot["seq"]
        info = self.info
        bids, asks = info.levels(snapshot["bids"]), info.levels(snapshot["asks"])
        replica = self.replica
        unchanged = self.synced_once and replica.seq == seq and _same_book(replica, bids, asks)
        if not unchanged:
            replica.reset(seq, bids, asks)
        self.snapshot_seq = seq
        if snapshot.get("ts", 0) > self.ts:
            self.ts = snapshot["ts"]
        if seq > self.seq:
            self.seq = seq
        buffered, self._buffer = self._buffer, []
        for update_seq, update_bids, update_asks, _ in buffered:
            if replica.apply(update_seq, update_bids, update_asks) is GAP:
                self.state = SYNCING
                return False, not unchanged
        self.state = LIVE
        self.synced_once = True
        return True, not unchanged

    # ---------------------------------------------------------------- trades and statistics

    def _take_trades(self, seq: int, ts: int, trades: list[dict[str, Any]]) -> None:
        self.trade_seq = seq
        self._trades.extend(trades)
        self._trades_seq = seq
        if ts > self._trades_ts:
            self._trades_ts = ts
        tick, lot = self.info.tick.parse_positive_cached, self.info.lot.parse_positive_cached
        for trade in trades:
            counted = (trade["trade_id"], trade["ts"], tick(trade["price"]), lot(trade["quantity"]))
            if self.stats_ready:
                self.stats.add_trade(*counted)
            else:
                self._unseeded_trades.append(counted)

    def seed_stats(self, seed: tuple | None) -> None:
        """Load the history store's statistics (None: none available), then count the trades held back."""
        if seed is not None:
            self.stats.seed(*seed)
        for trade in self._unseeded_trades:
            self.stats.add_trade(*trade)
        self._unseeded_trades = []
        self.stats_ready = True

    # ---------------------------------------------------------------- outgoing messages

    def tick(self, now_ms: int, wanted: Callable[[str], bool]) -> list[tuple[str, bytes]]:
        """Return (channel, frame) for every channel with news since the last tick and subscribers."""
        out: list[tuple[str, bytes]] = []
        info = self.info
        if self.state is LIVE:
            diff = self.replica.flush(catch_up=self._idle)
            self._idle = False
            if diff is not None and wanted(self.book_channel):
                out.append((self.book_channel, _frame(self.book_channel, "diff", diff.seq, {
                    "bids": info.format_levels(diff.bids), "asks": info.format_levels(diff.asks)}, self.ts,
                    diff.first_seq)))
            for depth, view in self.replica.views.items():
                if view.pending is not None:
                    channel = f"{self.book_channel}.{depth}"
                    out.append((channel, _frame(channel, "diff", view.pending.seq, {
                        "bids": info.format_levels(view.pending.bids), "asks": info.format_levels(view.pending.asks)},
                        self.ts, view.pending.first_seq)))
                    view.pending = None
        if self._trades:
            if wanted(self.trades_channel):
                out.append((self.trades_channel, _frame(self.trades_channel, "update", self._trades_seq,
                                                        self._trades, self._trades_ts)))
            self._trades = []
        if not self.stats_ready:
            return out
        stats = self.stats
        stats.advance(now_ms)
        closed, changed, ticker_changed = stats.take_changes()
        for interval, open_time, candle in closed:
            channel = self.candle_channels[interval]
            if wanted(channel):
                out.append((channel, _frame(channel, "update", self.seq,
                                            self.candle_data(interval, open_time, candle, True), self.ts)))
        for interval, open_time, candle in changed:
            channel = self.candle_channels[interval]
            if wanted(channel):
                out.append((channel, _frame(channel, "update", self.seq,
                                            self.candle_data(interval, open_time, candle, False), self.ts)))
        best = self.replica.best() if self.synced_once else (None, None)
        if best != self._best:
            self._best = best
            ticker_changed = True
        if ticker_changed and wanted(self.ticker_channel):
            out.append((self.ticker_channel, _frame(self.ticker_channel, "update", self.seq,
                                                    self.ticker_data(stats.ticker(now_ms)), self.ts)))
        return out

    def book_snapshot(self, depth: int | None) -> bytes:
        """Return the snapshot message of `orderbook.PAIR[.depth]`: the published book and its seq."""
        seq, bids, asks = self.replica.published_snapshot(depth)
        channel = self.book_channel if depth is None else f"{self.book_channel}.{depth}"
        info = self.info
        return _frame(channel, "snapshot", seq, {"pair": self.pair, "seq": seq, "bids": info.format_levels(bids),
                                                 "asks": info.format_levels(asks), "ts": self.ts}, self.ts)

    def ticker_snapshot(self, now_ms: int) -> bytes:
        self.stats.advance(now_ms)
        return _frame(self.ticker_channel, "snapshot", self.seq, self.ticker_data(self.stats.ticker(now_ms)), self.ts)

    def candle_snapshot(self, interval: str, now_ms: int) -> bytes:
        """Return the current candle of `interval` (data null when the interval has no trade yet)."""
        self.stats.advance(now_ms)
        current = self.stats.candles.get(interval)
        data = None if current is None else self.candle_data(interval, current[0], current[1], False)
        return _frame(self.candle_channels[interval], "snapshot", self.seq, data, self.ts)

    def ticker_data(self, ticker: Ticker) -> dict[str, Any]:
        info = self.info
        price, lot = info.price, info.lot.format
        change = ticker.change
        basis_points = ticker.change_basis_points
        bid, ask = self.replica.best() if self.synced_once else (None, None)
        return {
            "pair": self.pair,
            "open_time": ticker.open_time,
            "close_time": ticker.close_time,
            "last": price(ticker.last),
            "open": price(ticker.open),
            "high": price(ticker.high),
            "low": price(ticker.low),
            "volume": lot(ticker.volume),
            "quote_volume": info.quote_step.format(ticker.quote_volume),
            "change": None if change is None else info.tick.format(change),
            "change_percent": None if basis_points is None else _percent(basis_points),
            "trades": ticker.trades,
            "best_bid": None if bid is None else price(bid[0]),
            "best_bid_quantity": None if bid is None else lot(bid[1]),
            "best_ask": None if ask is None else price(ask[0]),
            "best_ask_quantity": None if ask is None else lot(ask[1]),
        }

    def candle_data(self, interval: str, open_time: int, candle: Candle, closed: bool) -> dict[str, Any]:
        info = self.info
        price = info.tick.format_cached
        return {
            "pair": self.pair,
            "interval": interval,
            "open_time": open_time,
            "close_time": open_time + protocol.CANDLE_INTERVALS[interval] - 1,
            "open": price(candle.open),
            "high": price(candle.high),
            "low": price(candle.low),
            "close": price(candle.close),
            "volume": info.lot.format(candle.volume),
            "quote_volume": info.quote_step.format(candle.quote_volume),
            "trades": candle.trades,
            "closed": closed,
        }


def _same_book(replica: BookReplica, bids: Levels, asks: Levels) -> bool:
    current_bids, current_asks = replica.top(max(len(replica.bids), len(replica.asks), 1))
    return current_bids == sorted(bids, reverse=True) and current_asks == sorted(asks)


def _percent(basis_points: int) -> str:
    sign = "-" if basis_points < 0 else ""
    whole, fraction = divmod(abs(basis_points), 100)
    return f"{sign}{whole}.{fraction:02d}"


def _frame(channel: str, kind: str, seq: int | None, payload: Any, ts: int, first_seq: int | None = None) -> bytes:
    return protocol.text_frame(protocol.data(channel, kind, seq, payload, ts, first_seq))


def parse_candle(row: dict[str, Any], info: MarketInfo) -> tuple[int, Candle]:
    """Parse one candle of the history store into (open_time, Candle); trade ids are unknown there (0)."""
    tick = info.tick.parse
    try:
        return row["open_time"], Candle(tick(row["open"]), tick(row["high"]), tick(row["low"]), tick(row["close"]),
                                        info.lot.parse(row["volume"]), info.quote_step.parse(row["quote_volume"]),
                                        row["trades"], 0, 0)
    except InexactValue as error:
        raise ValueError(f"store candle of {info.pair} at {row.get('open_time')}: {error}") from None
