"""The order methods every SDK client shares, defined once over `_execute(op, fields)`.

Method names, arguments and field names are the ZeroMQ protocol's ops and fields
(docs/zmq-protocol.md), which are also the REST API's: `place` is `POST /account/orders`,
`amend` is `PATCH`, `cancel` is `DELETE`, and so on. Each client implements `_execute`
(the REST client maps an op to its route, the bot clients send it on their DEALER), so the
three clients answer the same calls with the same data: the orders and balances as the
servers render them (plain dicts of strings, ints and lists).

Prices and quantities may be given as decimal strings, `Decimal`s or ints; floats are
refused (they cannot say exactly what price you mean). Bad arguments raise
`InvalidRequest` before anything is sent.

`reconcile` is how a client finds out where its orders stand after a timeout or a lost
connection: it is written once as a plan of requests (a generator) that the synchronous
and the asyncio clients each run with their own `_execute`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Awaitable

from common.errors import InvalidRequest, NotFound, ZmxError
from common.types import CLIENT_ORDER_ID

Number = str | Decimal | int


def decimal_text(value: Number | None, name: str) -> str | None:
    """Return a price or quantity as the wire's decimal string; refuse floats and non-finite values."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidRequest("INVALID_FIELD", f"{name} must be a finite decimal", {"field": name})
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRequest("INVALID_FIELD", f"{name} must be a decimal string, a Decimal or an int, "
                         f"not {type(value).__name__}", {"field": name})


def order_reference(order_id: int | None, client_order_id: str | None) -> dict[str, Any]:
    """Return the fields naming one order: exactly one of order_id and client_order_id."""
    if (order_id is None) == (client_order_id is None):
        raise InvalidRequest("INVALID_FIELD", "give exactly one of order_id and client_order_id",
                             {"field": "order_id"})
    if order_id is not None:
        if type(order_id) is not int or order_id <= 0:
            raise InvalidRequest("INVALID_FIELD", "order_id must be a positive integer", {"field": "order_id"})
        return {"order_id": order_id}
    _check_client_order_id(client_order_id)
    return {"client_order_id": client_order_id}


def _check_client_order_id(client_order_id: Any) -> None:
    if type(client_order_id) is not str or not CLIENT_ORDER_ID.fullmatch(client_order_id):
        raise InvalidRequest("INVALID_FIELD", "client_order_id must be 1-36 characters of A-Z a-z 0-9 _ -",
                             {"field": "client_order_id"})


def place_fields(pair: str, side: str, type: str, quantity: Number | None, price: Number | None,
                 quote_quantity: Number | None, time_in_force: str | None, post_only: bool | None,
                 stp: str | None, client_order_id: str | None) -> dict[str, Any]:
    """Return the `place` fields, leaving out the absent ones (the servers apply the defaults)."""
    if client_order_id is not None:
        _check_client_order_id(client_order_id)
    fields = {
        "pair": pair,
        "side": side,
        "type": type,
        "quantity": decimal_text(quantity, "quantity"),
        "price": decimal_text(price, "price"),
        "quote_quantity": decimal_text(quote_quantity, "quote_quantity"),
        "time_in_force": time_in_force,
        "post_only": post_only,
        "stp": stp,
        "client_order_id": client_order_id,
    }
    return {name: value for name, value in fields.items() if value is not None}


def amend_fields(order_id: int | None, client_order_id: str | None, quantity: Number | None,
                 price: Number | None) -> dict[str, Any]:
    fields = order_reference(order_id, client_order_id)
    if quantity is None and price is None:
        raise InvalidRequest("INVALID_FIELD", "an amend needs a new quantity or a new price", {"field": "quantity"})
    if quantity is not None:
        fields["quantity"] = decimal_text(quantity, "quantity")
    if price is not None:
        fields["price"] = decimal_text(price, "price")
    return fields


def _optional_pair(pair: str | None) -> dict[str, Any]:
    return {} if pair is None else {"pair": pair}


@dataclass
class Reconciliation:
    """Where a client's orders stand, from the server's point of view.

    `open`: the asked-about client_order_ids that are open, with their orders;
    `closed`: the asked-about ids that are not open, with the order when the server still
    knows it by order id (filled, canceled, expired), else None (it never arrived, or it
    closed before its order id was known);
    `others`: open orders the caller did not ask about (an earlier run's, or without a
    client_order_id): adopt or cancel them;
    `balances`: the account's balances now.
    """

    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)


Plan = Generator[tuple[str, dict[str, Any]], Any, Any]


def reconcile_plan(known: Mapping[str, int | None], pair: str | None) -> Plan:
    """Yield the requests that reconcile `known` (client_order_id -> order_id or None); return a Reconciliation."""
    result = Reconciliation()
    orders = yield "open_orders", _optional_pair(pair)
    by_client_id = {order["client_order_id"]: order for order in orders if order.get("client_order_id")}
    for client_order_id, order_id in known.items():
        order = by_client_id.pop(client_order_id, None)
        if order is not None:
            result.open[client_order_id] = order
        elif order_id is None:
            result.closed[client_order_id] = None
        else:
            try:
                result.closed[client_order_id] = yield "get_order", {"order_id": order_id}
            except NotFound:
                result.closed[client_order_id] = None
    asked = set(known)
    result.others = [order for order in orders if order.get("client_order_id") not in asked]
    result.balances = yield "balances", {}
    return result


