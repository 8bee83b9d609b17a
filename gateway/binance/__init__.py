"""The Binance-compatible spot REST subset at /api/v3 (SPEC section 7, docs/binance-compat.md).

Existing bots written against ccxt's `binance` or python-binance trade on zmx by changing
their base URL. The package is a dialect of the same gateway: it shares the native API's
matcher client, history store, API keys, rate limiter and order logic, and only translates.

- dialect.py: `@endpoint` declarations and the `Guard` middleware (parameters, signatures,
  weights, errors);
- params.py: Binance parameters and their checks; errors.py: Binance error codes;
- markets.py: `BTCUSDT` <-> `BTC-USDT`; shapes.py: zmx shapes in Binance's;
- market_data.py and trading.py: the endpoints.
"""

from __future__ import annotations

from gateway.binance import market_data, trading
from gateway.binance.dialect import PREFIX, Guard
from gateway.binance.markets import Markets
from gateway.services import Services


def mount(services: Services) -> None:
    """Serve /api/v3 from the gateway's app (outside the native OpenAPI document: docs/binance-compat.md)."""
    markets = Markets(services)
    routes = {
        "ping": market_data.Ping,
        "time": market_data.ServerTime,
        "exchangeInfo": market_data.ExchangeInfo,
        "depth": market_data.Depth,
        "trades": market_data.Trades,
        "klines": market_data.Klines,
        "ticker/24hr": market_data.Ticker24h,
        "ticker/price": market_data.TickerPrice,
        "ticker/bookTicker": market_data.BookTicker,
        "account": trading.Account,
        "order": trading.Order,
        "openOrders": trading.OpenOrders,
        "allOrders": trading.AllOrders,
        "myTrades": trading.MyTrades,
    }
    for path, resource in routes.items():
        services.app.add_route(f"{PREFIX}/{path}", resource(services, markets))
    services.app.add_middleware(Guard(services))
