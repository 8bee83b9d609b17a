"""Public routes and what every response carries: headers, CORS, request ids, limits, docs."""

from __future__ import annotations

import re

import orjson
import pytest

from common.config import ShardConfig
from common.types import HTTP_STATUS, RejectCode
from gateway.operations import operation_of

SHARDS = (ShardConfig(0, ("BTC-USDT",), "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3",
                      "tcp://127.0.0.1:4"),
          ShardConfig(1, ("*",), "tcp://127.0.0.1:11", "tcp://127.0.0.1:12", "tcp://127.0.0.1:13",
                      "tcp://127.0.0.1:14"))


def test_health_is_not_enveloped_and_names_every_shard(gateway) -> None:
    result = gateway.client.simulate_get("/health")

    assert result.status_code == 200
    assert result.json["status"] == "ok"
    assert [shard["shard_id"] for shard in result.json["shards"]] == [0]
    assert "success" not in result.json


def test_time(gateway) -> None:
    before = int(gateway.clock.time() * 1000) - 5000
    data = gateway.client.simulate_get("/api/v1/time").json["data"]
    assert data["server_time"] >= before


def test_exchange_info_lists_markets_assets_enums_and_rate_limits(gateway, market) -> None:
    data = gateway.client.simulate_get("/api/v1/exchange-info").json["data"]

    assert [m["pair"] for m in data["markets"]] == ["BTC-USDT"]
    assert data["markets"][0]["taker_fee_bps"] == 10 and data["markets"][0]["shard_id"] == 0
    assert {asset["asset"] for asset in data["assets"]} == {"BTC", "USDT"}
    assert data["order_types"] == ["limit", "market"]
    assert data["time_in_force"] == ["GTC", "IOC", "FOK"]
    assert "decrement" in data["stp_modes"]
    assert data["candle_intervals"] == ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
    limits = data["rate_limits"]
    assert (limits["window_seconds"], limits["key_weight"], limits["ip_weight"]) == (10, 12000, 24000)
    assert limits["weights"]["POST /api/v1/account/orders"] == "1"
    assert limits["weights"]["GET /api/v1/exchange-info"] == "5"
    assert not any("/admin/" in route for route in limits["weights"])


def test_markets_and_assets_are_pages(gateway, market) -> None:
    markets = gateway.client.simulate_get("/api/v1/markets").json["data"]
    assets = gateway.client.simulate_get("/api/v1/assets").json["data"]

    assert [m["pair"] for m in markets["items"]] == ["BTC-USDT"] and markets["has_more"] is False
    assert assets["items"] == [{"asset": "BTC", "decimals": 8}, {"asset": "USDT", "decimals": 8}]


def test_orderbook_best_first_with_depth_and_weights(gateway, alice) -> None:
    for price in ("99.00", "100.00", "98.00"):
        alice.place(price=price)
    alice.place(side="sell", price="101.00")

    result = gateway.client.simulate_get("/api/v1/markets/BTC-USDT/orderbook", query_string="depth=2")

    book = result.json["data"]
    assert book["bids"] == [["100.00", "1.000"], ["99.00", "1.000"]]
    assert book["asks"] == [["101.00", "1.000"]]
    assert book["pair"] == "BTC-USDT" and isinstance(book["seq"], int) and isinstance(book["ts"], int)
    remaining = int(result.headers["X-RateLimit-Remaining"])
    deep = gateway.client.simulate_get("/api/v1/markets/BTC-USDT/orderbook", query_string="depth=1000")
    assert int(deep.headers["X-RateLimit-Remaining"]) == remaining - 10


@pytest.mark.parametrize(("path", "query", "code", "field"), [
    ("/api/v1/markets/DOGE-USDT/orderbook", "", "UNKNOWN_MARKET", None),
    ("/api/v1/markets/btc-usdt/orderbook", "", "UNKNOWN_MARKET", None),
    ("/api/v1/markets/BTC-USDT/orderbook", "depth=0", "INVALID_FIELD", "depth"),
    ("/api/v1/markets/BTC-USDT/orderbook", "depth=5001", "INVALID_FIELD", "depth"),
    ("/api/v1/markets/BTC-USDT/orderbook", "depth=abc", "INVALID_FIELD", "depth"),
    ("/api/v1/markets/BTC-USDT/orderbook", "levels=5", "INVALID_FIELD", "levels"),
])
def test_orderbook_input_errors(gateway, market, path, query, code, field) -> None:
    result = gateway.client.simulate_get(path, query_string=query or None)

    assert result.status_code == 400
    assert result.json["error"]["code"] == code
    assert result.json["error"]["details"].get("field") == field


