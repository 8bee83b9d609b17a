"""ccxt's `binance` and python-binance, unmodified, against matcher + gateway + recorder (docs/binance-compat.md).

Each client only gets the test server's base URL (and, for ccxt, options keeping it to
spot). A second trader makes the market through /api/v1; klines, trades and fills come
from the history store, so the recorder runs and the tests poll until it has caught up.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.integration.test_gateway import ORDERS, make_gateway, market, trader_client  # noqa: F401 (fixture)
from tests.integration.test_recorder import RecorderProcess, recorders  # noqa: F401 (fixture)
from tests.polling import poll_until

pytestmark = pytest.mark.integration

RECORDED_WITHIN = 20.0


@pytest.fixture
def stack(make_gateway, recorders):
    """A matcher, a gateway with a one-minute rate-limit window (as Binance's), a recorder and a BTC-USDT book."""
    cluster, gateway = make_gateway(rate_limit_window_seconds=60)
    recorder = RecorderProcess(cluster, f"sqlite:///{cluster.data_dir.resolve() / 'store.sqlite3'}")
    recorders.append(recorder)
    recorder.start()
    market(gateway)
    maker = trader_client(gateway, "maker", USDT="100000", BTC="100")
    for side, price, quantity in (("sell", "100.00", "1.000"), ("sell", "101.00", "2.000"), ("buy", "98.00", "3.000")):
        placed = maker.request("POST", ORDERS, {"pair": "BTC-USDT", "side": side, "type": "limit", "price": price,
                                                "quantity": quantity})
        assert placed.status == 201, placed
    trader = gateway.create_trader("bot", {"USDT": "10000"})
    return gateway, maker, trader


def test_ccxt_binance_trades_on_zmx_with_only_its_urls_changed(stack) -> None:
    gateway, maker, trader = stack
    base = f"http://127.0.0.1:{gateway.port}/api/v3"
    exchange = ccxt.binance({
        "apiKey": trader["api_key"], "secret": trader["api_secret"], "enableRateLimit": False,
        "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                    "fetchMargins": False, "fetchTradesMethod": "publicGetTrades"},
    })
    exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = base

    markets = exchange.load_markets()
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["spot"], btc["active"]) == ("BTCUSDT", True, True)
    assert (btc["precision"]["price"], btc["precision"]["amount"], btc["limits"]["amount"]["min"]) == (
        0.01, 0.001, 0.001)
    book = exchange.fetch_order_book("BTC/USDT", 5)
    assert (book["bids"], book["asks"]) == ([[98.0, 3.0]], [[100.0, 1.0], [101.0, 2.0]])

    resting = exchange.create_limit_buy_order("BTC/USDT", 1, 90)
    assert (resting["status"], resting["price"], resting["amount"], resting["filled"]) == ("open", 90.0, 1.0, 0.0)
    assert [order["id"] for order in exchange.fetch_open_orders("BTC/USDT")] == [resting["id"]]
    # The same order through the native API.
    native = gateway.client(trader["api_key"], trader["api_secret"]).request("GET", f"{ORDERS}/{resting['id']}")
    assert native.json["data"]["status"] == "NEW"
    assert exchange.cancel_order(resting["id"], "BTC/USDT")["status"] == "canceled"
    assert exchange.fetch_open_orders("BTC/USDT") == []

    bought = exchange.create_market_buy_order("BTC/USDT", 1.5)
    assert (bought["status"], bought["filled"], bought["cost"]) == ("closed", 1.5, 150.5)
    assert sorted((trade["price"], trade["amount"]) for trade in bought["trades"]) == [(100.0, 1.0), (101.0, 0.5)]
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_limit_buy_order("BTC/USDT", 1000, 100)

    fills = poll_until(lambda: (lambda found: found if len(found) == 2 else None)(
        exchange.fetch_my_trades("BTC/USDT")), RECORDED_WITHIN, "the fills in the history store")
    assert [(fill["side"], fill["price"], fill["amount"], fill["takerOrMaker"], fill["order"]) for fill in fills] == [
        ("buy", 100.0, 1.0, "taker", bought["id"]), ("buy", 101.0, 0.5, "taker", bought["id"])]
    assert [fill["fee"]["currency"] for fill in fills] == ["BTC", "BTC"]
    trades = exchange.fetch_trades("BTC/USDT")
    assert [(trade["price"], trade["amount"], trade["side"]) for trade in trades] == [
        (100.0, 1.0, "buy"), (101.0, 0.5, "buy")]
    [candle] = exchange.fetch_ohlcv("BTC/USDT", "1m")
    assert candle[1:] == [100.0, 101.0, 100.0, 101.0, 1.5]

    balance = exchange.fetch_balance()
    assert balance["USDT"]["free"] == 10000 - 150.5 and balance["USDT"]["used"] == 0
    assert Decimal(str(balance["BTC"]["total"])) == Decimal("1.5") - Decimal("0.00075")  # the 5 bps taker fee


