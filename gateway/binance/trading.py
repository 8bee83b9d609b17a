"""Binance's signed endpoints: account, order (POST / GET / DELETE), openOrders, allOrders, myTrades.

They act on the same accounts, balances and orders as /api/v1, through the same matcher
commands: an order placed through either API is seen and canceled through the other.
Order entry builds the native `place` command (`schemas.PLACE_ORDER.command`, checked by
the protocol's validators) from Binance's parameters:

    LIMIT        -> limit, time_in_force = timeInForce
    LIMIT_MAKER  -> limit, GTC, post_only
    MARKET       -> market, quantity, or quote_quantity = quoteOrderQty (buys)

Lookups go to the matcher (open and recently closed orders) and then to the history store;
allOrders and myTrades read the store, which the recorder keeps milliseconds behind.
"""

from __future__ import annotations

import secrets
from typing import Any

import falcon

from common.types import RejectCode, Step
from gateway.binance import shapes
from gateway.binance.dialect import Resource, answer, endpoint
from gateway.binance.errors import (
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    BinanceError,
    bad_combination,
    invalid_value,
    mandatory,
    not_required,
    one_of,
)
from gateway.binance.market_data import MAX_TIME
from gateway.binance.markets import Market
from gateway.binance.params import Params, boolean, choice, client_id, decimal, integer, symbol_text
from gateway.envelope import ApiError
from gateway.resources.account import trader_balances
from gateway.schemas import MAX_ID, PLACE_ORDER
from gateway.services import Services

ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")
UNSERVED_ORDER_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
# Binance order parameters for order kinds zmx does not have.
UNSERVED_PARAMETERS = ("stopPrice", "icebergQty", "trailingDelta", "strategyId", "strategyType")
CANCEL_RESTRICTIONS = ("ONLY_NEW", "ONLY_PARTIALLY_FILLED")
_COMMISSION = 8  # decimals of commissionRates


def new_client_id() -> str:
    """Return a fresh client order id, as Binance makes one when none is sent (22 characters)."""
    return secrets.token_urlsafe(16)


def _is_zero(amount: str) -> bool:
    return not amount.strip("0.")


def _time_range(params: Params) -> tuple[int | None, int | None]:
    start = integer(params, "startTime", 0, MAX_TIME)
    end = integer(params, "endTime", 0, MAX_TIME)
    if start is not None and end is not None and start > end:
        raise invalid_value("startTime", "It must not be after endTime.")
    return start, end


def _gather(services: Services, calls: list[tuple[int, str, dict[str, Any]]]) -> list[Any]:
    results = services.engine.call_many(calls)
    for result in results:
        if isinstance(result, ApiError):
            raise result
    return results


class Account(Resource):
    @endpoint("omitZeroBalances", signed=True, weight=2)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        omit_zero = boolean(req.context.params, "omitZeroBalances")
        trader_id = req.context.trader_id
        balances = [{"asset": balance["asset"], "free": balance["available"], "locked": balance["locked"]}
                    for balance in trader_balances(self.services, trader_id)
                    if not (omit_zero and _is_zero(balance["total"]))]
        markets = self.markets.every()
        # Fees are per market in zmx: the account shows the highest, the fills what was charged.
        maker = max((market.maker_fee_bps for market in markets), default=0)
        taker = max((market.taker_fee_bps for market in markets), default=0)
        rate = Step.from_decimals(_COMMISSION).format
        answer(resp, {
            "makerCommission": maker, "takerCommission": taker, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": rate(maker * 10**4), "taker": rate(taker * 10**4), "buyer": rate(0),
                                "seller": rate(0)},
            "canTrade": True, "canWithdraw": True, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": self.services.store.balances_updated_at(trader_id) or 0,
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": trader_id,
        })


