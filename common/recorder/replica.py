"""The recorder's engine replica: journal records in, store rows out. No I/O.

The matcher's journal is the source of truth and every journaled command is
deterministic given (command, ts), so executing the same records through the same
`Dispatcher` on an `Engine` rebuilds the matcher's state exactly, and after each record the
engine's `public` and `private` updates say what it changed. `Replica.apply` executes one
record and, when given a `Batch`, turns those updates (and the command itself, for
deposits, withdrawals and market administration) into rows, rendered with
`common/protocol`'s functions so each shape is defined once.
"""

from __future__ import annotations

from typing import Any

import orjson

from common import protocol
from common.protocol import Command
from common.store.batch import Batch, MarketSpec
from common.types import OrderStatus, Side
from matcher import snapshot
from matcher.dispatch import Dispatcher
from matcher.engine import SHARD_BITS, Engine

# The matcher refused what went over its limit before journaling; the replica must never
# refuse a journaled command because its own limit differs.
REPLICA_MAX_OPEN_ORDERS = 1 << 62
_SIDE = {Side.BUY: "buy", Side.SELL: "sell"}
_OPEN = {status: status <= OrderStatus.PARTIALLY_FILLED for status in OrderStatus}


class ReplicaError(Exception):
    """The journal and the replica disagree: a gap in the records, or a journaled command refused."""


class Replica:
    """An Engine kept at journal seq `journal_seq` by executing the shard's records in order."""

    def __init__(self, engine: Engine, journal_seq: int) -> None:
        engine.max_open_orders = REPLICA_MAX_OPEN_ORDERS
        self.engine = engine
        self.shard_id = engine.shard_id
        self.journal_seq = journal_seq
        self.dispatcher = Dispatcher(engine, replies=False)
        self._specs: dict[str, MarketSpec] = {}

    @classmethod
    def empty(cls, shard_id: int) -> "Replica":
        return cls(Engine(shard_id), 0)

    @classmethod
    def from_state(cls, payload: bytes, journal_seq: int, shard_id: int) -> "Replica":
        """Load a `matcher.snapshot.encode` payload taken after record `journal_seq`."""
        engine = snapshot.decode(payload)
        if engine.shard_id != shard_id:
            raise ReplicaError(f"snapshot of shard {engine.shard_id}, expected shard {shard_id}")
        return cls(engine, journal_seq)

    def state(self) -> bytes:
        """Return the engine's state as `matcher.snapshot.encode` bytes (at `journal_seq`)."""
        return snapshot.encode(self.engine)

    def apply(self, seq: int, ts: int, cmd: dict[str, Any], batch: Batch | None = None) -> None:
        """Execute journal record `seq`; add the rows it produces to `batch` when given."""
        if seq != self.journal_seq + 1:
            raise ReplicaError(f"shard {self.shard_id}: record {seq} does not follow {self.journal_seq}")
        command = protocol.command_from_json(cmd)
        data, reject = self.dispatcher.execute(command, ts)
        if reject is not None:
            raise ReplicaError(f"shard {self.shard_id}: journaled record {seq} refused on replay: "
                               f"{command!r}: {reject!r}")
        self.journal_seq = seq
        if batch is not None:
            self._record(command, seq, ts, batch)
            batch.last_seq = seq

    # ------------------------------------------------------------------ rows

    def _spec(self, pair: str) -> MarketSpec:
        spec = self._specs.get(pair)
        if spec is None:
            market = self.engine.markets[pair]
            assets = self.engine.assets
            spec = self._specs[pair] = MarketSpec(
                pair, market.base, market.quote, market.tick, market.lot, assets[market.base],
                assets[market.quote], market.base_per_lot, market.quote_per_tick_lot,
            )
        return spec

    def _record(self, command: Command, seq: int, ts: int, batch: Batch) -> None:
        engine = self.engine
        markets, assets = engine.markets, engine.assets
        shard_id = self.shard_id
        ts_ms = ts // 1_000_000
        op = command.op
        for update in engine.public:
            pair = update.market
            market = markets[pair]
            if update.trades:
                if pair not in batch.specs:
                    batch.specs[pair] = self._spec(pair)
                tick_format, lot_format = market.tick.format_cached, market.lot.format_cached
                for trade_id, price, lots, taker_side, trade_ts in update.trades:
                    trade_ms = trade_ts // 1_000_000
                    batch.trades.append((pair, trade_id, tick_format(price), lot_format(lots), _SIDE[taker_side],
                                         trade_ms, seq))
                    batch.candle_trades.append((pair, trade_id, trade_ms, price, lots, taker_side == Side.BUY))
            if update.halted is not None:
                batch.markets[pair] = self._market_row(market, seq)
        for update in engine.private:
            account_id = update.account_id
            for order in update.orders:
                market = markets[order.market]
                message = protocol.order_message(order, market, assets)
                del message["fills"]
                order_id = order.order_id
                status = message["status"]
                batch.orders[order_id] = (
                    order_id, account_id, order.market, status, 1 if _OPEN[order.status] else 0,
                    message["created_at"], message["updated_at"], seq, orjson.dumps(message).decode(),
                    order.client_order_id,
                )
                batch.order_events.append((order_id, seq, account_id, status, message["price"], message["quantity"],
                                           message["filled_quantity"], ts_ms))
            for fill in update.fills:
                order = fill.order
                pair = order.market
                market = markets[pair]
                message = protocol.fill_message(fill, market, assets)
                trade_id = fill.trade_id
                # Each trade has one buy fill and one sell fill: the pair is unique, even
                # when an account trades with itself.
                fill_id = trade_id * 2 + int(order.side)
                batch.fills.append((account_id, ts_ms, fill_id, trade_id, order.order_id, pair, message["side"],
                                    message["price"], message["quantity"], message["fee"], message["fee_asset"],
                                    message["liquidity"], seq))
                batch.position_fills.append((account_id, pair, trade_id, order.side == Side.BUY, fill.quantity,
                                             fill.price, fill.fee))
                if pair not in batch.specs:
                    batch.specs[pair] = self._spec(pair)
            for asset, available, locked in update.balances:
                balance = protocol.balance_message(asset, available, locked, assets[asset])
                batch.balances[(account_id, asset)] = (account_id, asset, shard_id, balance["available"],
                                                       balance["locked"], seq, ts_ms)
        if op == "deposit" or op == "withdraw":
            fields = command.fields
            step = assets[fields["asset"]]
            amount = step.format(step.parse(fields["amount"]))
            row = (fields["account_id"], ts_ms, (seq << SHARD_BITS) | shard_id, shard_id, fields["asset"], amount, seq)
            (batch.deposits if op == "deposit" else batch.withdrawals).append(row)
        elif op == "create_market":
            market = markets[command.fields["pair"]]
            for asset in (market.base, market.quote):
                batch.assets.append((shard_id, asset, assets[asset].decimals))
            batch.markets[market.symbol] = self._market_row(market, seq)
        elif op == "create_asset":
            asset = command.fields["asset"]
            batch.assets.append((shard_id, asset, assets[asset].decimals))

    def _market_row(self, market, seq: int) -> tuple:
        assets = self.engine.assets
        message = protocol.market_message(market, assets)
        del message["seq"]  # the market's seq moves with every update; the row does not follow it
        return (market.symbol, self.shard_id, market.base, market.quote, market.tick.text, market.lot.text,
                assets[market.base].decimals, assets[market.quote].decimals, market.base_per_lot,
                market.quote_per_tick_lot, message["status"], seq, orjson.dumps(message).decode())
