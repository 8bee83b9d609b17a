"""Engine state <-> a JSON-safe dict, so a matcher can restart from a snapshot plus its journal.

`dump(engine)` returns only str / int / bool / None / list / dict; `encode`/`decode` turn
that into bytes with the standard library's json, which, unlike orjson, keeps integers of
any size (an 18-decimal asset passes 2**64 units at about 18 whole coins);
`load(state)` builds an `Engine` that continues exactly as the dumped one would: the same
next order and trade ids, the same per-market and per-account sequence numbers, the same
queue priority, and the same order of open orders within each account (which decides
the order in which `cancel_all` reports them).

Layout (version 1)
    shard_id, max_open_orders, order_counter, trade_counter
    assets          {symbol: step text}, e.g. {"BTC": "0.00000001"}
    markets         [{symbol, base, quote, tick_size, lot_size (step texts), base_per_lot,
                      quote_per_tick_lot, min_quantity (lots), min_notional (quote units),
                      maker_fee_bps, taker_fee_bps, halted, seq, orders}]
                    `orders` lists the resting orders with every field: bids best price
                    first, then asks best price first, oldest first within a price.
    open_order_ids  every resting order id, in the order the engine indexed them
    accounts        [{account_id, available {asset: units}, locked {asset: units}, seq}]
    net_deposits    {asset: units}
    bot_keys        {public key: account_id}
    recent_closed   the newest closed orders (oldest first), so `get_order` still answers
                    them after a restart from this snapshot

Not persisted: the updates of the last command (`engine.public` / `engine.private`).
"""

from __future__ import annotations

import json

from common.types import OrderStatus, OrderType, Side, Step, StpMode, TimeInForce
from matcher.accounts import FEE_ACCOUNT_ID, Account, Ledger
from matcher.book import Order
from matcher.engine import Engine, Market

VERSION = 1

# Every Order slot but `level`, which is the book's business and rebuilt by `Book.add`.
ORDER_FIELDS = tuple(name for name in Order.__slots__ if name != "level")
_ENUM_FIELDS = {
    "side": Side,
    "order_type": OrderType,
    "time_in_force": TimeInForce,
    "stp": StpMode,
    "status": OrderStatus,
}


def encode(engine: Engine) -> bytes:
    """Return the engine's state as compact JSON bytes."""
    return json.dumps(dump(engine), separators=(",", ":")).encode()


def decode(payload: bytes) -> Engine:
    """Build an Engine from `encode` output."""
    return load(json.loads(payload))


def dump(engine: Engine) -> dict:
    """Return everything needed to continue `engine` identically, as plain JSON-safe data."""
    return {
        "version": VERSION,
        "shard_id": engine.shard_id,
        "max_open_orders": engine.max_open_orders,
        "order_counter": engine.order_counter,
        "trade_counter": engine.trade_counter,
        "assets": {symbol: step.text for symbol, step in engine.assets.items()},
        "markets": [_dump_market(market) for market in engine.markets.values()],
        "open_order_ids": list(engine.orders),
        "accounts": [
            {
                "account_id": account.account_id,
                "available": dict(account.available),
                "locked": dict(account.locked),
                "seq": account.seq,
            }
            for account in engine.ledger.accounts.values()
        ],
        "net_deposits": dict(engine.ledger.net_deposits),
        "bot_keys": dict(engine.bot_keys),
        "recent_closed": [_dump_order(order) for order in engine.recent_closed.values()],
    }


def _dump_market(market: Market) -> dict:
    return {
        "symbol": market.symbol,
        "base": market.base,
        "quote": market.quote,
        "tick_size": market.tick.text,
        "lot_size": market.lot.text,
        "base_per_lot": market.base_per_lot,
        "quote_per_tick_lot": market.quote_per_tick_lot,
        "min_quantity": market.min_quantity,
        "min_notional": market.min_notional,
        "maker_fee_bps": market.maker_fee_bps,
        "taker_fee_bps": market.taker_fee_bps,
        "halted": bool(market.halted),
        "seq": market.seq,
        "orders": [_dump_order(order) for order in market.book.resting_orders()],
    }


def _dump_order(order: Order) -> dict:
    record = {name: getattr(order, name) for name in ORDER_FIELDS}
    for name in _ENUM_FIELDS:
        record[name] = int(record[name])
    record["post_only"] = bool(record["post_only"])
    return record


def load(state: dict) -> Engine:
    """Build an Engine from `dump` output; ValueError on an unknown version or inconsistent state."""
    version = state.get("version")
    if version != VERSION:
        raise ValueError(f"unsupported snapshot version {version!r} (this build reads {VERSION})")
    engine = Engine(shard_id=state["shard_id"], max_open_orders=state["max_open_orders"])
    engine.order_counter = state["order_counter"]
    engine.trade_counter = state["trade_counter"]
    engine.assets = {symbol: Step(text) for symbol, text in state["assets"].items()}

    ledger = Ledger()
    ledger.accounts = {}
    for record in state["accounts"]:
        account = Account(record["account_id"])
        account.available = dict(record["available"])
        account.locked = dict(record["locked"])
        account.seq = record["seq"]
        ledger.accounts[account.account_id] = account
    ledger.account(FEE_ACCOUNT_ID)  # the engine relies on the fee account existing
    ledger.net_deposits = dict(state["net_deposits"])
    engine.ledger = ledger

    resting: dict[int, Order] = {}
    for record in state["markets"]:
        market = Market(
            record["symbol"],
            record["base"],
            record["quote"],
            Step(record["tick_size"]),
            Step(record["lot_size"]),
            record["base_per_lot"],
            record["quote_per_tick_lot"],
            record["min_quantity"],
            record["min_notional"],
            record["maker_fee_bps"],
            record["taker_fee_bps"],
        )
        market.halted = record["halted"]
        market.seq = record["seq"]
        if market.base not in engine.assets or market.quote not in engine.assets:
            raise ValueError(f"market {market.symbol} trades an asset the snapshot does not list")
        book = market.book
        for order_record in record["orders"]:
            order = _load_order(order_record)
            if order.market != market.symbol or order.order_id in resting:
                raise ValueError(f"order {order.order_id} is misplaced or listed twice")
            if order.account_id not in ledger.accounts:
                raise ValueError(f"order {order.order_id} belongs to unknown account {order.account_id}")
            resting[order.order_id] = order
            book.add(order)
        book.take_changes()  # restoring is not a change anyone should be told about
        engine.markets[market.symbol] = market

    open_order_ids = state["open_order_ids"]
    if len(open_order_ids) != len(resting) or set(open_order_ids) != resting.keys():
        raise ValueError("open_order_ids does not list exactly the resting orders")
    for order_id in open_order_ids:
        order = resting[order_id]
        engine.orders[order_id] = order
        account = ledger.accounts[order.account_id]
        account.open_orders[order_id] = order
        if order.client_order_id is not None:
            account.client_ids[order.client_order_id] = order

    engine.bot_keys = dict(state["bot_keys"])
    for record in state["recent_closed"]:
        engine.remember_closed(_load_order(record))
    return engine


def _load_order(record: dict) -> Order:
    order = Order.__new__(Order)
    for name in ORDER_FIELDS:
        setattr(order, name, record[name])
    for name, enum_type in _ENUM_FIELDS.items():
        setattr(order, name, enum_type(record[name]))
    order.level = None
    return order