class Order(Resource):
    @endpoint("symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
              "newOrderRespType", "selfTradePreventionMode", *UNSERVED_PARAMETERS, signed=True)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        side = choice(params, "side", ("BUY", "SELL"), BinanceError(-1117, "Invalid side."))
        if side is None:
            raise mandatory("side")
        kind = params.require("type")
        if kind not in ORDER_TYPES:
            served = " zmx serves LIMIT, LIMIT_MAKER and MARKET orders." if kind in UNSERVED_ORDER_TYPES else ""
            raise BinanceError(-1116, "Invalid orderType." + served)
        for name in UNSERVED_PARAMETERS:
            if name in params:
                raise not_required(name, "zmx has no stop, iceberg, trailing or strategy orders.")
        time_in_force = choice(params, "timeInForce", TIME_IN_FORCE, BinanceError(-1115, "Invalid timeInForce."))
        response_type = choice(params, "newOrderRespType", shapes.RESPONSE_TYPES) or (
            "ACK" if kind == "LIMIT_MAKER" else "FULL")
        stp = choice(params, "selfTradePreventionMode", shapes.STP_MODES)
        body = {
            "pair": market.pair, "side": side.lower(), **_order_terms(params, kind, side, time_in_force),
            "stp": shapes.STP_MODES[stp] if stp is not None else None,
            "client_order_id": client_id(params, "newClientOrderId", -1118) or new_client_id(),
        }
        command = PLACE_ORDER.command(body, account_id=req.context.trader_id)
        try:
            order = self.services.call(market.shard_id, "place", command)
        except ApiError as error:
            raise _placing_error(error, kind) from None
        answer(resp, shapes.new_order(order, market, response_type))

    @endpoint("symbol", "orderId", "origClientOrderId", signed=True)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        market = self.markets.get(symbol_text(req.context.params))
        order = find_order(self.services, req.context.trader_id, market, req.context.params,
                           BinanceError(-2013, NO_SUCH_ORDER, RejectCode.ORDER_NOT_FOUND))
        answer(resp, shapes.order(order, market))

    @endpoint("symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions", signed=True)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        cancel_id = client_id(params, "newClientOrderId", -1118) or new_client_id()
        restriction = choice(params, "cancelRestrictions", CANCEL_RESTRICTIONS, BinanceError(
            -1145, "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED."))
        unknown = BinanceError(-2011, UNKNOWN_ORDER, RejectCode.ORDER_NOT_FOUND)
        trader_id = req.context.trader_id
        order = find_order(self.services, trader_id, market, params, unknown)
        if restriction is not None and order["status"] != restriction.removeprefix("ONLY_"):
            raise BinanceError(-2011, "Order was not canceled due to cancel restrictions.", RejectCode.ORDER_NOT_OPEN)
        order_id = order["order_id"]
        try:
            canceled = self.services.call(self.services.shards.for_order(order_id), "cancel",
                                          {"account_id": trader_id, "order_id": order_id})
        except ApiError as error:
            if error.code in (RejectCode.ORDER_NOT_FOUND, RejectCode.ORDER_NOT_OPEN):
                raise unknown from None
            raise
        answer(resp, shapes.canceled(canceled, market, cancel_id))


def _order_terms(params: Params, kind: str, side: str, time_in_force: str | None) -> dict[str, Any]:
    """Return the native type, prices, quantities and flags of a Binance order; Binance's errors otherwise."""
    price, quantity = decimal(params, "price"), decimal(params, "quantity")
    quote_quantity = decimal(params, "quoteOrderQty")
    if kind == "MARKET":
        for name, value in (("price", price), ("timeInForce", time_in_force)):
            if value is not None:
                raise not_required(name)
        if quantity is None and quote_quantity is None:
            raise one_of("quantity", "quoteOrderQty")
        if quantity is not None and quote_quantity is not None:
            raise not_required("quoteOrderQty", "Send quantity or quoteOrderQty, not both.")
        if quote_quantity is not None and side == "SELL":
            raise not_required("quoteOrderQty", "zmx takes quoteOrderQty on MARKET BUY orders only.")
        return {"type": "market", "quantity": quantity, "quote_quantity": quote_quantity}
    if quote_quantity is not None:
        raise not_required("quoteOrderQty")
    for name, value in (("price", price), ("quantity", quantity)):
        if value is None:
            raise mandatory(name)
    if kind == "LIMIT_MAKER":
        if time_in_force is not None:
            raise not_required("timeInForce")
        return {"type": "limit", "price": price, "quantity": quantity, "post_only": True}
    if time_in_force is None:
        raise mandatory("timeInForce")
    return {"type": "limit", "price": price, "quantity": quantity, "time_in_force": time_in_force}


