"""The history routes of the REST API: read from the history store the recorder fills.

Market history (ticker, trades, candles) is public; account history (closed orders,
fills, positions, portfolio, deposits, withdrawals) and the leaderboard need an API key.
Every list is keyset-paginated by the store, so rows the recorder adds between two pages
neither repeat nor shift what a client sees. The store lags the matcher by the recorder's
batch (milliseconds while it keeps up); docs/rest-api.md says which routes read what.
"""

from __future__ import annotations

import re
from typing import Any

import falcon

from common.types import ASSET_SYMBOL, RejectCode
from gateway.envelope import invalid_field, now_ms, ok, page
from gateway.operations import TRADER, choice_param, integer_param, operation, pattern_param
from gateway.schemas import _INTEGER, _MS, _NULLABLE_STRING as _NULLABLE, _STRING, CANDLE_INTERVALS, COMPONENTS, \
    CURSOR_PARAM, LIMIT, PAIR_PARAM, _object, list_of, page_of, pair_from_path, ref
from gateway.services import Services

API = "/api/v1"
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_CURSOR_ERROR = "cursor must be a next_cursor returned by this endpoint"

INTERVAL = choice_param("interval", CANDLE_INTERVALS, "1m", "candle length")
START = integer_param("start", 0, MAX_MS, None, "first candle opening at or after this time (ms); without it, "
                                                "the newest candles up to `end`")
END = integer_param("end", 0, MAX_MS, None, "last candle opening at or before this time (ms)")
CANDLE_LIMIT = integer_param("limit", 1, 1000, 500, "candles to return")
LEADERBOARD_LIMIT = integer_param("limit", 1, 1000, 100, "traders to return")
VALUATION = pattern_param("asset", re.compile(ASSET_SYMBOL.pattern), 12,
                          "value holdings in this asset (default: the most common quote asset)", "USDT",
                          "must be an asset symbol")

_NULLABLE_MS = {"type": "integer", "nullable": True}
_NULLABLE_INTEGER = {"type": "integer", "nullable": True}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Trade": _object({"trade_id": _INTEGER, "pair": _STRING, "price": _STRING, "quantity": _STRING,
                      "taker_side": {"type": "string", "enum": ["buy", "sell"]}, "ts": _MS}),
    "Candle": _object({"open_time": _MS, "close_time": _MS, "open": _STRING, "high": _STRING, "low": _STRING,
                       "close": _STRING, "volume": _STRING, "quote_volume": _STRING, "trades": _INTEGER,
                       "taker_buy_volume": _NULLABLE, "taker_buy_quote_volume": _NULLABLE},
                      "one candle; intervals without trades are absent; the taker-buy volumes are null in candles "
                      "recorded before the store kept them"),
    "Ticker": _object({
        "pair": _STRING, "open_time": _MS, "close_time": _MS, "last": _NULLABLE, "open": _NULLABLE,
        "high": _NULLABLE, "low": _NULLABLE, "volume": _STRING, "quote_volume": _STRING, "change": _NULLABLE,
        "change_percent": _NULLABLE, "trades": _INTEGER, "first_trade_ts": _NULLABLE_MS,
        "last_trade_ts": _NULLABLE_MS, "first_trade_id": _NULLABLE_INTEGER, "last_trade_id": _NULLABLE_INTEGER,
        "last_quantity": _NULLABLE, "prev_close": _NULLABLE, "best_bid": _NULLABLE, "best_ask": _NULLABLE,
        "seq": _INTEGER,
    }, "24-hour statistics (from recorded trades) and the best prices now (from the matcher)"),
    "AccountFill": _object({"trade_id": _INTEGER, "order_id": _INTEGER, "pair": _STRING,
                            "side": {"type": "string", "enum": ["buy", "sell"]}, "price": _STRING,
                            "quantity": _STRING, "fee": _STRING, "fee_asset": _STRING,
                            "liquidity": {"type": "string", "enum": ["maker", "taker"]}, "ts": _MS}),
    "Deposit": _object({"deposit_id": _INTEGER, "asset": _STRING, "amount": _STRING, "ts": _MS}),
    "Withdrawal": _object({"withdrawal_id": _INTEGER, "asset": _STRING, "amount": _STRING, "ts": _MS}),
    "Position": {"type": "object", "description": "average-cost position in one market (docs/store.md)",
                 "additionalProperties": True},
    "Portfolio": {"type": "object", "description": "balances valued at last prices, net deposits and PnL "
                                                   "(docs/store.md)", "additionalProperties": True},
    "LeaderboardEntry": {"type": "object", "description": "one trader's rank, value and PnL",
                         "additionalProperties": True},
}
for _name in ("Trade", "AccountFill", "Deposit", "Withdrawal", "Position", "LeaderboardEntry"):
    SCHEMAS[f"{_name}Page"] = page_of(_name)


