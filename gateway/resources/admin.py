"""Admin routes (Authorization: Bearer <admin token>): traders, keys, deposits, markets."""

from __future__ import annotations

import falcon

from common.types import RejectCode
from gateway.envelope import ok
from gateway.operations import ADMIN, operation
from gateway.schemas import (
    CREATE_MARKET,
    CREATE_TRADER,
    CURSOR_PARAM,
    DEPOSIT,
    LIMIT,
    pair_from_path,
    ref,
    trader_id_from_path,
)
from gateway.services import Services

_TAGS = ("admin",)


class Traders:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Create a trader and its API key (the secret is shown once)", auth=ADMIN,
               body=CREATE_TRADER, status=201, response=ref("NewTrader"), errors=(RejectCode.ALREADY_EXISTS,),
               tags=_TAGS)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.services.admin.create_trader(req.context.body), 201)

    @operation(summary="Every trader, oldest first", auth=ADMIN, query=(LIMIT, CURSOR_PARAM),
               response=ref("TraderPage"), tags=_TAGS)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        ok(resp, self.services.admin.list_traders(query["limit"], query["cursor"]))


class TraderKeys:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Rotate: a new key and secret; the old key stops working", auth=ADMIN, status=201,
               response=ref("NewKey"), errors=(RejectCode.NOT_FOUND,), tags=_TAGS,
               description="Every worker stops accepting the old key within key_cache_seconds.")
    def on_post(self, req: falcon.Request, resp: falcon.Response, trader_id: str) -> None:
        ok(resp, self.services.admin.rotate_key(trader_id_from_path(trader_id)), 201)

    @operation(summary="Revoke every key of the trader", auth=ADMIN, response=ref("RevokedKeys"),
               errors=(RejectCode.NOT_FOUND,), tags=_TAGS)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, trader_id: str) -> None:
        ok(resp, self.services.admin.revoke_keys(trader_id_from_path(trader_id)))


class Deposits:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Credit a deposit to a trader", auth=ADMIN, body=DEPOSIT, status=201, matcher=True,
               response=ref("Funds"), errors=(RejectCode.NOT_FOUND, RejectCode.UNKNOWN_ASSET,
                                              RejectCode.INVALID_AMOUNT), tags=_TAGS)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.services.admin.deposit(req.context.body), 201)


class Markets:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Create a market", auth=ADMIN, body=CREATE_MARKET, status=201, matcher=True,
               response=ref("Market"), tags=_TAGS,
               errors=(RejectCode.ALREADY_EXISTS, RejectCode.UNKNOWN_MARKET, RejectCode.FORBIDDEN),
               description="Missing assets are created: with base_decimals / quote_decimals when given, else "
                           "with 8 decimals or more when the lot size (base) or tick size x lot size (quote) "
                           "needs more.")
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.services.admin.create_market(req.context.body), 201)


class MarketHalt:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Halt a market: new orders and amends are refused, cancels work", auth=ADMIN, matcher=True,
               response=ref("Market"), errors=(RejectCode.UNKNOWN_MARKET,), tags=_TAGS)
    def on_post(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        ok(resp, self.services.admin.set_halted(pair_from_path(pair), True))


class MarketResume:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Resume a halted market", auth=ADMIN, matcher=True, response=ref("Market"),
               errors=(RejectCode.UNKNOWN_MARKET,), tags=_TAGS)
    def on_post(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        ok(resp, self.services.admin.set_halted(pair_from_path(pair), False))
