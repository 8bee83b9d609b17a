"""Binance's public endpoints: ping, time, exchangeInfo, depth, trades, klines and the tickers.

Order books and best prices come from the matcher; trades, klines and 24-hour statistics
from the history store the recorder fills (milliseconds behind the matcher while it keeps
up), as for /api/v1.
"""

from __future__ import annotations

import re
from typing import Any

import falcon
import orjson

from gateway.binance import shapes
from gateway.binance.dialect import Resource, answer, endpoint, rate_limit_interval
from gateway.binance.errors import BinanceError, bad_combination, invalid_value
from gateway.binance.markets import Market, Markets, ceiling
from gateway.binance.params import Params, boolean, choice, integer, symbol_list, symbol_text
from gateway.envelope import ApiError, now_ms
from gateway.history import ticker_stats
from gateway.schemas import CANDLE_INTERVALS, depth_weight
from gateway.services import Services

ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET"]
# Binance's other kline intervals: valid there, not recorded by zmx.
UNSERVED_INTERVALS = ("1s", "3m", "2h", "6h", "8h", "12h", "3d", "1w", "1M")
MAX_TIME = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_UTC = re.compile(r"[+-]?0{1,2}(:00)?")
_PERMISSION = re.compile(r"[A-Z0-9_]{1,32}")
_ALL_SYMBOLS_WEIGHT = 5


def _limit_weight(params: Params) -> int:
    text = params.values.get("limit", "")
    depth = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None
    return depth_weight({"depth": depth})


def _symbols_weight(params: Params) -> int:
    if "symbol" in params:
        return 1
    return _ALL_SYMBOLS_WEIGHT


def selected_markets(markets: Markets, params: Params, fresh: bool = False) -> tuple[list[Market], bool]:
    """Return the markets `symbol` or `symbols` name (-1121 for any unknown), or all; and whether one was named.

    All markets are always asked for afresh; named ones only with `fresh`.
    """
    symbol = symbol_text(params, required=False)
    symbols = symbol_list(params)
    if symbol is not None and symbols is not None:
        raise bad_combination("Send symbol or symbols, not both.")
    if fresh and (symbol is not None or symbols is not None):
        markets.refresh()
    if symbol is not None:
        return [markets.get(symbol)], True
    if symbols is not None:
        return [markets.get(name) for name in symbols], False
    return markets.refresh(), False


class Ping(Resource):
    @endpoint()
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answer(resp, {})


class ServerTime(Resource):
    @endpoint()
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answer(resp, {"serverTime": now_ms()})


class ExchangeInfo(Resource):
    @endpoint("symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus", weight=5)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        # Always the matchers' current markets and statuses.
        selected, _ = selected_markets(self.markets, params, fresh=True)
        if "SPOT" not in self._permissions(params):
            selected = []
        status = choice(params, "symbolStatus", ("TRADING", "HALT", "BREAK"),
                        BinanceError(-1122, "Invalid symbolStatus."))
        if status is not None:
            selected = [market for market in selected if _status(market) == status]
        show_sets = boolean(params, "showPermissionSets", default=True)
        settings = self.services.config
        interval, count, _ = rate_limit_interval(settings.gateway.rate_limit_window_seconds)
        answer(resp, {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": count,
                            "limit": settings.gateway.rate_limit_ip_weight}],
            "exchangeFilters": [{"filterType": "EXCHANGE_MAX_NUM_ORDERS",
                                 "maxNumOrders": settings.matcher.max_open_orders_per_account}],
            "symbols": [_symbol_info(market, show_sets) for market in selected],
        })

    @staticmethod
    def _permissions(params: Params) -> list[str]:
        text = params.get("permissions")
        if text is None:
            return ["SPOT"]
        if _PERMISSION.fullmatch(text):
            return [text]
        try:
            permissions = orjson.loads(text)
        except orjson.JSONDecodeError:
            permissions = None
        if not isinstance(permissions, list) or not all(
                isinstance(permission, str) and _PERMISSION.fullmatch(permission) for permission in permissions):
            raise invalid_value("permissions", 'Send one permission (SPOT) or a JSON array (["SPOT","MARGIN"]).')
        return permissions


def _status(market: Market) -> str:
    return "TRADING" if market.trading else "HALT"


