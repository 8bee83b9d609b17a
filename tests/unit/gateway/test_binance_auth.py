"""/api/v3 signatures, timestamps, parameters, weights and errors, as Binance defines them."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from common.types import RejectCode
from gateway.binance.params import parse
from tests.unit.gateway.binance_client import BinanceClient, error_of, sign

# The worked example of Binance's spot API docs ("SIGNED Endpoint Examples for POST /api/v3/order").
DOCS_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOCS_PARAMS = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000" \
              "&timestamp=1499827319559"


@pytest.fixture
def binance(gateway, alice) -> BinanceClient:
    return BinanceClient(gateway, alice)


@pytest.mark.parametrize("query, body, signature", [
    ("", DOCS_PARAMS, "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    (DOCS_PARAMS, "", "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    # Mixed: the query string and the body concatenated with no "&" between them.
    ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
     "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"),
])
def test_the_signed_payload_reproduces_the_binance_docs_examples(query, body, signature) -> None:
    with_signature = ("&" if body else "") + "signature=" + signature
    params = parse(query, (body + with_signature).encode())

    assert hmac.new(DOCS_SECRET.encode(), params.payload, hashlib.sha256).hexdigest() == signature
    assert params.signature == signature and params.values["symbol"] == "LTCBTC"


def test_signatures_in_the_query_the_body_or_split_between_them_are_accepted(binance) -> None:
    assert binance.signed("GET", "account").status_code == 200
    assert binance.signed("POST", "order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                            "timeInForce": "GTC", "quantity": "1", "price": "10"}).status_code == 200
    assert binance.order(price="11", in_body=False).status_code == 200

    query = "symbol=BTCUSDT&side=BUY&type=LIMIT"
    body = f"timeInForce=GTC&quantity=1&price=12&timestamp={binance.now_ms()}"
    split = binance.raw("POST", "order", query, f"{body}&signature={sign(binance.trader.api_secret, query + body)}",
                        binance.key_header())
    assert split.status_code == 200, split.json
    body = f"timeInForce=GTC&quantity=1&price=13&timestamp={binance.now_ms()}"
    joined_with_ampersand = sign(binance.trader.api_secret, query + "&" + body)
    refused = binance.raw("POST", "order", query, f"{body}&signature={joined_with_ampersand}", binance.key_header())
    assert error_of(refused) == (400, -1022, "Signature for this request is not valid.")
    open_prices = [order["price"] for order in binance.signed("GET", "openOrders").json]
    assert open_prices == ["10.00", "11.00", "12.00"]


def test_key_and_signature_failures(gateway, binance) -> None:
    payload = f"timestamp={binance.now_ms()}"
    signature = sign(binance.trader.api_secret, payload)
    target = f"{payload}&signature={signature}"

    assert error_of(binance.raw("GET", "account", target)) == (401, -2014, "API-key format invalid.")
    assert error_of(binance.raw("GET", "account", target, headers={"X-MBX-APIKEY": "not-a-key"}))[1] == -2014
    unknown = binance.raw("GET", "account", target, headers={"X-MBX-APIKEY": "zmx_" + "0" * 32})
    assert error_of(unknown) == (401, -2015, "Invalid API-key, IP, or permissions for action.")
    assert error_of(binance.raw("GET", "account", payload, headers=binance.key_header())) == (
        400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    wrong = binance.raw("GET", "account", f"{payload}&signature={'0' * 64}", headers=binance.key_header())
    assert error_of(wrong)[1] == -1022
    twice = binance.raw("GET", "account", f"{target}&signature={signature}", headers=binance.key_header())
    assert error_of(twice) == (400, -1101, "Duplicate values for a parameter detected.")
    # The signature is not case sensitive.
    upper = binance.raw("GET", "account", f"{payload}&signature={signature.upper()}", headers=binance.key_header())
    assert upper.status_code == 200
    # A revoked key stops working here as on /api/v1.
    gateway.admin("DELETE", f"/api/v1/admin/traders/{binance.trader.trader_id}/keys")
    gateway.clock.advance(1)
    assert error_of(binance.signed("GET", "account"))[1] == -2015


def test_timestamps_follow_binance_rule_within_the_gateway_window(make_gateway) -> None:
    gateway = make_gateway(receive_window_ms=5000)
    gateway.create_market()
    binance = BinanceClient(gateway, gateway.trader("alice"))
    now = binance.now_ms()

    def code(**kwargs) -> int:
        result = binance.signed("GET", "account", **kwargs)
        return 200 if result.status_code == 200 else error_of(result)[1]

    assert code(timestamp=now + 999) == 200
    ahead = binance.signed("GET", "account", timestamp=binance.now_ms() + 1000)
    assert error_of(ahead) == (400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    assert code(timestamp=binance.now_ms() - 5000) == 200  # the default recvWindow, 5000, inclusive
    behind = binance.signed("GET", "account", timestamp=binance.now_ms() - 5001)
    assert error_of(behind) == (400, -1021, "Timestamp for this request is outside of the recvWindow.")
    assert code(timestamp=binance.now_ms() - 2001, recv_window=2000) == -1021
    assert code(timestamp=binance.now_ms() - 2000, recv_window="2000.5") == 200
    # recvWindow may ask for more than the gateway allows, never get it.
    assert code(timestamp=binance.now_ms() - 7000, recv_window=10000) == -1021
    assert error_of(binance.signed("GET", "account", recv_window=60001)) == (
        400, -1131, "recvWindow must be less than 60000")
    assert code(recv_window="soon") == -1102
    assert code(timestamp="12a") == -1102


def test_a_replayed_order_is_refused_and_a_repeated_read_is_not(binance) -> None:
    payload = (f"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=10"
               f"&newClientOrderId=once&timestamp={binance.now_ms()}")
    body = f"{payload}&signature={sign(binance.trader.api_secret, payload)}"
    assert binance.raw("POST", "order", body=body, headers=binance.key_header()).status_code == 200
    replay = binance.raw("POST", "order", body=body, headers=binance.key_header())
    assert error_of(replay)[:2] == (400, -1022)
    assert "used already" in error_of(replay)[2]
    assert len(binance.signed("GET", "openOrders").json) == 1

    read = f"timestamp={binance.now_ms()}"
    read += f"&signature={sign(binance.trader.api_secret, read)}"
    assert [binance.raw("GET", "account", read, headers=binance.key_header()).status_code for _ in range(2)] == [
        200, 200]


@pytest.mark.parametrize("path, query, expected", [
    ("depth", "symbol=BTCUSDT&limits=5", (-1104, "Not all sent parameters were read; read '1' parameter(s) but was "
                                                 "sent '2'.")),
    ("depth", "symbol=BTCUSDT&symbol=BTCUSDT", (-1101, "Duplicate values for a parameter detected.")),
    ("depth", "symbol=", (-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")),
    ("depth", "symbol=BTCUSDT&limit=", (-1105, "Parameter 'limit' was empty.")),
    ("depth", "symbol=btcusdt", (-1100, "Illegal characters found in parameter 'symbol'; legal range is "
                                        "'^[A-Z0-9]{1,24}$'.")),
    ("depth", "symbol=ETHUSDT", (-1121, "Invalid symbol.")),
    ("depth", "symbol=%FF", (-1100, "Illegal characters found in a parameter.")),
    ("depth", "symbol=BTCUSDT&limit=5001", (-1130, "Data sent for parameter 'limit' is not valid. It must be in "
                                                   "1..5000.")),
    ("depth", "symbol=BTCUSDT&limit=-1", (-1100, "Illegal characters found in parameter 'limit'; legal range is "
                                                 "'^[0-9]{1,20}$'.")),
    ("klines", "symbol=BTCUSDT&interval=1w", (-1120, "Invalid interval. zmx records 1m, 5m, 15m, 30m, 1h, 4h, 1d.")),
    ("klines", "symbol=BTCUSDT&interval=7m", (-1120, "Invalid interval.")),
    ("klines", "symbol=BTCUSDT&interval=1m&timeZone=8", (-1130, "Data sent for parameter 'timeZone' is not valid. "
                                                                "zmx serves UTC candles only.")),
    ("ticker/24hr", 'symbol=BTCUSDT&symbols=["BTCUSDT"]', (-1128, "Combination of optional parameters invalid. "
                                                                  "Send symbol or symbols, not both.")),
    ("ticker/price", "symbols=BTCUSDT", (-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                                '\'^\\[("[A-Z0-9]{1,24}"(,"[A-Z0-9]{1,24}"){0,}){0,1}\\]$\'.')),
    ("ticker/24hr", "type=HUGE", (-1139, "Invalid ticker type.")),
])
def test_parameter_errors_have_binance_codes_and_messages(gateway, market, path, query, expected) -> None:
    result = BinanceClient(gateway).public(path, query)

    assert error_of(result) == (400, *expected)


def test_weights_are_charged_to_the_native_budgets_and_reported(make_gateway) -> None:
    gateway = make_gateway(rate_limit_window_seconds=60, rate_limit_key_weight=6)
    gateway.create_market()
    trader = gateway.trader("alice")
    binance = BinanceClient(gateway, trader)

    assert binance.public("depth", "symbol=BTCUSDT").headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert binance.public("depth", "symbol=BTCUSDT&limit=500").headers["X-MBX-USED-WEIGHT-1M"] == "6"
    assert trader.get("/api/v1/account").status_code == 200  # weight 1 on the key's budget
    assert binance.signed("GET", "account").headers["X-MBX-USED-WEIGHT-1M"] == "3"  # weight 2, same budget
    assert binance.signed("GET", "openOrders").headers["X-MBX-USED-WEIGHT-1M"] == "6"

    limited = binance.signed("GET", "account")
    assert error_of(limited) == (429, -1003, "Too much request weight used; current limit is 6 request weight per "
                                             "1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                                             "polling the API.")
    assert limited.headers["X-MBX-USED-WEIGHT-1M"] == "8" and 0 < int(limited.headers["Retry-After"]) <= 60
    assert trader.get("/api/v1/account").status_code == 429  # one budget for both APIs
    info = binance.public("exchangeInfo").json
    assert info["rateLimits"] == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                   "limit": 24000}]


def test_a_ten_second_window_names_its_header_after_itself(make_gateway) -> None:
    gateway = make_gateway(rate_limit_window_seconds=10)
    gateway.create_market()
    binance = BinanceClient(gateway, gateway.trader("alice"))

    assert binance.signed("GET", "account").headers["X-MBX-USED-WEIGHT-10S"] == "2"


def test_every_error_under_api_v3_speaks_binance(make_gateway) -> None:
    gateway = make_gateway(max_body_bytes=256)
    gateway.create_market()
    binance = BinanceClient(gateway, gateway.trader("alice"))

    unknown = error_of(binance.public("aggTrades", "symbol=BTCUSDT"))
    assert unknown[:2] == (404, -1020) and "docs/binance-compat.md" in unknown[2]
    assert error_of(binance.raw("PUT", "order"))[:2] == (405, -1020)
    assert error_of(binance.raw("POST", "order", body="a=" + "1" * 300))[:2] == (413, -1101)
    gateway.engine.outage[0] = RejectCode.MATCHER_UNAVAILABLE
    assert error_of(binance.public("depth", "symbol=BTCUSDT")) == (
        503, -1001, "Internal error; unable to process your request. Please try again.")
    gateway.engine.outage[0] = RejectCode.MATCHER_TIMEOUT
    assert error_of(binance.public("depth", "symbol=BTCUSDT")) == (
        503, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.")
    gateway.engine.outage.clear()
    gateway.store.unavailable = True
    gateway.clock.advance(1)  # past the key cache
    assert error_of(binance.signed("GET", "account"))[:2] == (503, -1001)
    # /api/v1 keeps its envelope.
    native = gateway.client.simulate_get("/api/v1/nope")
    assert native.json["error"]["code"] == "NOT_FOUND"