def _placing_error(error: ApiError, kind: str) -> ApiError:
    """Say which of Binance's filters a refused quantity breaks."""
    if error.code is RejectCode.INVALID_QUANTITY and error.details.get("field") == "quote_quantity":
        return BinanceError(-1111, "Parameter 'quoteOrderQty' has too much precision.", error.code)
    if error.code in (RejectCode.INVALID_QUANTITY, RejectCode.BELOW_MIN_QUANTITY):
        return BinanceError(-1013, "Filter failure: " + ("MARKET_LOT_SIZE" if kind == "MARKET" else "LOT_SIZE"),
                            error.code)
    return error


def find_order(services: Services, trader_id: int, market: Market, params: Params,
               missing: BinanceError) -> dict[str, Any]:
    """Return the caller's order in `market` named by `orderId` and/or `origClientOrderId`; `missing` otherwise.

    The matcher knows open and recently closed orders; the history store every order.
    """
    order_id = integer(params, "orderId", 1, MAX_ID)
    client_order_id = client_id(params, "origClientOrderId", -1119)
    if order_id is None and client_order_id is None:
        raise one_of("orderId", "origClientOrderId")
    store = services.store
    try:
        if order_id is not None:
            order = services.call(services.shards.for_order(order_id), "get_order",
                                  {"account_id": trader_id, "order_id": order_id})
        else:
            order = services.call(market.shard_id, "get_order",
                                  {"account_id": trader_id, "client_order_id": client_order_id})
    except ApiError as error:
        if error.code is not RejectCode.ORDER_NOT_FOUND:
            raise
        if order_id is not None:
            order = store.order(trader_id, order_id)
        else:
            order = store.order_by_client_id(trader_id, market.pair, client_order_id)
    if order is None or order["pair"] != market.pair or (
            client_order_id is not None and order["client_order_id"] != client_order_id):
        raise missing
    return order


class OpenOrders(Resource):
    @endpoint("symbol", signed=True, weight=3)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        symbol = symbol_text(req.context.params, required=False)
        fields: dict[str, Any] = {"account_id": req.context.trader_id}
        if symbol is not None:
            market = self.markets.get(symbol)
            fields["pair"] = market.pair
            shard_ids: tuple[int, ...] = (market.shard_id,)
        else:
            shard_ids = self.services.engine.shard_ids
        orders = [order for result in _gather(self.services, [(shard_id, "open_orders", fields)
                                                              for shard_id in shard_ids]) for order in result]
        orders.sort(key=lambda order: (order["created_at"], order["order_id"]))
        answer(resp, [shapes.order(order, self.markets.of_pair(order["pair"])) for order in orders])

    @endpoint("symbol", signed=True, weight=5)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        market = self.markets.get(symbol_text(req.context.params))
        result = self.services.call(market.shard_id, "cancel_all",
                                    {"account_id": req.context.trader_id, "pair": market.pair})
        if not result["canceled"]:
            raise BinanceError(-2011, UNKNOWN_ORDER, RejectCode.ORDER_NOT_FOUND)
        answer(resp, [shapes.canceled(order, market, new_client_id()) for order in result["canceled"]])


class AllOrders(Resource):
    @endpoint("symbol", "orderId", "startTime", "endTime", "limit", signed=True, weight=3)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        order_id = integer(params, "orderId", 1, MAX_ID)
        start, end = _time_range(params)
        limit = integer(params, "limit", 1, 1000, 500)
        orders = self.services.store.account_orders(req.context.trader_id, market.pair, limit,
                                                     from_order_id=order_id, start_ms=start, end_ms=end)
        answer(resp, [shapes.order(order, market) for order in orders])


class MyTrades(Resource):
    @endpoint("symbol", "orderId", "startTime", "endTime", "fromId", "limit", signed=True)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        order_id = integer(params, "orderId", 1, MAX_ID)
        from_id = integer(params, "fromId", 0, MAX_ID)
        start, end = _time_range(params)
        if from_id is not None and (start is not None or end is not None):
            raise bad_combination("fromId cannot be sent with startTime or endTime.")
        limit = integer(params, "limit", 1, 1000, 500)
        fills = self.services.store.account_fills(req.context.trader_id, market.pair, limit, order_id=order_id,
                                                  from_trade_id=from_id, start_ms=start, end_ms=end)
        answer(resp, [shapes.my_trade(fill, market) for fill in fills])
