"""The hook through which gateway/history.py adds the store-backed routes."""

from __future__ import annotations

import sys
import types

import falcon

from gateway.envelope import ok, page
from gateway.operations import TRADER, operation
from gateway.schemas import LIMIT, ref
from tests.unit.gateway.conftest import Gateway


def test_history_routes_are_served_guarded_and_documented(monkeypatch, make_gateway) -> None:
    class Trades:
        @operation(summary="Recent trades", query=(LIMIT,), response=ref("OrderPage"), tags=("public",))
        def on_get(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
            ok(resp, page([], None, False) | {"pair": pair, "limit": req.context.query["limit"]})

    class WithdrawalHistory:
        @operation(summary="Withdrawals", auth=TRADER, response=ref("OrderPage"), tags=("account",))
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            ok(resp, page([{"trader_id": req.context.trader_id}]))

    def add_routes(services) -> None:
        services.add_route("/api/v1/markets/{pair}/trades", Trades())
        services.resource("/api/v1/account/withdrawals").on_get = WithdrawalHistory().on_get
        services.closed_orders = lambda trader_id, status, pair, limit, cursor: page([{"status": status}])

    monkeypatch.setitem(sys.modules, "gateway.history", types.SimpleNamespace(add_routes=add_routes))
    gateway: Gateway = make_gateway()
    gateway.create_market()
    alice = gateway.trader("alice", {"USDT": "100"})

    trades = gateway.client.simulate_get("/api/v1/markets/BTC-USDT/trades", query_string="limit=5")
    assert trades.json["data"] == {"items": [], "next_cursor": None, "has_more": False, "pair": "BTC-USDT",
                                   "limit": 5}
    assert gateway.client.simulate_get("/api/v1/markets/BTC-USDT/trades",
                                       query_string="limit=0").json["error"]["code"] == "INVALID_FIELD"
    assert alice.get("/api/v1/account/withdrawals").json["data"]["items"] == [{"trader_id": alice.trader_id}]
    assert gateway.client.simulate_get("/api/v1/account/withdrawals").status_code == 401
    assert alice.post("/api/v1/account/withdrawals", {"asset": "USDT", "amount": "1"}).status_code == 201
    assert alice.get("/api/v1/account/orders", "status=closed").json["data"]["items"] == [{"status": "closed"}]
    document = gateway.client.simulate_get("/openapi.json").json
    assert "get" in document["paths"]["/api/v1/markets/{pair}/trades"]
    assert set(document["paths"]["/api/v1/account/withdrawals"]) >= {"get", "post"}