class _Markets:
    """Which pairs exist: the store's recorded markets, else the matcher, which owns them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.known: set[str] = set()

    def check(self, pair: str) -> None:
        """Return if `pair` is a market; raise UNKNOWN_MARKET (or the matcher's 503/504) otherwise."""
        pair = pair_from_path(pair)
        if pair in self.known:
            return
        self.known.update(market["pair"] for market in self.services.store.markets())
        if pair not in self.known:
            services = self.services
            # Not recorded yet (or no recorder running): the matcher knows; this raises if it does not.
            services.call(services.shards.for_pair(pair), "snapshot", {"pair": pair, "depth": 1})


def _paged(read, *arguments) -> dict[str, Any]:
    try:
        return read(*arguments).as_dict()
    except ValueError:
        raise invalid_field("cursor", _CURSOR_ERROR) from None


class Ticker:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="24-hour statistics and best prices", matcher=True, response=ref("Ticker"),
               errors=(RejectCode.UNKNOWN_MARKET,), tags=("market history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        pair = pair_from_path(pair)
        services = self.services
        book = services.call(services.shards.for_pair(pair), "snapshot", {"pair": pair, "depth": 1})
        stats = ticker_stats(services.store, pair, now_ms())
        stats["best_bid"] = book["bids"][0][0] if book["bids"] else None
        stats["best_ask"] = book["asks"][0][0] if book["asks"] else None
        stats["seq"] = book["seq"]
        ok(resp, stats)


def ticker_stats(store, pair: str, now: int) -> dict[str, Any]:
    """Return the store's 24-hour statistics of a market, or those of no trade for one not recorded yet."""
    stats = store.ticker(pair, now)
    if stats is None:
        stats = {"pair": pair, "open_time": now - 86_400_000, "close_time": now, "last": None, "open": None,
                 "high": None, "low": None, "volume": "0", "quote_volume": "0", "change": None, "change_percent": None,
                 "trades": 0, "first_trade_ts": None, "last_trade_ts": None, "first_trade_id": None,
                 "last_trade_id": None, "last_quantity": None, "prev_close": None}
    return stats


class Trades:
    def __init__(self, services: Services, markets: _Markets) -> None:
        self.services = services
        self.markets = markets

    @operation(summary="The market's trades, newest first", query=(LIMIT, CURSOR_PARAM), response=ref("TradePage"),
               errors=(RejectCode.UNKNOWN_MARKET,), tags=("market history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        self.markets.check(pair)
        query = req.context.query
        ok(resp, _paged(self.services.store.trades, pair, query["limit"], query["cursor"]))


class Candles:
    def __init__(self, services: Services, markets: _Markets) -> None:
        self.services = services
        self.markets = markets

    @operation(summary="Candles, oldest first", query=(INTERVAL, START, END, CANDLE_LIMIT),
               response=list_of(ref("Candle")), errors=(RejectCode.UNKNOWN_MARKET,), tags=("market history",),
               description="Built from every recorded trade: open, high, low, close, volume, quote volume and "
                           "trade count. Intervals without trades are absent.")
    def on_get(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        self.markets.check(pair)
        query = req.context.query
        start, end = query["start"], query["end"]
        if start is not None and end is not None and start > end:
            raise invalid_field("end", "end must not be before start")
        ok(resp, self.services.store.candles(pair, query["interval"], start, end, query["limit"]))


def closed_orders(services: Services):
    """Return the `status=closed|all` reader of GET /api/v1/account/orders."""

    def read(trader_id: int, status: str, pair: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        return _paged(services.store.orders, trader_id, status, pair, limit, cursor)

    return read


class Fills:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="The trader's fills, newest first", auth=TRADER, query=(PAIR_PARAM, LIMIT, CURSOR_PARAM),
               response=ref("AccountFillPage"), tags=("account history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        ok(resp, _paged(self.services.store.fills, req.context.trader_id, query["pair"], query["limit"],
                        query["cursor"]))


class Deposits:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="The trader's deposits, newest first", auth=TRADER, query=(LIMIT, CURSOR_PARAM),
               response=ref("DepositPage"), tags=("account history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        ok(resp, _paged(self.services.store.deposits, req.context.trader_id, query["limit"], query["cursor"]))


def withdrawals_responder(services: Services):
    """Return the `on_get` added to the withdrawals resource, whose `on_post` withdraws."""

    @operation(summary="The trader's withdrawals, newest first", auth=TRADER, query=(LIMIT, CURSOR_PARAM),
               response=ref("WithdrawalPage"), tags=("account history",))
    def on_get(req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        ok(resp, _paged(services.store.withdrawals, req.context.trader_id, query["limit"], query["cursor"]))

    return on_get


class Positions:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Positions by average cost, with realized and unrealized PnL", auth=TRADER,
               response=ref("PositionPage"), tags=("account history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, page(self.services.store.positions(req.context.trader_id)))


class Portfolio:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Balances valued at last prices, and PnL against net deposits", auth=TRADER,
               query=(VALUATION,), response=ref("Portfolio"), tags=("account history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, self.services.store.portfolio(req.context.trader_id, req.context.query["asset"]))


class Leaderboard:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Traders ranked by PnL against net deposits", auth=TRADER,
               query=(LEADERBOARD_LIMIT, VALUATION), weight=5, response=ref("LeaderboardEntryPage"),
               tags=("account history",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = req.context.query
        ok(resp, page(self.services.store.leaderboard(query["limit"], query["asset"])))


def add_routes(services: Services) -> None:
    """Register the history routes with the gateway (called by create_app)."""
    COMPONENTS.update(SCHEMAS)
    markets = _Markets(services)
    services.add_route(f"{API}/markets/{{pair}}/ticker", Ticker(services))
    services.add_route(f"{API}/markets/{{pair}}/trades", Trades(services, markets))
    services.add_route(f"{API}/markets/{{pair}}/candles", Candles(services, markets))
    services.add_route(f"{API}/account/trades", Fills(services))
    services.add_route(f"{API}/account/deposits", Deposits(services))
    services.add_route(f"{API}/account/positions", Positions(services))
    services.add_route(f"{API}/account/portfolio", Portfolio(services))
    services.add_route(f"{API}/leaderboard", Leaderboard(services))
    services.resource(f"{API}/account/withdrawals").on_get = withdrawals_responder(services)
    services.closed_orders = closed_orders(services)

