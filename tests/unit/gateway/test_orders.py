"""Trader routes through the app: orders, balances, withdrawals, and how rejects map to HTTP."""

from __future__ import annotations

import pytest

from common.types import RejectCode

ORDERS = "/api/v1/account/orders"
MISSING = object()


def error_of(result) -> tuple[int, str, dict]:
    body = result.json
    assert body["success"] is False
    assert isinstance(body["timestamp"], int)
    return result.status_code, body["error"]["code"], body["error"]["details"]


def test_a_placed_order_rests_and_the_envelope_carries_the_spec_order_shape(alice) -> None:
    result = alice.place(client_order_id="first")

    assert result.status_code == 201
    assert result.json["success"] is True
    order = result.json["data"]
    assert set(order) >= {"order_id", "client_order_id", "pair", "side", "type", "price", "quantity",
                          "quote_quantity", "filled_quantity", "average_price", "status", "time_in_force",
                          "post_only", "stp", "created_at", "updated_at", "fills"}
    assert "account_id" not in order
    assert order["status"] == "NEW" and order["price"] == "100.00" and order["quantity"] == "1.000"
    assert order["client_order_id"] == "first" and order["fills"] == []


def test_a_crossing_order_returns_the_fills_it_made_and_the_maker_sees_its_order_filled(alice, bob) -> None:
    maker = alice.place(side="sell", price="101.00", quantity="2.000").json["data"]

    taker = bob.place(side="buy", price="102.00", quantity="0.500")

    assert taker.status_code == 201
    data = taker.json["data"]
    assert data["status"] == "FILLED" and data["filled_quantity"] == "0.500"
    assert data["average_price"].startswith("101.00")
    assert [(fill["price"], fill["quantity"], fill["liquidity"]) for fill in data["fills"]] == [
        ("101.00", "0.500", "taker")]
    assert data["fills"][0]["fee_asset"] == "BTC"
    again = alice.get(f"{ORDERS}/{maker['order_id']}").json["data"]
    assert again["status"] == "PARTIALLY_FILLED" and again["filled_quantity"] == "0.500"


def test_an_ioc_remainder_is_a_success_with_status_expired(alice) -> None:
    result = alice.place(time_in_force="IOC")

    assert result.status_code == 201
    assert result.json["data"]["status"] == "EXPIRED"


def test_get_amend_and_cancel_an_order_by_id(alice) -> None:
    order_id = alice.place().json["data"]["order_id"]

    assert alice.get(f"{ORDERS}/{order_id}").json["data"]["status"] == "NEW"
    amended = alice.request("PATCH", f"{ORDERS}/{order_id}", {"quantity": "0.500", "price": "99.00"})
    assert amended.status_code == 200
    assert (amended.json["data"]["quantity"], amended.json["data"]["price"]) == ("0.500", "99.00")
    canceled = alice.request("DELETE", f"{ORDERS}/{order_id}")
    assert canceled.status_code == 200 and canceled.json["data"]["status"] == "CANCELED"
    assert error_of(alice.request("DELETE", f"{ORDERS}/{order_id}"))[:2] == (422, "ORDER_NOT_OPEN")


def test_orders_by_client_order_id(alice) -> None:
    alice.place(client_order_id="mine-1")
    path = f"{ORDERS}/by-client-id/mine-1"

    assert alice.get(path).json["data"]["client_order_id"] == "mine-1"
    assert alice.request("PATCH", path, {"quantity": "0.250"}).json["data"]["quantity"] == "0.250"
    assert alice.request("DELETE", path).json["data"]["status"] == "CANCELED"
    assert alice.get(path).json["data"]["status"] == "CANCELED"  # closed orders are found too
    assert error_of(alice.request("DELETE", path))[:2] == (404, "ORDER_NOT_FOUND")  # but only open ones act
    assert error_of(alice.get(f"{ORDERS}/by-client-id/mine-2"))[:2] == (404, "ORDER_NOT_FOUND")
    assert error_of(alice.get(f"{ORDERS}/by-client-id/bad%20id"))[:3] == (
        400, "INVALID_FIELD", {"field": "client_order_id"})


