"""The recorder's write path: one Batch and the shard's progress in one transaction.

Exactly once, twice over:
- the progress row is advanced with a compare-and-set (`UPDATE ... WHERE journal_seq =
  expected`), so a batch is written only on top of the progress it was built from; a
  second recorder of the same shard, or a commit whose outcome was lost with the
  connection, shows up as `ProgressConflict` and the recorder re-reads its progress;
- every row has a natural unique key and is inserted with `ON CONFLICT DO NOTHING` (or an
  upsert that only moves forward in journal order), so rows written twice are stored once.

Candles and positions are state merged from trades and fills (common/store/aggregates.py);
they skip what they have already merged by watermark (the highest trade id per market's
candles, the last fill id per position), so they too count a replayed record once. The
writer keeps the state it last committed in memory, so the usual batch reads nothing
back; the cache is updated only after a commit succeeds and dropped on a conflict.
"""

from __future__ import annotations

import threading

from common.store.aggregates import INTERVALS, Candle, Position, minute_candles, roll_up
from common.store.batch import Batch, MarketSpec
from common.store.store import now_ms

# Cached positions: one entry per (account, market) traded; dropped wholesale when full.
POSITION_CACHE_LIMIT = 200_000


class ProgressConflict(Exception):
    """The shard's stored progress is not what the batch was built on."""

    def __init__(self, shard_id: int, expected: int, found: int | None) -> None:
        super().__init__(f"shard {shard_id}: stored progress is {found}, the batch follows {expected}")
        self.shard_id = shard_id
        self.expected = expected
        self.found = found


_INSERT_ASSET = ("INSERT INTO assets (shard_id, asset, decimals) VALUES (%s, %s, %s)"
                 " ON CONFLICT (shard_id, asset) DO NOTHING")