def test_python_binance_trades_on_zmx_with_only_its_api_url_changed(stack) -> None:
    gateway, maker, trader = stack
    client = Client(trader["api_key"], trader["api_secret"], ping=False)
    client.API_URL = f"http://127.0.0.1:{gateway.port}/api"

    client.ping()
    assert abs(client.get_server_time()["serverTime"] - gateway.client().raw("GET", "/api/v1/time").json["data"][
        "server_time"]) < 5000
    info = client.get_symbol_info("BTCUSDT")
    assert (info["baseAsset"], info["quoteAsset"], info["status"]) == ("BTC", "USDT", "TRADING")
    book = client.get_order_book(symbol="BTCUSDT", limit=5)
    assert (book["bids"], book["asks"]) == ([["98.00", "3.000"]], [["100.00", "1.000"], ["101.00", "2.000"]])
    assert client.get_orderbook_ticker(symbol="BTCUSDT")["askPrice"] == "100.00"

    resting = client.order_limit_buy(symbol="BTCUSDT", quantity="1", price="90")
    assert (resting["status"], resting["clientOrderId"][:10]) == ("NEW", "x-HNA2TXFJ")  # python-binance's own id
    assert [order["orderId"] for order in client.get_open_orders(symbol="BTCUSDT")] == [resting["orderId"]]
    canceled = client.cancel_order(symbol="BTCUSDT", orderId=resting["orderId"])  # DELETE with a form body
    assert (canceled["status"], canceled["origClientOrderId"]) == ("CANCELED", resting["clientOrderId"])
    assert client.get_order(symbol="BTCUSDT", origClientOrderId=resting["clientOrderId"])["status"] == "CANCELED"

    bought = client.order_market_buy(symbol="BTCUSDT", quantity="1.5")
    assert (bought["status"], bought["executedQty"], bought["cummulativeQuoteQty"]) == (
        "FILLED", "1.500", "150.50000000")
    assert [(fill["price"], fill["qty"], fill["commissionAsset"]) for fill in bought["fills"]] == [
        ("100.00", "1.000", "BTC"), ("101.00", "0.500", "BTC")]
    with pytest.raises(BinanceAPIException) as refused:
        client.order_limit_buy(symbol="BTCUSDT", quantity="1000", price="100")
    assert (refused.value.status_code, refused.value.code, refused.value.message) == (
        400, -2010, "Account has insufficient balance for requested action.")
    assert "x-mbx-used-weight-1m" in {name.lower() for name in client.response.headers}

    my_trades = poll_until(lambda: (lambda found: found if len(found) == 2 else None)(
        client.get_my_trades(symbol="BTCUSDT")), RECORDED_WITHIN, "the fills in the history store")
    assert [(trade["price"], trade["qty"], trade["quoteQty"], trade["isBuyer"], trade["isMaker"])
            for trade in my_trades] == [("100.00", "1.000", "100.00000", True, False),
                                        ("101.00", "0.500", "50.50000", True, False)]
    assert [trade["id"] for trade in client.get_recent_trades(symbol="BTCUSDT")] == [
        trade["id"] for trade in my_trades]
    [kline] = client.get_klines(symbol="BTCUSDT", interval=Client.KLINE_INTERVAL_1MINUTE)
    assert kline[1:6] + kline[7:11] == ["100.00", "101.00", "100.00", "101.00", "1.500", "150.50000000", 2,
                                        "1.500", "150.50000000"]
    assert [order["status"] for order in client.get_all_orders(symbol="BTCUSDT")] == ["CANCELED", "FILLED"]
    assert client.get_asset_balance(asset="USDT") == {"asset": "USDT", "free": "9849.50000000",
                                                      "locked": "0.00000000"}
    ticker = client.get_ticker(symbol="BTCUSDT")
    assert (ticker["lastPrice"], ticker["volume"], ticker["count"], ticker["bidPrice"]) == (
        "101.00", "1.500", 2, "98.00")