def test_another_traders_order_is_not_found(alice, bob) -> None:
    order_id = alice.place().json["data"]["order_id"]

    for method in ("GET", "DELETE"):
        assert error_of(bob.request(method, f"{ORDERS}/{order_id}"))[:2] == (404, "ORDER_NOT_FOUND")
    assert error_of(bob.request("PATCH", f"{ORDERS}/{order_id}", {"quantity": "0.1"}))[:2] == (404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize("order_id", ["abc", "0", "-5", "1.5", "99999999999999999999", "１２"])
def test_a_malformed_order_id_in_the_path_is_invalid_field(alice, order_id: str) -> None:
    assert error_of(alice.get(f"{ORDERS}/{order_id}"))[:3] == (400, "INVALID_FIELD", {"field": "order_id"})


def test_an_order_id_of_an_unconfigured_shard_is_not_found(alice) -> None:
    assert error_of(alice.get(f"{ORDERS}/1025"))[:2] == (404, "ORDER_NOT_FOUND")  # shard 1


def test_open_orders_are_paginated_newest_first_with_a_cursor(alice) -> None:
    ids = [alice.place(price=f"{90 + index}.00", client_order_id=f"o{index}").json["data"]["order_id"]
           for index in range(5)]

    first = alice.get(ORDERS, "status=open&limit=2").json["data"]
    assert [order["order_id"] for order in first["items"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = alice.get(ORDERS, f"limit=2&cursor={first['next_cursor']}").json["data"]
    third = alice.get(ORDERS, f"limit=2&cursor={second['next_cursor']}").json["data"]
    assert [order["order_id"] for order in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["has_more"] is False and third["next_cursor"] is None
    assert error_of(alice.get(ORDERS, "cursor=nonsense"))[:3] == (400, "INVALID_FIELD", {"field": "cursor"})


def test_open_orders_of_one_pair_and_an_unknown_pair(gateway, alice) -> None:
    gateway.create_market("ETH-USDT")
    alice.place()
    alice.place(pair="ETH-USDT")

    items = alice.get(ORDERS, "pair=ETH-USDT").json["data"]["items"]
    assert [order["pair"] for order in items] == ["ETH-USDT"]
    assert error_of(alice.get(ORDERS, "pair=DOGE-USDT"))[:2] == (400, "UNKNOWN_MARKET")


def test_closed_orders_come_from_the_history_store(alice) -> None:
    result = alice.get(ORDERS, "status=closed")
    assert result.status_code == 200
    assert result.json["data"] == {"items": [], "next_cursor": None, "has_more": False}
    assert error_of(alice.get(ORDERS, "status=closed&cursor=bm90LWEtY3Vyc29y"))[:3] == (
        400, "INVALID_FIELD", {"field": "cursor"})


def test_closed_orders_are_served_by_the_history_hook_when_set(gateway, alice) -> None:
    calls = []

    def closed_orders(trader_id, status, pair, limit, cursor):
        calls.append((trader_id, status, pair, limit, cursor))
        return {"items": [], "next_cursor": None, "has_more": False}

    gateway.services.closed_orders = closed_orders
    result = alice.get(ORDERS, "status=all&limit=7")

    assert result.status_code == 200 and result.json["data"]["items"] == []
    assert calls == [(alice.trader_id, "all", None, 7, None)]


def test_cancel_all_of_one_pair_or_every_pair(gateway, alice) -> None:
    gateway.create_market("ETH-USDT")
    alice.place()
    alice.place(price="99.00")
    alice.place(pair="ETH-USDT")

    one_pair = alice.post(f"{ORDERS}/cancel-all", {"pair": "ETH-USDT"}).json["data"]["canceled"]
    assert [order["pair"] for order in one_pair] == ["ETH-USDT"]
    rest = alice.post(f"{ORDERS}/cancel-all").json["data"]["canceled"]
    assert sorted(order["price"] for order in rest) == ["100.00", "99.00"]
    assert alice.get(ORDERS).json["data"]["items"] == []


def test_balances_show_locks_as_a_page(alice) -> None:
    alice.place(price="100.00", quantity="1.000")

    result = alice.get("/api/v1/account/balances")

    assert result.status_code == 200
    balances = {balance["asset"]: balance for balance in result.json["data"]["items"]}
    assert balances["USDT"]["locked"] == "100.10000000"  # price x quantity + the 10 bps taker fee
    assert balances["USDT"]["total"] == "100000.00000000"
    assert result.json["data"]["has_more"] is False


def test_withdrawal_debits_the_available_balance(alice) -> None:
    result = alice.post("/api/v1/account/withdrawals", {"asset": "USDT", "amount": "250.5"})

    assert result.status_code == 201
    assert result.json["data"] == {"trader_id": alice.trader_id, "shard_id": 0, "asset": "USDT",
                                   "available": "99749.50000000", "locked": "0.00000000",
                                   "total": "99749.50000000"}
    assert error_of(alice.post("/api/v1/account/withdrawals", {"asset": "USDT", "amount": "1000000"}))[:2] == (
        422, "INSUFFICIENT_BALANCE")
    assert error_of(alice.post("/api/v1/account/withdrawals", {"asset": "USDT", "amount": "1.000000001"}))[:2] == (
        400, "INVALID_AMOUNT")
    assert error_of(alice.post("/api/v1/account/withdrawals", {"asset": "XYZ", "amount": "1"}))[:2] == (
        400, "UNKNOWN_ASSET")
    assert error_of(alice.post("/api/v1/account/withdrawals", {"asset": "USDT", "amount": "1", "shard_id": 3}))[
        :3] == (400, "INVALID_FIELD", {"field": "shard_id"})


def test_profile(alice) -> None:
    data = alice.get("/api/v1/account").json["data"]

    assert data["trader_id"] == alice.trader_id and data["username"] == "alice"
    assert data["api_key_prefix"] == alice.api_key[:12]


# ---------------------------------------------------------------- validation: 400s with the field named


@pytest.mark.parametrize(("changes", "code", "field"), [
    ({"price": "100.001"}, "INVALID_PRICE", "price"),
    ({"quantity": "0.0001"}, "INVALID_QUANTITY", "quantity"),
    ({"price": "NaN"}, "INVALID_PRICE", "price"),
    ({"price": "-1"}, "INVALID_PRICE", "price"),
    ({"price": "0"}, "INVALID_PRICE", "price"),
    ({"price": "1e999"}, "INVALID_PRICE", "price"),
    ({"quantity": "Infinity"}, "INVALID_QUANTITY", "quantity"),
    ({"price": 100.5}, "INVALID_FIELD", "price"),
    ({"quantity": 1}, "INVALID_FIELD", "quantity"),
    ({"side": "long"}, "INVALID_FIELD", "side"),
    ({"type": "stop"}, "INVALID_FIELD", "type"),
    ({"time_in_force": "GTD"}, "INVALID_FIELD", "time_in_force"),
    ({"post_only": "yes"}, "INVALID_FIELD", "post_only"),
    ({"stp": "cancel"}, "INVALID_FIELD", "stp"),
    ({"client_order_id": "x" * 37}, "INVALID_FIELD", "client_order_id"),
    ({"client_order_id": "spaces are bad"}, "INVALID_FIELD", "client_order_id"),
    ({"account_id": 2}, "INVALID_FIELD", "account_id"),
    ({"op": "withdraw"}, "INVALID_FIELD", "op"),
    ({"leverage": 10}, "INVALID_FIELD", "leverage"),
    ({"side": MISSING}, "INVALID_FIELD", "side"),
    ({"pair": 7}, "INVALID_FIELD", "pair"),
])
def test_invalid_order_fields_are_400_with_a_precise_code_and_field(alice, changes, code, field) -> None:
    fields = {"pair": "BTC-USDT", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1.000"}
    fields.update(changes)

    result = alice.post(ORDERS, {name: value for name, value in fields.items() if value is not MISSING})

    status, actual_code, details = error_of(result)
    assert (status, actual_code, details.get("field")) == (400, code, field)


def test_an_unknown_market_is_400(alice) -> None:
    assert error_of(alice.place(pair="DOGE-USDT"))[:2] == (400, "UNKNOWN_MARKET")
    assert error_of(alice.place(pair="not a pair"))[:2] == (400, "UNKNOWN_MARKET")


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\"text\"", b"12", b"null", b"\xff\xfe", b"{\"a\": NaN}",
                                 b"[" * 10_000])
def test_a_body_that_is_not_a_json_object_is_invalid_json(alice, raw: bytes) -> None:
    status, code, _ = error_of(alice.request("POST", ORDERS, raw=raw))
    assert (status, code) == (400, "INVALID_JSON")


def test_fields_in_a_body_of_a_route_that_takes_none_are_refused(alice) -> None:
    assert error_of(alice.request("DELETE", f"{ORDERS}/1024", {"force": True}))[:3] == (
        400, "INVALID_FIELD", {"field": "force"})


def test_unknown_and_repeated_query_parameters_are_refused(alice) -> None:
    assert error_of(alice.get(ORDERS, "stauts=open"))[:3] == (400, "INVALID_FIELD", {"field": "stauts"})
    assert error_of(alice.get(ORDERS, "limit=1&limit=2"))[:3] == (400, "INVALID_FIELD", {"field": "limit"})
    for limit in ("0", "1001", "-1", "ten", "", "1e2"):
        assert error_of(alice.get(ORDERS, f"limit={limit}"))[:3] == (400, "INVALID_FIELD", {"field": "limit"})


# ---------------------------------------------------------------- business rejects: 409, 422


def test_business_rejects_map_to_their_status(gateway, alice) -> None:
    alice.place(client_order_id="dup")
    assert error_of(alice.place(client_order_id="dup"))[:2] == (409, "DUPLICATE_CLIENT_ORDER_ID")
    assert error_of(alice.place(quantity="5000.000"))[:2] == (422, "INSUFFICIENT_BALANCE")
    alice.place(side="sell", price="105.00")
    assert error_of(alice.place(price="105.00", post_only=True))[:2] == (422, "POST_ONLY_WOULD_TAKE")
    gateway.admin("POST", "/api/v1/admin/markets/BTC-USDT/halt")
    assert error_of(alice.place())[:2] == (422, "MARKET_HALTED")


def test_a_rejected_amend_leaves_the_order_unchanged(alice) -> None:
    order = alice.place().json["data"]

    assert error_of(alice.request("PATCH", f"{ORDERS}/{order['order_id']}", {}))[:2] == (422, "AMEND_REJECTED")
    assert alice.get(f"{ORDERS}/{order['order_id']}").json["data"]["quantity"] == "1.000"


# ---------------------------------------------------------------- the matcher unreachable or stalled


@pytest.mark.parametrize(("outage", "status"), [(RejectCode.MATCHER_UNAVAILABLE, 503),
                                                (RejectCode.MATCHER_TIMEOUT, 504)])
def test_matcher_outages_are_503_and_504(gateway, alice, outage: RejectCode, status: int) -> None:
    gateway.engine.outage[0] = outage

    assert error_of(alice.place())[:2] == (status, outage.name)
    assert error_of(alice.get("/api/v1/account/balances"))[:2] == (status, outage.name)
    health = gateway.client.simulate_get("/health")
    assert health.status_code == 503
    assert health.json["status"] == "unavailable"
    assert health.json["shards"][0]["status"] == ("timeout" if status == 504 else "unavailable")


def test_an_order_that_timed_out_is_not_sent_again(gateway, alice) -> None:
    gateway.engine.outage[0] = RejectCode.MATCHER_TIMEOUT
    before = len(gateway.engine.calls)

    alice.place(client_order_id="once")

    assert gateway.engine.ops()[before:] == ["place"]


def test_an_order_the_matcher_forgot_is_answered_from_the_history_store(gateway, alice, monkeypatch) -> None:
    forgotten = (123_456 << 10) | 0
    stored = {"order_id": forgotten, "account_id": alice.trader_id, "status": "FILLED",
              "fills": [{"trade_id": 1}]}
    monkeypatch.setattr(gateway.store.history, "order",
                        lambda trader_id, order_id: dict(stored) if (trader_id, order_id) == (
                            alice.trader_id, forgotten) else None)

    found = alice.get(f"{ORDERS}/{forgotten}")
    assert found.status_code == 200
    assert found.json["data"] == {"order_id": forgotten, "status": "FILLED", "fills": []}
    assert error_of(alice.get(f"{ORDERS}/{forgotten + 1024}"))[:2] == (404, "ORDER_NOT_FOUND")