def _symbol_info(market: Market, show_sets: bool) -> dict[str, Any]:
    tick, lot, quote_step = market.tick, market.lot, market.quote_step
    lot_filter = {"minQty": market.min_quantity, "maxQty": ceiling(lot), "stepSize": lot.text}
    info = {
        "symbol": market.symbol,
        "status": _status(market),
        "baseAsset": market.base,
        "baseAssetPrecision": market.base_step.decimals,
        "quoteAsset": market.quote,
        "quotePrecision": quote_step.decimals,
        "quoteAssetPrecision": quote_step.decimals,
        "baseCommissionPrecision": market.base_step.decimals,
        "quoteCommissionPrecision": quote_step.decimals,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick.text, "maxPrice": ceiling(tick), "tickSize": tick.text},
            {"filterType": "LOT_SIZE", **lot_filter},
            {"filterType": "MARKET_LOT_SIZE", **lot_filter},
            {"filterType": "NOTIONAL", "minNotional": market.min_notional, "applyMinToMarket": False,
             "maxNotional": ceiling(quote_step), "applyMaxToMarket": False, "avgPriceMins": 0},
        ],
        "permissions": ["SPOT"],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": list(shapes.STP_MODES),
    }
    if show_sets:
        info["permissionSets"] = [["SPOT"]]
    return info


class Depth(Resource):
    @endpoint("symbol", "limit", weight=_limit_weight)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        limit = integer(params, "limit", 1, 5000, 100)
        book = self.services.call(market.shard_id, "snapshot", {"pair": market.pair, "depth": limit})
        answer(resp, {"lastUpdateId": book["seq"], "bids": book["bids"], "asks": book["asks"]})


class Trades(Resource):
    @endpoint("symbol", "limit")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        limit = integer(params, "limit", 1, 1000, 500)
        newest_first = self.services.store.trades(market.pair, limit).items
        answer(resp, [shapes.trade(trade, market) for trade in reversed(newest_first)])


class Klines(Resource):
    @endpoint("symbol", "interval", "startTime", "endTime", "timeZone", "limit")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        market = self.markets.get(symbol_text(params))
        interval = params.require("interval")
        if interval not in CANDLE_INTERVALS:
            served = f" zmx records {', '.join(CANDLE_INTERVALS)}." if interval in UNSERVED_INTERVALS else ""
            raise BinanceError(-1120, "Invalid interval." + served)
        start = integer(params, "startTime", 0, MAX_TIME)
        end = integer(params, "endTime", 0, MAX_TIME)
        if start is not None and end is not None and start > end:
            raise invalid_value("startTime", "It must not be after endTime.")
        time_zone = params.get("timeZone")
        if time_zone is not None and not _UTC.fullmatch(time_zone):
            raise invalid_value("timeZone", "zmx serves UTC candles only.")
        limit = integer(params, "limit", 1, 1000, 500)
        candles = self.services.store.candles(market.pair, interval, start, end, limit)
        answer(resp, [shapes.kline(candle) for candle in candles])


class Ticker24h(Resource):
    @endpoint("symbol", "symbols", "type", weight=_symbols_weight)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = req.context.params
        selected, single = selected_markets(self.markets, params)
        full = choice(params, "type", ("FULL", "MINI"), BinanceError(-1139, "Invalid ticker type.")) != "MINI"
        books = _books(self.services, selected) if full else [None] * len(selected)
        store, now = self.services.store, now_ms()
        tickers = [shapes.ticker(market, ticker_stats(store, market.pair, now), book)
                   for market, book in zip(selected, books)]
        answer(resp, tickers[0] if single else tickers)


class TickerPrice(Resource):
    @endpoint("symbol", "symbols", weight=_symbols_weight)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        selected, single = selected_markets(self.markets, req.context.params)
        prices = []
        for market in selected:
            newest = self.services.store.trades(market.pair, 1).items
            prices.append({"symbol": market.symbol,
                           "price": newest[0]["price"] if newest else market.tick.format(0)})
        answer(resp, prices[0] if single else prices)


class BookTicker(Resource):
    @endpoint("symbol", "symbols", weight=_symbols_weight)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        selected, single = selected_markets(self.markets, req.context.params)
        tickers = [shapes.book_ticker(market, book) for market, book in zip(selected, _books(self.services, selected))]
        answer(resp, tickers[0] if single else tickers)


def _books(services: Services, markets: list[Market]) -> list[dict[str, Any]]:
    """Return each market's best level on both sides, asking every shard at once."""
    results = services.engine.call_many([(market.shard_id, "snapshot", {"pair": market.pair, "depth": 1})
                                         for market in markets])
    for result in results:
        if isinstance(result, ApiError):
            raise result
    return results
