"""What the recorder hands the store in one transaction: the rows of a run of journal records.

The recorder (`common/recorder/replica.py`) fills a `Batch` while its engine replica
executes journal records; `Store.write_batch` writes it, with the shard's new progress, in
one transaction. Each list holds tuples in the column order of its table (see
`common/store/migrations.py`); every row carries a natural unique key, so writing the same
records twice stores nothing twice.

Two lists are not tables but inputs to state kept per key, merged by the writer inside the
transaction: `candle_trades` (one per trade, for the seven candle intervals) and
`position_fills` (one per fill, for positions with average cost). `specs` carries the
numbers of every market they mention, so the writer needs no lookups to do exact integer
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.types import Step


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """A market's steps and conversion factors (as in matcher.engine.Market)."""

    pair: str
    base: str
    quote: str
    tick: Step
    lot: Step
    base_step: Step
    quote_step: Step
    base_per_lot: int
    quote_per_tick_lot: int


class Batch:
    """Rows produced by journal records `first_seq`..`last_seq` of one shard."""

    __slots__ = ("shard_id", "first_seq", "last_seq", "assets", "markets", "trades", "fills", "orders",
                 "order_events", "deposits", "withdrawals", "balances", "candle_trades", "position_fills",
                 "specs")

    def __init__(self, shard_id: int, after_seq: int) -> None:
        self.shard_id = shard_id
        self.first_seq = after_seq + 1
        self.last_seq = after_seq
        # (shard_id, asset, decimals)
        self.assets: list[tuple] = []
        # pair -> (pair, shard_id, base, quote, tick_size, lot_size, base_decimals, quote_decimals,
        #          base_per_lot, quote_per_tick_lot, status, journal_seq, data)
        self.markets: dict[str, tuple] = {}
        # (pair, trade_id, price, quantity, taker_side, ts, journal_seq)
        self.trades: list[tuple] = []
        # (account_id, ts, fill_id, trade_id, order_id, pair, side, price, quantity, fee, fee_asset,
        #  liquidity, journal_seq)
        self.fills: list[tuple] = []
        # order_id -> (order_id, account_id, pair, status, is_open, created_at, updated_at, journal_seq, data):
        # only the order's latest state in the batch
        self.orders: dict[int, tuple] = {}
        # (order_id, journal_seq, account_id, status, price, quantity, filled_quantity, ts): every change
        self.order_events: list[tuple] = []
        # (account_id, ts, deposit_id / withdrawal_id, shard_id, asset, amount, journal_seq)
        self.deposits: list[tuple] = []
        self.withdrawals: list[tuple] = []
        # (account_id, asset) -> (account_id, asset, shard_id, available, locked, journal_seq, ts)
        self.balances: dict[tuple[int, str], tuple] = {}
        # (pair, trade_id, ts, price ticks, lots)
        self.candle_trades: list[tuple] = []
        # (account_id, pair, trade_id, is_buy, lots, price ticks, fee in units of the asset received)
        self.position_fills: list[tuple] = []
        self.specs: dict[str, MarketSpec] = {}

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def events(self) -> int:
        """Rows of fills, orders (every change) and trades: what the benchmark counts."""
        return len(self.fills) + len(self.order_events) + len(self.trades)

    def __repr__(self) -> str:
        return (f"Batch(shard {self.shard_id}, seq {self.first_seq}..{self.last_seq}, {len(self.trades)} trades,"
                f" {len(self.fills)} fills, {len(self.order_events)} order changes)")