def test_unknown_paths_and_methods_use_the_envelope(gateway) -> None:
    missing = gateway.client.simulate_get("/api/v1/nothing-here")
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "NOT_FOUND")
    wrong = gateway.client.simulate_delete("/api/v1/time")
    assert (wrong.status_code, wrong.json["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")
    assert "GET" in wrong.headers["Allow"]


def test_every_response_has_the_security_headers_and_a_request_id(gateway) -> None:
    for result in (gateway.client.simulate_get("/api/v1/time"), gateway.client.simulate_get("/missing"),
                   gateway.client.simulate_post("/api/v1/account/orders")):
        headers = result.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert re.fullmatch(r"[0-9a-f]{16}", headers["X-Request-Id"])


def test_a_clients_request_id_is_echoed_and_a_bad_one_replaced(gateway) -> None:
    echoed = gateway.client.simulate_get("/api/v1/time", headers={"X-Request-Id": "client-42.a"})
    assert echoed.headers["X-Request-Id"] == "client-42.a"
    replaced = gateway.client.simulate_get("/api/v1/time", headers={"X-Request-Id": "bad id\u00e9" * 10})
    assert re.fullmatch(r"[0-9a-f]{16}", replaced.headers["X-Request-Id"])


def test_cors_simple_request_and_preflight(gateway) -> None:
    simple = gateway.client.simulate_get("/api/v1/time", headers={"Origin": "https://app.example"})
    assert simple.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-RateLimit-Remaining" in simple.headers["Access-Control-Expose-Headers"]

    preflight = gateway.client.simulate_options("/api/v1/account/orders", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key, X-Timestamp, X-Signature, Content-Type"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "X-Signature" in preflight.headers["Access-Control-Allow-Headers"]


def test_cors_only_for_configured_origins(make_gateway) -> None:
    gateway = make_gateway(cors_origins=("https://good.example",))

    good = gateway.client.simulate_get("/api/v1/time", headers={"Origin": "https://good.example"})
    evil = gateway.client.simulate_get("/api/v1/time", headers={"Origin": "https://evil.example"})

    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_a_body_over_the_limit_is_413_before_anything_else(make_gateway) -> None:
    gateway = make_gateway(max_body_bytes=1024)
    body = orjson.dumps({"pair": "BTC-USDT", "padding": "x" * 2000})

    result = gateway.client.simulate_post("/api/v1/account/orders", body=body)

    assert result.status_code == 413
    assert result.json["error"]["code"] == "BODY_TOO_LARGE"
    assert result.headers["X-Content-Type-Options"] == "nosniff"


def test_metrics_count_requests_latencies_round_trips_and_rejects(gateway, alice) -> None:
    alice.place()
    alice.place(price="1.001")

    text = gateway.client.simulate_get("/metrics").text

    assert 'zmx_gateway_requests_total{method="POST",route="/api/v1/account/orders",status="201"} 1.0' in text
    assert 'zmx_gateway_rejects_total{code="INVALID_PRICE"} 1.0' in text
    assert 'zmx_gateway_request_duration_seconds_count{route="/api/v1/account/orders"} 2.0' in text
    assert "zmx_gateway_matcher_unmatched_replies_total" in text


# ---------------------------------------------------------------- OpenAPI and Swagger UI


def test_the_openapi_document_covers_every_route_method_and_error(gateway) -> None:
    document = gateway.client.simulate_get("/openapi.json").json

    assert document["openapi"].startswith("3.")
    for template, resource in gateway.services.routes:
        for method in ("get", "post", "patch", "delete"):
            declared = operation_of(resource, method)
            if declared is None or not declared.documented:
                continue
            described = document["paths"][template][method]
            for code in declared.possible_errors():
                response = described["responses"][str(HTTP_STATUS[code])]
                assert code.name in response["description"], (template, method, code)
    place = document["paths"]["/api/v1/account/orders"]["post"]
    assert place["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PlaceOrder"}
    schema = document["components"]["schemas"]["PlaceOrder"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["pair", "side", "type"]
    assert "account_id" not in schema["properties"]
    assert set(document["paths"]["/api/v1/account/orders/{order_id}"]) >= {"get", "patch", "delete", "parameters"}
    error_codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(error_codes) == {code.name for code in RejectCode}


def test_swagger_ui_is_served_from_the_package_without_a_cdn(gateway) -> None:
    page = gateway.client.simulate_get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/") for source in sources)
    for source in sources:
        asset = gateway.client.simulate_get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 0
    assert "/openapi.json" in gateway.client.simulate_get("/docs/swagger-initializer.js").text
    assert gateway.client.simulate_get("/docs/../../etc/passwd").status_code == 404
    assert gateway.client.simulate_get("/docs/index.html").status_code == 404


def test_several_shards_route_markets_and_merge_lists(make_gateway) -> None:
    gateway = make_gateway(shards=SHARDS)
    gateway.create_market("BTC-USDT")
    gateway.create_market("ETH-USDT")

    markets = gateway.client.simulate_get("/api/v1/markets").json["data"]["items"]

    assert [(m["pair"], m["shard_id"]) for m in markets] == [("BTC-USDT", 0), ("ETH-USDT", 1)]
    health = gateway.client.simulate_get("/health").json
    assert [(shard["shard_id"], shard["status"]) for shard in health["shards"]] == [(0, "ok"), (1, "ok")]
    book = gateway.client.simulate_get("/api/v1/markets/ETH-USDT/orderbook").json["data"]
    assert book["pair"] == "ETH-USDT"
    assert gateway.engine.calls[-1][:2] == (1, "snapshot")
    gateway.engine.outage[1] = RejectCode.MATCHER_UNAVAILABLE
    health = gateway.client.simulate_get("/health")
    assert health.status_code == 503
    assert [(shard["shard_id"], shard["status"]) for shard in health.json["shards"]] == [
        (0, "ok"), (1, "unavailable")]