def run_plan(plan: Plan, execute: Callable[[str, dict[str, Any]], Any]) -> Any:
    """Run a request plan with a synchronous `execute(op, fields)`; return its result."""
    try:
        step = next(plan)
        while True:
            try:
                result = execute(*step)
            except ZmxError as error:
                step = plan.throw(error)
            else:
                step = plan.send(result)
    except StopIteration as done:
        return done.value


async def run_plan_async(plan: Plan, execute: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> Any:
    """Run a request plan with a coroutine `execute(op, fields)`; return its result."""
    try:
        step = next(plan)
        while True:
            try:
                result = await execute(*step)
            except ZmxError as error:
                step = plan.throw(error)
            else:
                step = plan.send(result)
    except StopIteration as done:
        return done.value


class OrderMethods:
    """place / amend / cancel / cancel_all / get_order / open_orders / balances / reconcile, synchronous."""

    def _execute(self, op: str, fields: dict[str, Any]) -> Any:
        raise NotImplementedError

    def place(self, pair: str, side: str, type: str = "limit", *, quantity: Number | None = None,
              price: Number | None = None, quote_quantity: Number | None = None, time_in_force: str | None = None,
              post_only: bool | None = None, stp: str | None = None,
              client_order_id: str | None = None) -> dict[str, Any]:
        """Place an order; return it as accepted, with the fills it made (status may already be FILLED or EXPIRED)."""
        return self._execute("place", place_fields(pair, side, type, quantity, price, quote_quantity, time_in_force,
                                                   post_only, stp, client_order_id))

    def amend(self, order_id: int | None = None, *, client_order_id: str | None = None,
              quantity: Number | None = None, price: Number | None = None) -> dict[str, Any]:
        """Change an open order's total quantity and/or price; return the order."""
        return self._execute("amend", amend_fields(order_id, client_order_id, quantity, price))

    def cancel(self, order_id: int | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        """Cancel an open order; return it, CANCELED."""
        return self._execute("cancel", order_reference(order_id, client_order_id))

    def cancel_all(self, pair: str | None = None) -> dict[str, Any]:
        """Cancel every open order (of one pair); return `{"canceled": [order...]}`."""
        return self._execute("cancel_all", _optional_pair(pair))

    def get_order(self, order_id: int | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        """Return one order: by order id open or closed, by client_order_id open only."""
        return self._execute("get_order", order_reference(order_id, client_order_id))

    def open_orders(self, pair: str | None = None) -> list[dict[str, Any]]:
        """Return every open order (of one pair)."""
        return self._execute("open_orders", _optional_pair(pair))

    def balances(self) -> list[dict[str, Any]]:
        """Return `[{"asset", "available", "locked", "total"}...]`."""
        return self._execute("balances", {})

    def reconcile(self, known: Mapping[str, int | None], pair: str | None = None) -> Reconciliation:
        """Find out where the orders placed with these client_order_ids stand (see Reconciliation)."""
        return run_plan(reconcile_plan(known, pair), self._execute)


class AsyncOrderMethods:
    """The same methods as OrderMethods, as coroutines over an `async _execute(op, fields)`."""

    async def _execute(self, op: str, fields: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def place(self, pair: str, side: str, type: str = "limit", *, quantity: Number | None = None,
                    price: Number | None = None, quote_quantity: Number | None = None,
                    time_in_force: str | None = None, post_only: bool | None = None, stp: str | None = None,
                    client_order_id: str | None = None) -> dict[str, Any]:
        """Place an order; return it as accepted, with the fills it made."""
        return await self._execute("place", place_fields(pair, side, type, quantity, price, quote_quantity,
                                                         time_in_force, post_only, stp, client_order_id))

    async def amend(self, order_id: int | None = None, *, client_order_id: str | None = None,
                    quantity: Number | None = None, price: Number | None = None) -> dict[str, Any]:
        """Change an open order's total quantity and/or price; return the order."""
        return await self._execute("amend", amend_fields(order_id, client_order_id, quantity, price))

    async def cancel(self, order_id: int | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        """Cancel an open order; return it, CANCELED."""
        return await self._execute("cancel", order_reference(order_id, client_order_id))

    async def cancel_all(self, pair: str | None = None) -> dict[str, Any]:
        """Cancel every open order (of one pair); return `{"canceled": [order...]}`."""
        return await self._execute("cancel_all", _optional_pair(pair))

    async def get_order(self, order_id: int | None = None, *, client_order_id: str | None = None) -> dict[str, Any]:
        """Return one order: by order id open or closed, by client_order_id open only."""
        return await self._execute("get_order", order_reference(order_id, client_order_id))

    async def open_orders(self, pair: str | None = None) -> list[dict[str, Any]]:
        """Return every open order (of one pair)."""
        return await self._execute("open_orders", _optional_pair(pair))

    async def balances(self) -> list[dict[str, Any]]:
        """Return `[{"asset", "available", "locked", "total"}...]`."""
        return await self._execute("balances", {})

    async def reconcile(self, known: Mapping[str, int | None], pair: str | None = None) -> Reconciliation:
        """Find out where the orders placed with these client_order_ids stand (see Reconciliation)."""
        return await run_plan_async(reconcile_plan(known, pair), self._execute)
