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


class _Insert:
    """One table's insert, as SQLite and PostgreSQL each run it fastest.

    SQLite: `executemany` of a one-row INSERT (no round trips: it is in-process).
    PostgreSQL: one statement per batch, `INSERT ... SELECT * FROM unnest(%s::type[], ...)`
    with one array per column, instead of a round trip (or a pipelined statement) per row.
    Rows for an `ON CONFLICT DO UPDATE` must have distinct keys within a batch.
    """

    def __init__(self, table: str, columns: str, conflict: str) -> None:
        pairs = [column.split(":") for column in columns.split()]
        names = ", ".join(name for name, _ in pairs)
        placeholders = ", ".join("%s" for _ in pairs)
        # %b: arrays travel in binary, so the JSON of an order needs no array-literal escaping.
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in pairs)
        self.per_row = f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {conflict}"
        self.columnar = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}"

    def write(self, tx, dialect: str, rows) -> None:
        if dialect == "postgresql":
            tx.execute(self.columnar, [list(column) for column in zip(*rows)])
        else:
            tx.executemany(self.per_row, rows)


_ASSETS = _Insert("assets", "shard_id:int asset:text decimals:int", "ON CONFLICT (shard_id, asset) DO NOTHING")
_MARKETS = _Insert(
    "markets",
    "pair:text shard_id:int base:text quote:text tick_size:text lot_size:text base_decimals:int quote_decimals:int"
    " base_per_lot:bigint quote_per_tick_lot:bigint status:text journal_seq:bigint data:text",
    "ON CONFLICT (pair) DO UPDATE SET status = excluded.status, journal_seq = excluded.journal_seq,"
    " data = excluded.data WHERE markets.journal_seq < excluded.journal_seq",
)
_TRADES = _Insert("trades", "pair:text trade_id:bigint price:text quantity:text taker_side:text ts:bigint"
                            " journal_seq:bigint", "ON CONFLICT DO NOTHING")
_FILLS = _Insert(
    "fills",
    "account_id:bigint ts:bigint fill_id:bigint trade_id:bigint order_id:bigint pair:text side:text price:text"
    " quantity:text fee:text fee_asset:text liquidity:text journal_seq:bigint",
    "ON CONFLICT DO NOTHING",
)
_ORDERS = _Insert(
    "orders",
    "order_id:bigint account_id:bigint pair:text status:text is_open:int created_at:bigint updated_at:bigint"
    " journal_seq:bigint data:text client_order_id:text",
    "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, is_open = excluded.is_open,"
    " updated_at = excluded.updated_at, journal_seq = excluded.journal_seq, data = excluded.data"
    " WHERE orders.journal_seq < excluded.journal_seq",
)
_ORDER_EVENTS = _Insert(
    "order_events",
    "order_id:bigint journal_seq:bigint account_id:bigint status:text price:text quantity:text"
    " filled_quantity:text ts:bigint",
    "ON CONFLICT DO NOTHING",
)
_DEPOSITS = _Insert("deposits", "account_id:bigint ts:bigint deposit_id:bigint shard_id:int asset:text amount:text"
                                " journal_seq:bigint", "ON CONFLICT DO NOTHING")
_WITHDRAWALS = _Insert("withdrawals", "account_id:bigint ts:bigint withdrawal_id:bigint shard_id:int asset:text"
                                      " amount:text journal_seq:bigint", "ON CONFLICT DO NOTHING")
_BALANCES = _Insert(
    "balances",
    "account_id:bigint asset:text shard_id:int available:text locked:text journal_seq:bigint ts:bigint",
    "ON CONFLICT (account_id, asset, shard_id) DO UPDATE SET available = excluded.available,"
    " locked = excluded.locked, journal_seq = excluded.journal_seq, ts = excluded.ts"
    " WHERE balances.journal_seq < excluded.journal_seq",
)
_CANDLES = _Insert(
    "candles",
    "pair:text period:text open_time:bigint open:text high:text low:text close:text volume:text quote_volume:text"
    " trades:bigint first_trade_id:bigint last_trade_id:bigint taker_buy_volume:text taker_buy_quote_volume:text",
    "ON CONFLICT (pair, period, open_time) DO UPDATE SET open = excluded.open, high = excluded.high,"
    " low = excluded.low, close = excluded.close, volume = excluded.volume, quote_volume = excluded.quote_volume,"
    " trades = excluded.trades, first_trade_id = excluded.first_trade_id, last_trade_id = excluded.last_trade_id,"
    " taker_buy_volume = excluded.taker_buy_volume, taker_buy_quote_volume = excluded.taker_buy_quote_volume",
)
_POSITIONS = _Insert(
    "positions",
    "account_id:bigint pair:text quantity:text cost:text realized_pnl:text bought:text sold:text"
    " last_fill_id:bigint",
    "ON CONFLICT (account_id, pair) DO UPDATE SET quantity = excluded.quantity, cost = excluded.cost,"
    " realized_pnl = excluded.realized_pnl, bought = excluded.bought, sold = excluded.sold,"
    " last_fill_id = excluded.last_fill_id",
)
_CANDLE_COLUMNS = ("open, high, low, close, volume, quote_volume, trades, first_trade_id, last_trade_id,"
                   " taker_buy_volume, taker_buy_quote_volume")
_SELECT_CANDLE = f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE pair = %s AND period = %s AND open_time = %s"
_SELECT_LATEST_CANDLE = (f"SELECT open_time, {_CANDLE_COLUMNS} FROM candles WHERE pair = %s AND period = %s"
                         " ORDER BY open_time DESC LIMIT 1")
_SELECT_POSITION = ("SELECT quantity, cost, realized_pnl, bought, sold, last_fill_id FROM positions"
                    " WHERE account_id = %s AND pair = %s")


class RecorderWrites:
    """The Store's write side for the recorder (mixed into Store)."""

    def _init_writer(self) -> None:
        # shard_id -> lock: one batch of a shard at a time (shards share no candle, position
        # or progress rows: a market, hence its trades and fills, belongs to one shard).
        self._write_locks: dict[int, threading.Lock] = {}
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
        # The caches describe committed state: one writer per shard at a time.
        with self._write_locks.setdefault(batch.shard_id, threading.Lock()):
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
        dialect = self.dialect
        for insert, rows in ((_ASSETS, batch.assets), (_MARKETS, list(batch.markets.values())),
                             (_TRADES, batch.trades), (_FILLS, batch.fills), (_ORDERS, list(batch.orders.values())),
                             (_ORDER_EVENTS, batch.order_events), (_DEPOSITS, batch.deposits),
                             (_WITHDRAWALS, batch.withdrawals), (_BALANCES, list(batch.balances.values()))):
            if rows:
                insert.write(tx, dialect, rows)

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
            _CANDLES.write(tx, self.dialect, rows)

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
        _POSITIONS.write(tx, self.dialect, [(account_id, pair, *position.as_row(specs[pair]))
                                            for (account_id, pair), position in pending.items()])


__all__ = ["INTERVALS", "MarketSpec", "ProgressConflict", "RecorderWrites"]
