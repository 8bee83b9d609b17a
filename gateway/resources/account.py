"""Trader routes (API key): profile, balances, orders, withdrawals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import falcon

from common.store.cursors import decode_cursor, encode_cursor
from common.types import RejectCode
from gateway.admin import funds
from gateway.envelope import ApiError, invalid_field, ok, page
from gateway.operations import TRADER, operation
from gateway.schemas import (
    AMEND_ORDER,
    CANCEL_ALL,
    CURSOR_PARAM,
    LIMIT,
    ORDER_STATUS,
    PAIR_PARAM,
    PLACE_ORDER,
    WITHDRAW,
    client_order_id_from_path,
    order_id_from_path,
    ref,
)
from gateway.services import Services, trader_order

_ORDER_ERRORS = (RejectCode.ORDER_NOT_FOUND,)
_TRADING_ERRORS = (
    RejectCode.INVALID_PRICE, RejectCode.INVALID_QUANTITY, RejectCode.UNKNOWN_MARKET, RejectCode.FORBIDDEN,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID, RejectCode.INSUFFICIENT_BALANCE, RejectCode.POST_ONLY_WOULD_TAKE,
    RejectCode.MARKET_HALTED, RejectCode.BELOW_MIN_QUANTITY, RejectCode.BELOW_MIN_NOTIONAL,
    RejectCode.TOO_MANY_OPEN_ORDERS,
)
_AMEND_ERRORS = (
    RejectCode.ORDER_NOT_FOUND, RejectCode.INVALID_PRICE, RejectCode.INVALID_QUANTITY, RejectCode.AMEND_REJECTED,
    RejectCode.ORDER_NOT_OPEN, RejectCode.INSUFFICIENT_BALANCE, RejectCode.POST_ONLY_WOULD_TAKE,
    RejectCode.MARKET_HALTED, RejectCode.BELOW_MIN_QUANTITY, RejectCode.BELOW_MIN_NOTIONAL,
)
_OPEN_ORDERS_CURSOR = "open_orders"


class Account:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="The trader's profile", auth=TRADER, response=ref("Profile"), tags=("account",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        store = self.services.store
        trader_id = req.context.trader_id
        trader = store.get_trader(trader_id)
        if trader is None:
            raise ApiError(RejectCode.INVALID_API_KEY, "unknown or revoked API key")
        ok(resp, {**trader, "api_key_prefix": store.api_key_prefix(trader_id)})


class Balances:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Available and locked balance of every asset", auth=TRADER, matcher=True,
               response=ref("BalancePage"), tags=("account",),
               description="With several matcher shards, each keeps its own ledger; this sums them.")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, page(trader_balances(self.services, req.context.trader_id)))


def trader_balances(services: Services, trader_id: int) -> list[dict[str, str]]:
    """Return the trader's balances from the matcher, summed over shards: {asset, available, locked, total}."""
    engine = services.engine
    fields = {"account_id": trader_id}
    results = engine.call_many([(shard_id, "balances", fields) for shard_id in engine.shard_ids])
    for result in results:
        if isinstance(result, ApiError):
            raise result
    return results[0] if len(results) == 1 else _sum_balances(results)


def _sum_balances(per_shard: list[list[dict[str, str]]]) -> list[dict[str, str]]:
    totals: dict[str, list[Decimal]] = {}
    places: dict[str, int] = {}
    for balances in per_shard:
        for balance in balances:
            asset = balance["asset"]
            sums = totals.setdefault(asset, [Decimal(0), Decimal(0)])
            sums[0] += Decimal(balance["available"])
            sums[1] += Decimal(balance["locked"])
            decimals = len(balance["available"].partition(".")[2])
            places[asset] = max(places.get(asset, 0), decimals)
    result = []
    for asset in sorted(totals):
        available, locked = totals[asset]
        quantum = Decimal(1).scaleb(-places[asset])
        total = available + locked
        result.append({"asset": asset, "available": f"{available.quantize(quantum):f}",
                       "locked": f"{locked.quantize(quantum):f}", "total": f"{total.quantize(quantum):f}"})
    return result


