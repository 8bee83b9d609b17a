"""Turn decoded wire commands into engine calls: exact decimal conversion, defaults, replies.

The same path serves live requests and journal replay, so a replayed command is converted
and executed exactly as it was the first time.
"""

from __future__ import annotations

from typing import Any

from common import protocol
from common.protocol import Command
from common.types import InexactValue, OrderType, RejectCode, StpMode, TimeInForce
from matcher.accounts import FEE_ACCOUNT_ID
from matcher.engine import Engine, Reject

class Dispatcher:
    """Execute Commands against one Engine; return (reply data, None) or (None, Reject)."""

    def __init__(self, engine: Engine, replies: bool = True) -> None:
        """`replies=False` skips rendering the order replies of trading commands (replay, replicas)."""
        self.engine = engine
        self.replies = replies
        self._handlers = {op: getattr(self, "_" + op) for op in protocol.COMMANDS if op not in protocol.SERVER_OPS}

    def execute(self, command: Command, ts: int) -> tuple[Any, Reject | None]:
        result = self._handlers[command.op](command.fields, ts)
        if isinstance(result, Reject):
            return None, result
        return result, None

    # ---------------------------------------------------------------- conversions

    def _market(self, pair: str):
        market = self.engine.markets.get(pair)
        if market is None:
            raise _Rejected(RejectCode.UNKNOWN_MARKET, f"unknown market {pair}", {"pair": pair})
        return market

    @staticmethod
    def _steps(step, text: str | None, code: RejectCode, field: str) -> int | None:
        if text is None:
            return None
        try:
            return step.parse_positive_cached(text)
        except InexactValue as error:
            raise _Rejected(code, f"{field} {text!r}: {error}", {"field": field}) from None

    def _order_reply(self, order) -> dict[str, Any] | None:
        if not self.replies:
            return None
        engine = self.engine
        fills = [
            fill
            for update in engine.private
            if update.account_id == order.account_id
            for fill in update.fills
            if fill.order is order
        ]
        return protocol.order_message(order, engine.markets[order.market], engine.assets, fills)

    # ---------------------------------------------------------------- trading

    def _place(self, fields: dict, ts: int):
        try:
            market = self._market(fields["pair"])
            price = self._steps(market.tick, fields.get("price"), RejectCode.INVALID_PRICE, "price")
            quantity = self._steps(market.lot, fields.get("quantity"), RejectCode.INVALID_QUANTITY, "quantity")
            quote_quantity = self._steps(
                self.engine.assets[market.quote], fields.get("quote_quantity"), RejectCode.INVALID_QUANTITY,
                "quote_quantity",
            )
        except _Rejected as rejected:
            return rejected.reject
        order_type = fields["type"]
        default_tif = TimeInForce.GTC if order_type == OrderType.LIMIT else TimeInForce.IOC
        order = self.engine.place(
            fields["account_id"],
            market.symbol,
            fields["side"],
            order_type,
            fields.get("time_in_force", default_tif),
            price,
            quantity,
            quote_quantity,
            fields.get("post_only", False),
            fields.get("stp", StpMode.EXPIRE_MAKER),
            fields.get("client_order_id"),
            ts,
        )
        return order if isinstance(order, Reject) else self._order_reply(order)

    def _which_order(self, fields: dict):
        order_id, client_order_id = fields.get("order_id"), fields.get("client_order_id")
        if (order_id is None) == (client_order_id is None):
            raise _Rejected(RejectCode.INVALID_FIELD, "give exactly one of order_id and client_order_id",
                            {"field": "order_id"})
        return order_id, client_order_id

    def _amend(self, fields: dict, ts: int):
        engine = self.engine
        try:
            order_id, client_order_id = self._which_order(fields)
        except _Rejected as rejected:
            return rejected.reject
        order = engine.order(fields["account_id"], order_id, client_order_id)
        quantity = price = None
        if order is not None:
            market = engine.markets[order.market]
            try:
                quantity = self._steps(market.lot, fields.get("quantity"), RejectCode.INVALID_QUANTITY, "quantity")
                price = self._steps(market.tick, fields.get("price"), RejectCode.INVALID_PRICE, "price")
            except _Rejected as rejected:
                return rejected.reject
        result = engine.amend(fields["account_id"], order_id, client_order_id, quantity, price, ts)
        return result if isinstance(result, Reject) else self._order_reply(result)

    def _cancel(self, fields: dict, ts: int):
        try:
            order_id, client_order_id = self._which_order(fields)
        except _Rejected as rejected:
            return rejected.reject
        result = self.engine.cancel(fields["account_id"], order_id, client_order_id, ts)
        return result if isinstance(result, Reject) else self._order_reply(result)

    def _cancel_all(self, fields: dict, ts: int):
        result = self.engine.cancel_all(fields["account_id"], fields.get("pair"), ts)
        if isinstance(result, Reject):
            return result
        if not self.replies:
            return None
        engine = self.engine
        return {"canceled": [protocol.order_message(order, engine.markets[order.market], engine.assets)
                             for order in result]}

    # ---------------------------------------------------------------- queries

    def _get_order(self, fields: dict, ts: int):
        try:
            order_id, client_order_id = self._which_order(fields)
        except _Rejected as rejected:
            return rejected.reject
        engine = self.engine
        order = engine.order(fields["account_id"], order_id, client_order_id)
        if order is None:
            return Reject(RejectCode.ORDER_NOT_FOUND, "no such order",
                          {"order_id": order_id, "client_order_id": client_order_id})
        return protocol.order_message(order, engine.markets[order.market], engine.assets)

    def _open_orders(self, fields: dict, ts: int):
        engine = self.engine
        pair = fields.get("pair")
        if pair is not None and pair not in engine.markets:
            return Reject(RejectCode.UNKNOWN_MARKET, f"unknown market {pair}", {"pair": pair})
        orders = engine.open_orders(fields["account_id"], pair)
        return [protocol.order_message(order, engine.markets[order.market], engine.assets) for order in orders]

    def _balances(self, fields: dict, ts: int):
        assets = self.engine.assets
        return [protocol.balance_message(asset, available, locked, assets[asset])
                for asset, available, locked in self.engine.balances(fields["account_id"])]

    def _snapshot(self, fields: dict, ts: int):
        market = self.engine.markets.get(fields["pair"])
        if market is None:
            return Reject(RejectCode.UNKNOWN_MARKET, f"unknown market {fields['pair']}", {"pair": fields["pair"]})
        return protocol.book_snapshot_message(market, fields.get("depth"), ts)

    def _markets(self, fields: dict, ts: int):
        engine = self.engine
        return {
            "markets": [protocol.market_message(market, engine.assets) for market in engine.markets.values()],
            "assets": [{"asset": asset, "decimals": step.decimals} for asset, step in engine.assets.items()],
        }

    def _ping(self, fields: dict, ts: int):
        return {"shard_id": self.engine.shard_id, "ts": ts // 1_000_000, "markets": sorted(self.engine.markets)}

    # ---------------------------------------------------------------- funds and administration

    def _amount(self, fields: dict) -> int:
        step = self.engine.assets.get(fields["asset"])
        if step is None:
            raise _Rejected(RejectCode.UNKNOWN_ASSET, f"unknown asset {fields['asset']}", {"asset": fields["asset"]})
        return self._steps(step, fields["amount"], RejectCode.INVALID_AMOUNT, "amount")

    def _funds_reply(self, account_id: int, asset: str) -> dict[str, Any]:
        available, locked = self.engine.ledger.accounts[account_id].balance(asset)
        return {"account_id": account_id,
                **protocol.balance_message(asset, available, locked, self.engine.assets[asset])}

    def _deposit(self, fields: dict, ts: int):
        try:
            amount = self._amount(fields)
        except _Rejected as rejected:
            return rejected.reject
        result = self.engine.deposit(fields["account_id"], fields["asset"], amount, ts)
        return result if isinstance(result, Reject) else self._funds_reply(fields["account_id"], fields["asset"])

    def _withdraw(self, fields: dict, ts: int):
        try:
            amount = self._amount(fields)
        except _Rejected as rejected:
            return rejected.reject
        result = self.engine.withdraw(fields["account_id"], fields["asset"], amount, ts)
        return result if isinstance(result, Reject) else self._funds_reply(fields["account_id"], fields["asset"])

    def _create_asset(self, fields: dict, ts: int):
        result = self.engine.create_asset(fields["asset"], fields["decimals"])
        return result if isinstance(result, Reject) else {"asset": fields["asset"], "decimals": fields["decimals"]}

    def _create_market(self, fields: dict, ts: int):
        result = self.engine.create_market(
            fields["pair"],
            fields["tick_size"],
            fields["lot_size"],
            fields.get("min_quantity", "0"),
            fields.get("min_notional", "0"),
            fields.get("maker_fee_bps", 0),
            fields.get("taker_fee_bps", 0),
            ts,
        )
        return result if isinstance(result, Reject) else protocol.market_message(result, self.engine.assets)

    def _halt(self, fields: dict, ts: int):
        result = self.engine.set_halted(fields["pair"], True, ts)
        return result if isinstance(result, Reject) else protocol.market_message(result, self.engine.assets)

    def _resume(self, fields: dict, ts: int):
        result = self.engine.set_halted(fields["pair"], False, ts)
        return result if isinstance(result, Reject) else protocol.market_message(result, self.engine.assets)

    def _ledger(self, fields: dict, ts: int):
        engine = self.engine
        assets = engine.assets
        totals = engine.ledger.totals()
        fee_account = engine.ledger.accounts[FEE_ACCOUNT_ID]
        return {
            "net_deposits": {asset: assets[asset].format(amount)
                             for asset, amount in engine.ledger.net_deposits.items()},
            "totals": {asset: assets[asset].format(amount) for asset, amount in totals.items()},
            "fee_account": [protocol.balance_message(asset, *fee_account.balance(asset), assets[asset])
                            for asset in sorted(set(fee_account.available) | set(fee_account.locked))],
            "accounts": len(engine.ledger.accounts) - 1,
            "open_orders": len(engine.orders),
        }

    def _register_bot_key(self, fields: dict, ts: int):
        result = self.engine.register_bot_key(fields["account_id"], fields["public_key"])
        return result if isinstance(result, Reject) else {"account_id": fields["account_id"],
                                                          "public_key": fields["public_key"]}

    def _revoke_bot_key(self, fields: dict, ts: int):
        result = self.engine.revoke_bot_key(fields["public_key"])
        return result if isinstance(result, Reject) else {"public_key": fields["public_key"]}


class _Rejected(Exception):
    """Internal short-cut out of a conversion; always turned back into a Reject value."""

    def __init__(self, code: RejectCode, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.reject = Reject(code, message, details)
