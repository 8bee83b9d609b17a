"""/api/v3 order entry, lookups and market data over the real matcher core, and the same orders through /api/v1."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.gateway.binance_client import BinanceClient, error_of

ORDERS = "/api/v1/account/orders"


@pytest.fixture
def seller(gateway, alice) -> BinanceClient:
    return BinanceClient(gateway, alice)


@pytest.fixture
def buyer(gateway, bob) -> BinanceClient:
    return BinanceClient(gateway, bob)


def balances(trader) -> dict[str, tuple[str, str]]:
    items = trader.get("/api/v1/account/balances").json["data"]["items"]
    return {item["asset"]: (item["available"], item["locked"]) for item in items}


def test_new_order_answers_full_result_or_ack_and_market_orders_return_their_fills(seller, buyer) -> None:
    resting = seller.order(side="SELL", quantity="2", price="100", newClientOrderId="ask-1").json
    assert resting == {
        "symbol": "BTCUSDT", "orderId": resting["orderId"], "orderListId": -1, "clientOrderId": "ask-1",
        "transactTime": resting["transactTime"], "price": "100.00", "origQty": "2.000", "executedQty": "0.000",
        "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": "0.00000000", "status": "NEW",
        "timeInForce": "GTC", "type": "LIMIT", "side": "SELL", "workingTime": resting["transactTime"],
        "selfTradePreventionMode": "EXPIRE_MAKER", "fills": []}

    taken = buyer.order(type="MARKET", quantity="0.5", timeInForce=None, price=None).json
    assert (taken["status"], taken["type"], taken["executedQty"], taken["cummulativeQuoteQty"]) == (
        "FILLED", "MARKET", "0.500", "50.00000000")
    [fill] = taken["fills"]
    assert (fill["price"], fill["qty"], fill["commission"], fill["commissionAsset"]) == (
        "100.00", "0.500", "0.00050000", "BTC")  # the 10 bps taker fee, in the asset received
    assert len(taken["clientOrderId"]) == 22  # generated, as Binance does

    by_quote = buyer.order(type="MARKET", quoteOrderQty="25", quantity=None, timeInForce=None, price=None,
                           newOrderRespType="RESULT").json
    assert (by_quote["status"], by_quote["executedQty"], by_quote["cummulativeQuoteQty"],
            by_quote["origQuoteOrderQty"]) == ("FILLED", "0.250", "25.00000000", "25.00000000")
    assert "fills" not in by_quote
    ack = buyer.order(price="90", newOrderRespType="ACK").json
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    maker = buyer.order(type="LIMIT_MAKER", price="91", timeInForce=None).json
    assert set(maker) == set(ack)  # LIMIT_MAKER answers ACK unless asked otherwise
    assert buyer.signed("GET", "order", {"symbol": "BTCUSDT", "orderId": maker["orderId"]}).json["type"] == \
        "LIMIT_MAKER"


@pytest.mark.parametrize("changes, expected", [
    ({"timeInForce": None}, (-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")),
    ({"price": None}, (-1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")),
    ({"type": "MARKET", "timeInForce": None}, (-1106, "Parameter 'price' sent when not required.")),
    ({"type": "MARKET", "timeInForce": None, "price": None, "quantity": None},
     (-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")),
    ({"type": "MARKET", "side": "SELL", "timeInForce": None, "price": None, "quantity": None, "quoteOrderQty": "10"},
     (-1106, "Parameter 'quoteOrderQty' sent when not required. zmx takes quoteOrderQty on MARKET BUY orders only.")),
    ({"type": "LIMIT_MAKER"}, (-1106, "Parameter 'timeInForce' sent when not required.")),
    ({"type": "STOP_LOSS_LIMIT", "stopPrice": "90"},
     (-1116, "Invalid orderType. zmx serves LIMIT, LIMIT_MAKER and MARKET orders.")),
    ({"type": "OCO"}, (-1116, "Invalid orderType.")),
    ({"icebergQty": "0.1"}, (-1106, "Parameter 'icebergQty' sent when not required. zmx has no stop, iceberg, "
                                    "trailing or strategy orders.")),
    ({"timeInForce": "GTD"}, (-1115, "Invalid timeInForce.")),
    ({"side": "HOLD"}, (-1117, "Invalid side.")),
    ({"price": "1e2"}, (-1100, "Illegal characters found in parameter 'price'; legal range is "
                               "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")),
    ({"price": "100.005"}, (-1013, "Filter failure: PRICE_FILTER")),
    ({"price": "0"}, (-1013, "Filter failure: PRICE_FILTER")),
    ({"quantity": "0.0001"}, (-1013, "Filter failure: LOT_SIZE")),
    ({"type": "MARKET", "timeInForce": None, "price": None, "quantity": "0.0001"},
     (-1013, "Filter failure: MARKET_LOT_SIZE")),
    ({"newClientOrderId": "a.b"}, (-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                          "'^[a-zA-Z0-9-_]{1,36}$'.")),
    ({"newClientOrderId": ""}, (-1118, "New client order ID was empty.")),
    ({"selfTradePreventionMode": "CANCEL_BOTH"}, (-1100, "Illegal characters found in parameter "
                                                         "'selfTradePreventionMode'; legal range is 'EXPIRE_TAKER, "
                                                         "EXPIRE_MAKER, EXPIRE_BOTH, DECREMENT, NONE'.")),
    ({"quantity": "100000"}, (-2010, "Account has insufficient balance for requested action.")),
])
def test_refused_orders_get_binance_errors_and_change_nothing(alice, seller, changes, expected) -> None:
    before = balances(alice)

    result = seller.order(**changes)

    assert error_of(result) == (400, *expected)
    assert balances(alice) == before
    assert alice.get(ORDERS).json["data"]["items"] == []


def test_business_rejects_use_binance_order_messages(gateway, seller, buyer) -> None:
    assert seller.order(side="SELL", price="100", newClientOrderId="mine").status_code == 200
    assert error_of(seller.order(side="SELL", price="101", newClientOrderId="mine")) == (
        400, -2010, "Duplicate order sent.")
    assert error_of(buyer.order(type="LIMIT_MAKER", price="100", timeInForce=None)) == (
        400, -2010, "Order would immediately match and take.")
    gateway.admin("POST", "/api/v1/admin/markets/BTC-USDT/halt")
    assert error_of(buyer.order(price="99")) == (400, -2010, "Market is closed.")


def test_an_order_placed_through_one_api_is_seen_and_canceled_through_the_other(alice, seller) -> None:
    native = alice.place(side="sell", price="105.00", client_order_id="native-1").json["data"]
    found = seller.signed("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "native-1"}).json
    assert (found["orderId"], found["status"], found["price"], found["side"]) == (
        native["order_id"], "NEW", "105.00", "SELL")
    assert [order["orderId"] for order in seller.signed("GET", "openOrders", {"symbol": "BTCUSDT"}).json] == [
        native["order_id"]]

    canceled = seller.signed("DELETE", "order", {"symbol": "BTCUSDT", "orderId": native["order_id"],
                                                 "newClientOrderId": "cancel-1"}).json
    assert (canceled["status"], canceled["origClientOrderId"], canceled["clientOrderId"]) == (
        "CANCELED", "native-1", "cancel-1")
    assert alice.get(f"{ORDERS}/{native['order_id']}").json["data"]["status"] == "CANCELED"

    placed = seller.order(side="SELL", price="106", newClientOrderId="binance-1").json
    by_client_id = alice.get(f"{ORDERS}/by-client-id/binance-1").json["data"]
    assert (by_client_id["order_id"], by_client_id["price"]) == (placed["orderId"], "106.00")
    assert alice.request("DELETE", f"{ORDERS}/{placed['orderId']}").json["data"]["status"] == "CANCELED"
    assert seller.signed("GET", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}).json["status"] == \
        "CANCELED"
    assert error_of(seller.signed("DELETE", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]})) == (
        400, -2011, "Unknown order sent.")
    assert balances(alice)["BTC"] == ("100.00000000", "0.00000000")


def test_lookups_and_cancels_are_scoped_to_the_symbol_and_the_caller(gateway, seller, buyer) -> None:
    gateway.create_market("ETH-USDT")
    order_id = seller.order(side="SELL", price="100").json["orderId"]

    def lookup(client: BinanceClient, method: str, **params) -> tuple[int, int, str]:
        return error_of(client.signed(method, "order", {"symbol": "BTCUSDT", "orderId": order_id, **params}))

    assert lookup(seller, "GET", symbol="ETHUSDT") == (400, -2013, "Order does not exist.")
    assert lookup(buyer, "GET") == (400, -2013, "Order does not exist.")
    assert lookup(seller, "GET", origClientOrderId="someone-else") == (400, -2013, "Order does not exist.")
    assert lookup(seller, "GET", orderId=None) == (
        400, -1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!")
    assert lookup(seller, "DELETE", symbol="ETHUSDT") == (400, -2011, "Unknown order sent.")
    assert lookup(buyer, "DELETE") == (400, -2011, "Unknown order sent.")
    assert lookup(seller, "DELETE", cancelRestrictions="ONLY_PARTIALLY_FILLED") == (
        400, -2011, "Order was not canceled due to cancel restrictions.")
    assert seller.signed("GET", "order", {"symbol": "BTCUSDT", "orderId": order_id}).json["status"] == "NEW"


def test_open_orders_are_listed_oldest_first_and_canceled_per_symbol(gateway, seller) -> None:
    gateway.create_market("ETH-USDT")
    gateway.admin("POST", "/api/v1/admin/deposits", {"trader_id": seller.trader.trader_id, "asset": "ETH",
                                                     "amount": "10"})
    first = seller.order(side="SELL", price="101").json["orderId"]
    second = seller.order(side="SELL", price="102").json["orderId"]
    other = seller.order(symbol="ETHUSDT", side="SELL", price="5").json["orderId"]

    assert [order["orderId"] for order in seller.signed("GET", "openOrders").json] == [first, second, other]
    canceled = seller.signed("DELETE", "openOrders", {"symbol": "BTCUSDT"}).json
    assert sorted((order["orderId"], order["status"]) for order in canceled) == [
        (first, "CANCELED"), (second, "CANCELED")]
    assert error_of(seller.signed("DELETE", "openOrders", {"symbol": "BTCUSDT"})) == (
        400, -2011, "Unknown order sent.")
    assert [order["symbol"] for order in seller.signed("GET", "openOrders").json] == ["ETHUSDT"]


def test_account_balances_and_commission(seller) -> None:
    seller.order(side="SELL", quantity="1.5", price="100")

    account = seller.signed("GET", "account", {"omitZeroBalances": "true"}).json

    assert account["balances"] == [{"asset": "BTC", "free": "98.50000000", "locked": "1.50000000"},
                                   {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"}]
    assert (account["makerCommission"], account["takerCommission"], account["commissionRates"]["taker"]) == (
        0, 10, "0.00100000")
    assert (account["uid"], account["accountType"], account["permissions"]) == (
        seller.trader.trader_id, "SPOT", ["SPOT"])


def test_exchange_info_lists_filters_and_leaves_out_ambiguous_symbols(gateway, market) -> None:
    gateway.create_market("BTCU-SDT")  # also BTCUSDT without its dash
    gateway.create_market("ETH-USDT", tick_size="0.05", lot_size="0.01", min_quantity="0.1", min_notional="5")
    gateway.admin("POST", "/api/v1/admin/markets/ETH-USDT/halt")
    public = BinanceClient(gateway)

    info = public.public("exchangeInfo").json
    [eth] = info["symbols"]
    assert (eth["symbol"], eth["status"], eth["baseAsset"], eth["quoteAsset"], eth["orderTypes"]) == (
        "ETHUSDT", "HALT", "ETH", "USDT", ["LIMIT", "LIMIT_MAKER", "MARKET"])
    filters = {item["filterType"]: item for item in eth["filters"]}
    assert filters["PRICE_FILTER"] == {"filterType": "PRICE_FILTER", "minPrice": "0.05",
                                       "maxPrice": "999999999999999999999999.95", "tickSize": "0.05"}
    assert (filters["LOT_SIZE"]["minQty"], filters["LOT_SIZE"]["stepSize"]) == ("0.10", "0.01")
    assert filters["MARKET_LOT_SIZE"] == {**filters["LOT_SIZE"], "filterType": "MARKET_LOT_SIZE"}
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
    assert (eth["permissions"], eth["permissionSets"]) == (["SPOT"], [["SPOT"]])
    assert info["exchangeFilters"] == [{"filterType": "EXCHANGE_MAX_NUM_ORDERS", "maxNumOrders": 1000}]

    ambiguous = error_of(public.public("depth", "symbol=BTCUSDT"))
    assert ambiguous[:2] == (400, -1121) and "BTC-USDT, BTCU-SDT" in ambiguous[2]
    assert public.public("exchangeInfo", "symbolStatus=TRADING").json["symbols"] == []
    assert public.public("exchangeInfo", "permissions=MARGIN").json["symbols"] == []
    assert [item["symbol"] for item in public.public("exchangeInfo", 'symbols=["ETHUSDT"]').json["symbols"]] == [
        "ETHUSDT"]


def test_book_tickers_and_depth_come_from_the_matcher(seller, buyer) -> None:
    seller.order(side="SELL", quantity="2", price="101")
    buyer.order(side="BUY", quantity="1", price="99")
    public = BinanceClient(seller.gateway)

    depth = public.public("depth", "symbol=BTCUSDT&limit=5").json
    assert (depth["bids"], depth["asks"]) == ([["99.00", "1.000"]], [["101.00", "2.000"]])
    assert depth["lastUpdateId"] > 0
    assert public.public("ticker/bookTicker", "symbol=BTCUSDT").json == {
        "symbol": "BTCUSDT", "bidPrice": "99.00", "bidQty": "1.000", "askPrice": "101.00", "askQty": "2.000"}
    ticker = public.public("ticker/24hr", 'symbols=["BTCUSDT"]').json
    assert [(item["bidPrice"], item["askPrice"], item["count"], item["firstId"]) for item in ticker] == [
        ("99.00", "101.00", 0, -1)]
    assert public.public("ticker/price", "symbol=BTCUSDT").json == {"symbol": "BTCUSDT", "price": "0.00"}


_PARAMETER = st.sampled_from(["symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price",
                              "newClientOrderId", "orderId", "origClientOrderId", "limit", "interval", "startTime",
                              "endTime", "fromId", "symbols", "type", "newOrderRespType", "recvWindow"])
_VALUE = st.one_of(st.sampled_from(["BTCUSDT", "BUY", "SELL", "LIMIT", "MARKET", "GTC", "1", "0", "-1", "100",
                                    "1e3", "", "[]", '["BTCUSDT"]', "1m", "ACK", "99999999999999999999999"]),
                   st.text(max_size=8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method_path=st.sampled_from([("GET", "depth"), ("GET", "klines"), ("GET", "ticker/24hr"), ("GET", "order"),
                                    ("POST", "order"), ("DELETE", "order"), ("GET", "allOrders"),
                                    ("GET", "myTrades"), ("DELETE", "openOrders"), ("GET", "exchangeInfo")]),
       params=st.dictionaries(_PARAMETER, _VALUE, max_size=6))
def test_no_parameters_make_a_server_error(seller, method_path, params) -> None:
    method, path = method_path
    params.pop("timestamp", None)

    result = seller.signed(method, path, params)

    assert result.status_code in (200, 400), result.text
    assert result.status_code == 200 or set(result.json) == {"code", "msg"}