class Orders:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="The trader's orders", auth=TRADER, query=(ORDER_STATUS, PAIR_PARAM, LIMIT, CURSOR_PARAM),
               weight=3, matcher=True, response=ref("OrderPage"), errors=(RejectCode.UNKNOWN_MARKET,),
               tags=("account",),
               description="status=open (default) lists open orders, newest first, from the matcher; "
                           "closed and all come from the history store.")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        services = self.services
        query = req.context.query
        trader_id = req.context.trader_id
        if query["status"] != "open":
            if services.closed_orders is None:
                raise invalid_field("status", "this gateway serves status=open only (no history store routes)")
            ok(resp, services.closed_orders(trader_id, query["status"], query["pair"], query["limit"],
                                            query["cursor"]))
            return
        after = None
        if query["cursor"] is not None:
            try:
                after = decode_cursor(query["cursor"], _OPEN_ORDERS_CURSOR, 2)
            except ValueError:
                raise invalid_field("cursor", "cursor must be a next_cursor returned by this endpoint") from None
        fields = {"account_id": trader_id}
        pair = query["pair"]
        if pair is not None:
            fields["pair"] = pair
            shard_ids = (services.shards.for_pair(pair),)
        else:
            shard_ids = services.engine.shard_ids
        orders = []
        for result in services.engine.call_many([(shard_id, "open_orders", fields) for shard_id in shard_ids]):
            if isinstance(result, ApiError):
                raise result
            orders += result
        # Newest first; (created_at, order_id) orders them across shards too.
        orders.sort(key=lambda order: (order["created_at"], order["order_id"]), reverse=True)
        if after is not None:
            orders = [order for order in orders if (order["created_at"], order["order_id"]) < after]
        limit = query["limit"]
        has_more = len(orders) > limit
        orders = orders[:limit]
        next_cursor = None
        if has_more:
            last = orders[-1]
            next_cursor = encode_cursor(_OPEN_ORDERS_CURSOR, last["created_at"], last["order_id"])
        ok(resp, page([trader_order(order) for order in orders], next_cursor, has_more))

    @operation(summary="Place an order", auth=TRADER, body=PLACE_ORDER, status=201, matcher=True,
               response=ref("Order"), errors=_TRADING_ERRORS, tags=("account",),
               description="An order accepted and then expired (IOC/FOK/market remainder, self-trade "
                           "prevention) is a success with status EXPIRED; fills lists the fills it made.")
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        services = self.services
        fields = PLACE_ORDER.command(req.context.body, account_id=req.context.trader_id)
        order = services.call(services.shards.for_pair(fields["pair"]), "place", fields)
        ok(resp, trader_order(order), 201)


