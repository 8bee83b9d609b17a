"""Binance symbols (`BTCUSDT`) for zmx markets (`BTC-USDT`), and what each market's numbers look like.

A symbol is the pair without its dash. Two markets can collide (`BTC-USDT` and `BTCU-SDT`
are both `BTCUSDT`): such a symbol is ambiguous, so it is never guessed. Requests naming it
get -1121 with both pairs named, and exchangeInfo leaves it out; those markets trade
through /api/v1 only.

Markets come from the matcher shards (`markets_and_assets`); each worker keeps the last
answer and asks again when a symbol is not in it (a market created since), and whenever
exchangeInfo is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.types import RejectCode, Step
from gateway.binance.errors import BinanceError
from gateway.envelope import ApiError
from gateway.resources.public import markets_and_assets
from gateway.services import Services

# The largest value zmx parses (24 integer digits), for filters whose bound zmx does not have.
_MAX_INTEGER_DIGITS = 24


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str
    pair: str
    base: str
    quote: str
    shard_id: int
    trading: bool
    tick: Step
    lot: Step
    base_step: Step
    quote_step: Step
    min_quantity: str
    min_notional: str
    maker_fee_bps: int
    taker_fee_bps: int

    @classmethod
    def from_wire(cls, market: dict[str, Any], decimals: dict[str, int]) -> "Market":
        return cls(
            symbol=market["base"] + market["quote"], pair=market["pair"], base=market["base"],
            quote=market["quote"], shard_id=market["shard_id"], trading=market["status"] == "trading",
            tick=Step(market["tick_size"]), lot=Step(market["lot_size"]),
            base_step=Step.from_decimals(decimals[market["base"]]),
            quote_step=Step.from_decimals(decimals[market["quote"]]), min_quantity=market["min_quantity"],
            min_notional=market["min_notional"], maker_fee_bps=market["maker_fee_bps"],
            taker_fee_bps=market["taker_fee_bps"],
        )


def ceiling(step: Step) -> str:
    """Return the largest multiple of `step` that zmx parses: the bound of a filter zmx does not limit."""
    return step.format((10 ** (_MAX_INTEGER_DIGITS + step.decimals) - 1) // step.multiplier)


class Markets:
    """The markets by symbol, from the matcher, refreshed on a miss."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._by_symbol: dict[str, Market] = {}
        self._by_pair: dict[str, Market] = {}
        self._ambiguous: dict[str, tuple[str, ...]] = {}

    def refresh(self) -> list[Market]:
        """Ask the matchers for every market; return the unambiguous ones, by symbol."""
        markets, assets = markets_and_assets(self.services)
        decimals = {asset["asset"]: asset["decimals"] for asset in assets}
        by_symbol: dict[str, Market] = {}
        by_pair: dict[str, Market] = {}
        ambiguous: dict[str, list[str]] = {}
        for wire in markets:
            market = Market.from_wire(wire, decimals)
            by_pair[market.pair] = market
            if market.symbol in ambiguous:
                ambiguous[market.symbol].append(market.pair)
            elif market.symbol in by_symbol:
                ambiguous[market.symbol] = [by_symbol.pop(market.symbol).pair, market.pair]
            else:
                by_symbol[market.symbol] = market
        # Replaced, never changed in place: other threads keep reading whole tables.
        self._by_symbol, self._by_pair = by_symbol, by_pair
        self._ambiguous = {symbol: tuple(pairs) for symbol, pairs in ambiguous.items()}
        return sorted(by_symbol.values(), key=lambda market: market.symbol)

    def get(self, symbol: str) -> Market:
        """Return the market a symbol names; -1121 when none (or more than one) does."""
        market = self._by_symbol.get(symbol)
        if market is None:
            self.refresh()
            market = self._by_symbol.get(symbol)
        if market is None:
            pairs = self._ambiguous.get(symbol)
            if pairs is not None:
                raise BinanceError(-1121, f"Invalid symbol. {symbol} names the markets {', '.join(pairs)}: trade "
                                          "them through /api/v1.")
            raise BinanceError(-1121, "Invalid symbol.")
        return market

    def every(self) -> list[Market]:
        """Return every market, ambiguous symbols included, as the matchers have them now."""
        self.refresh()
        return list(self._by_pair.values())

    def of_pair(self, pair: str) -> Market:
        """Return the market of a pair (the markets of orders and fills); asks again for one it does not know."""
        market = self._by_pair.get(pair)
        if market is None:
            self.refresh()
            market = self._by_pair.get(pair)
            if market is None:
                raise ApiError(RejectCode.UNKNOWN_MARKET, f"unknown market {pair}")
        return market