_UPSERT_MARKET = (
    "INSERT INTO markets (pair, shard_id, base, quote, tick_size, lot_size, base_decimals, quote_decimals,"
    " base_per_lot, quote_per_tick_lot, status, journal_seq, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (pair) DO UPDATE SET status = excluded.status, journal_seq = excluded.journal_seq,"
    " data = excluded.data WHERE markets.journal_seq < excluded.journal_seq"
)
_INSERT_TRADE = ("INSERT INTO trades (pair, trade_id, price, quantity, taker_side, ts, journal_seq)"
                 " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
_INSERT_FILL = (
    "INSERT INTO fills (account_id, ts, fill_id, trade_id, order_id, pair, side, price, quantity, fee, fee_asset,"
    " liquidity, journal_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_UPSERT_ORDER = (
    "INSERT INTO orders (order_id, account_id, pair, status, is_open, created_at, updated_at, journal_seq, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, is_open = excluded.is_open,"
    " updated_at = excluded.updated_at, journal_seq = excluded.journal_seq, data = excluded.data"
    " WHERE orders.journal_seq < excluded.journal_seq"
)
_INSERT_ORDER_EVENT = (
    "INSERT INTO order_events (order_id, journal_seq, account_id, status, price, quantity, filled_quantity, ts)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_INSERT_DEPOSIT = ("INSERT INTO deposits (account_id, ts, deposit_id, shard_id, asset, amount, journal_seq)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
_INSERT_WITHDRAWAL = ("INSERT INTO withdrawals (account_id, ts, withdrawal_id, shard_id, asset, amount, journal_seq)"
                      " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
_UPSERT_BALANCE = (
    "INSERT INTO balances (account_id, asset, shard_id, available, locked, journal_seq, ts)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (account_id, asset, shard_id) DO UPDATE SET available = excluded.available,"
    " locked = excluded.locked, journal_seq = excluded.journal_seq, ts = excluded.ts"
    " WHERE balances.journal_seq < excluded.journal_seq"
)
_UPSERT_CANDLE = (
    "INSERT INTO candles (pair, period, open_time, open, high, low, close, volume, quote_volume, trades,"
    " first_trade_id, last_trade_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (pair, period, open_time) DO UPDATE SET open = excluded.open, high = excluded.high,"
    " low = excluded.low, close = excluded.close, volume = excluded.volume, quote_volume = excluded.quote_volume,"
    " trades = excluded.trades, first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id"
)
_SELECT_CANDLE = ("SELECT open, high, low, close, volume, quote_volume, trades, first_trade_id, last_trade_id"
                  " FROM candles WHERE pair = %s AND period = %s AND open_time = %s")
_SELECT_LATEST_CANDLE = ("SELECT open_time, open, high, low, close, volume, quote_volume, trades, first_trade_id,"
                         " last_trade_id FROM candles WHERE pair = %s AND period = %s"
                         " ORDER BY open_time DESC LIMIT 1")
_UPSERT_POSITION = (
    "INSERT INTO positions (account_id, pair, quantity, cost, realized_pnl, bought, sold, last_fill_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (account_id, pair) DO UPDATE SET quantity = excluded.quantity, cost = excluded.cost,"
    " realized_pnl = excluded.realized_pnl, bought = excluded.bought, sold = excluded.sold,"
    " last_fill_id = excluded.last_fill_id"
)
_SELECT_POSITION = ("SELECT quantity, cost, realized_pnl, bought, sold, last_fill_id FROM positions"
                    " WHERE account_id = %s AND pair = %s")


class RecorderWrites:
    """The Store's write side for the recorder (mixed into Store)."""

    def _init_writer(self) -> None:
        self._write_lock = threading.Lock()
        # (pair, interval) -> (open_time, Candle) of the newest bucket committed
        self._latest_candles: dict[tuple[str, str], tuple[int, Candle]] = {}
        # pair -> highest trade id merged into its candles
        self._candle_marks: dict[str, int] = {}
        self._positions: dict[tuple[int, str], Position] = {}

    def recorder_progress(self, shard_id: int) -> int:
        """Return the last journal seq of the shard written to the store (0 if none)."""
        with self.backend.transaction() as tx:
            row = tx.execute("SELECT journal_seq FROM recorder_progress WHERE shard_id = %s", (shard_id,)).fetchone()
        return 0 if row is None else row[0]

    def write_batch(self, batch: Batch, after_seq: int | None = None) -> None:
        """Write the batch and advance the shard's progress from `after_seq` to `batch.last_seq`.

        `after_seq` defaults to the seq before the batch's first record. Raises
        ProgressConflict (writing nothing) when the stored progress differs from it.
        """
        expected = batch.first_seq - 1 if after_seq is None else after_seq
        # One writer per Store at a time: the caches below describe committed state.
        with self._write_lock:
            candles: dict[tuple[str, str], tuple[int, Candle]] = {}
            marks: dict[str, int] = {}
            positions: dict[tuple[int, str], Position] = {}
            try:
                with self.backend.transaction(write=True) as tx:
                    self._advance_progress(tx, batch.shard_id, expected, batch.last_seq)
                    self._write_rows(tx, batch)
                    if batch.candle_trades:
                        self._merge_candles(tx, batch, candles, marks)
                    if batch.position_fills:
                        self._merge_positions(tx, batch, positions)
            except ProgressConflict:
                self._latest_candles.clear()
                self._candle_marks.clear()
                self._positions.clear()
                raise
            self._latest_candles.update(candles)
            self._candle_marks.update(marks)
            if len(self._positions) + len(positions) > POSITION_CACHE_LIMIT:
                self._positions.clear()
            self._positions.update(positions)

    def _advance_progress(self, tx, shard_id: int, expected: int, new_seq: int) -> None:
        updated = tx.execute(
            "UPDATE recorder_progress SET journal_seq = %s, updated_at = %s WHERE shard_id = %s AND journal_seq = %s",
            (new_seq, now_ms(), shard_id, expected),
        ).rowcount
        if updated == 1:
            return
        if expected == 0:
            inserted = tx.execute(
                "INSERT INTO recorder_progress (shard_id, journal_seq, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (shard_id) DO NOTHING",
                (shard_id, new_seq, now_ms()),
            ).rowcount
            if inserted == 1:
                return
        row = tx.execute("SELECT journal_seq FROM recorder_progress WHERE shard_id = %s", (shard_id,)).fetchone()
        raise ProgressConflict(shard_id, expected, None if row is None else row[0])

    def _write_rows(self, tx, batch: Batch) -> None:
        if batch.assets:
            tx.executemany(_INSERT_ASSET, batch.assets)
        if batch.markets:
            tx.executemany(_UPSERT_MARKET, list(batch.markets.values()))
        if batch.trades:
            tx.executemany(_INSERT_TRADE, batch.trades)
        if batch.fills:
            tx.executemany(_INSERT_FILL, batch.fills)
        if batch.orders:
            tx.executemany(_UPSERT_ORDER, list(batch.orders.values()))
        if batch.order_events:
            tx.executemany(_INSERT_ORDER_EVENT, batch.order_events)
        if batch.deposits:
            tx.executemany(_INSERT_DEPOSIT, batch.deposits)
        if batch.withdrawals:
            tx.executemany(_INSERT_WITHDRAWAL, batch.withdrawals)
        if batch.balances:
            tx.executemany(_UPSERT_BALANCE, list(batch.balances.values()))

    # ------------------------------------------------------------------ candles

    def _merge_candles(self, tx, batch: Batch, pending: dict[tuple[str, str], tuple[int, Candle]],
                       marks: dict[str, int]) -> None:
        # Trade ids only grow within a market, so the highest one merged is a watermark:
        # trades at or below it are already in the candles (a replay) and are skipped.
        trades = []
        for trade in batch.candle_trades:
            pair = trade[0]
            mark = marks.get(pair)
            if mark is None:
                mark = self._candle_marks.get(pair)
                if mark is None:
                    mark = tx.execute("SELECT MAX(last_trade_id) FROM candles WHERE pair = %s AND period = '1d'",
                                      (pair,)).fetchone()[0] or 0
            if trade[1] > mark:
                trades.append(trade)
                mark = trade[1]
            marks[pair] = mark
        rows = []
        for (pair, interval, open_time), partial in roll_up(minute_candles(trades, batch.specs)).items():
            spec = batch.specs[pair]
            key = (pair, interval)
            latest = pending.get(key) or self._latest_candles.get(key)
            if latest is None:
                found = tx.execute(_SELECT_LATEST_CANDLE, (pair, interval)).fetchone()
                latest = (found[0], Candle.from_row(found[1:], spec)) if found is not None else (-1, None)
            latest_time, latest_candle = latest
            if open_time == latest_time:
                candle = latest_candle.copy()
                candle.merge(partial)
            elif open_time > latest_time:
                candle = partial  # newer than anything stored for this pair and interval
            else:
                # An older bucket (the matcher's clock stepped back): read it.
                found = tx.execute(_SELECT_CANDLE, (pair, interval, open_time)).fetchone()
                candle = partial
                if found is not None:
                    candle = Candle.from_row(found, spec)
                    candle.merge(partial)
            if open_time >= latest_time:
                pending[key] = (open_time, candle)
            rows.append((pair, interval, open_time, *candle.as_row(spec)))
        if rows:
            tx.executemany(_UPSERT_CANDLE, rows)

    # ------------------------------------------------------------------ positions

    def _merge_positions(self, tx, batch: Batch, pending: dict[tuple[int, str], Position]) -> None:
        cache = self._positions
        specs = batch.specs
        for account_id, pair, trade_id, is_buy, lots, ticks, fee in batch.position_fills:
            key = (account_id, pair)
            position = pending.get(key)
            if position is None:
                cached = cache.get(key)
                if cached is not None:
                    position = Position(cached.quantity, cached.cost, cached.realized, cached.bought, cached.sold,
                                        cached.last_fill_id)
                else:
                    found = tx.execute(_SELECT_POSITION, key).fetchone()
                    position = Position.from_row(found, specs[pair]) if found is not None else Position()
                pending[key] = position
            position.apply(trade_id * 2 + (0 if is_buy else 1), is_buy, lots, ticks, fee, specs[pair])
        tx.executemany(_UPSERT_POSITION, [(account_id, pair, *position.as_row(specs[pair]))
                                          for (account_id, pair), position in pending.items()])


__all__ = ["INTERVALS", "MarketSpec", "ProgressConflict", "RecorderWrites"]