class Order:
    """One order by its id (the id names its shard)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="One order (open or closed)", auth=TRADER, matcher=True, response=ref("Order"),
               errors=_ORDER_ERRORS, tags=("account",))
    def on_get(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        try:
            self._answer(req, resp, "get_order", order_id)
        except ApiError as error:
            if error.code != RejectCode.ORDER_NOT_FOUND:
                raise
            # Beyond the matcher's memory of closed orders: the history store has every order.
            stored = self.services.store.order(req.context.trader_id, order_id_from_path(order_id))
            if stored is None:
                raise
            stored["fills"] = []  # as in every lookup: fills are listed by GET /account/trades
            ok(resp, trader_order(stored))

    @operation(summary="Amend an order: new total quantity and/or price", auth=TRADER, body=AMEND_ORDER,
               matcher=True, response=ref("Order"), errors=_AMEND_ERRORS, tags=("account",),
               description="Lowering the quantity at the same price keeps priority; raising it or changing "
                           "the price loses it, and a crossing price trades. A rejected amend leaves the order "
                           "as it was.")
    def on_patch(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        self._answer(req, resp, "amend", order_id, AMEND_ORDER)

    @operation(summary="Cancel an order", auth=TRADER, matcher=True, response=ref("Order"),
               errors=(RejectCode.ORDER_NOT_FOUND, RejectCode.ORDER_NOT_OPEN), tags=("account",))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        self._answer(req, resp, "cancel", order_id)

    def _answer(self, req: falcon.Request, resp: falcon.Response, op: str, order_id_text: str, body=None) -> None:
        order_id = order_id_from_path(order_id_text)
        services = self.services
        supplied = {"account_id": req.context.trader_id, "order_id": order_id}
        fields = body.command(req.context.body, **supplied) if body is not None else supplied
        ok(resp, trader_order(services.call(services.shards.for_order(order_id), op, fields)))


class OrderByClientId:
    """One order by its client_order_id (amend and cancel: the open one)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="One order by client_order_id: the open one, else the newest recently closed",
               auth=TRADER, matcher=True, response=ref("Order"), errors=_ORDER_ERRORS, tags=("account",),
               description="After a 504, look the order up here before sending it again: an order that executed "
                           "and closed at once (IOC, FOK, market) is found too.")
    def on_get(self, req: falcon.Request, resp: falcon.Response, client_order_id: str) -> None:
        self._answer(req, resp, "get_order", client_order_id)

    @operation(summary="Amend an open order by client_order_id", auth=TRADER, body=AMEND_ORDER, matcher=True,
               response=ref("Order"), errors=_AMEND_ERRORS, tags=("account",))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, client_order_id: str) -> None:
        self._answer(req, resp, "amend", client_order_id, AMEND_ORDER)

    @operation(summary="Cancel an open order by client_order_id", auth=TRADER, matcher=True, response=ref("Order"),
               errors=(RejectCode.ORDER_NOT_FOUND, RejectCode.ORDER_NOT_OPEN), tags=("account",))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, client_order_id: str) -> None:
        self._answer(req, resp, "cancel", client_order_id)

    def _answer(self, req: falcon.Request, resp: falcon.Response, op: str, client_order_id_text: str,
                body=None) -> None:
        client_order_id = client_order_id_from_path(client_order_id_text)
        services = self.services
        supplied = {"account_id": req.context.trader_id, "client_order_id": client_order_id}
        fields = body.command(req.context.body, **supplied) if body is not None else supplied
        shard_id = self._shard_of(supplied)
        ok(resp, trader_order(services.call(shard_id, op, fields)))

    def _shard_of(self, lookup: dict[str, Any]) -> int:
        """Return the shard holding the open order (client ids are not routed by their value)."""
        engine = self.services.engine
        if len(engine.shard_ids) == 1:
            return engine.shard_ids[0]
        results = engine.call_many([(shard_id, "get_order", lookup) for shard_id in engine.shard_ids])
        for shard_id, result in zip(engine.shard_ids, results):
            if not isinstance(result, ApiError):
                return shard_id
        for result in results:
            if result.code is not RejectCode.ORDER_NOT_FOUND:
                raise result
        raise results[0]


class CancelAll:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Cancel every open order, or every one of a pair", auth=TRADER, body=CANCEL_ALL, weight=5,
               matcher=True, response=ref("CanceledOrders"), errors=(RejectCode.UNKNOWN_MARKET,),
               tags=("account",))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        services = self.services
        fields = CANCEL_ALL.command(req.context.body, account_id=req.context.trader_id)
        pair = fields.get("pair")
        shard_ids = (services.shards.for_pair(pair),) if pair is not None else services.engine.shard_ids
        canceled = []
        for result in services.engine.call_many([(shard_id, "cancel_all", fields) for shard_id in shard_ids]):
            if isinstance(result, ApiError):
                raise result
            canceled += result["canceled"]
        ok(resp, {"canceled": [trader_order(order) for order in canceled]})


class Withdrawals:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Withdraw from the available balance", auth=TRADER, body=WITHDRAW, status=201, matcher=True,
               response=ref("Funds"), tags=("account",),
               errors=(RejectCode.UNKNOWN_ASSET, RejectCode.INVALID_AMOUNT, RejectCode.INSUFFICIENT_BALANCE))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        services = self.services
        body = req.context.body
        fields = WITHDRAW.command(body, account_id=req.context.trader_id)
        shard_id = services.shards.funding(body.get("shard_id"))
        ok(resp, funds(services.call(shard_id, "withdraw", fields), shard_id), 201)
