"""zmx's wire shapes (SPEC section 4, the store's rows) in Binance's response shapes.

Ids are zmx's ids (`orderId` is `order_id`, trade `id` is `trade_id`); times are the same
milliseconds. Binance writes a zero where zmx writes null (a market order's price, an empty
book side), with the decimals of the field's step. `orderListId` is always -1: zmx has no
order lists.
"""

from __future__ import annotations

from typing import Any

from common.types import Step
from gateway.binance.markets import Market

RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
STP_MODES = {"EXPIRE_TAKER": "expire_taker", "EXPIRE_MAKER": "expire_maker", "EXPIRE_BOTH": "expire_both",
             "DECREMENT": "decrement", "NONE": "none"}


def order_type(order: dict[str, Any]) -> str:
    if order["type"] == "market":
        return "MARKET"
    return "LIMIT_MAKER" if order["post_only"] else "LIMIT"


def notional(market: Market, price: str, quantity: str) -> str:
    """Return price x quantity exactly, with the decimals of both steps."""
    tick, lot = market.tick, market.lot
    units = tick.parse(price) * tick.multiplier * lot.parse(quantity) * lot.multiplier
    return Step.from_decimals(tick.decimals + lot.decimals).format(units)


def _common(order: dict[str, Any], market: Market) -> dict[str, Any]:
    """The fields every order answer shares, after the ids."""
    return {
        "price": order["price"] or market.tick.format(0),
        "origQty": order["quantity"] or market.lot.format(0),
        "executedQty": order["filled_quantity"],
        "origQuoteOrderQty": order["quote_quantity"] or market.quote_step.format(0),
        "cummulativeQuoteQty": order["filled_quote_quantity"],
        "status": order["status"],
        "timeInForce": order["time_in_force"],
        "type": order_type(order),
        "side": order["side"].upper(),
    }


def order(order: dict[str, Any], market: Market) -> dict[str, Any]:
    """GET /api/v3/order, openOrders, allOrders."""
    return {
        "symbol": market.symbol, "orderId": order["order_id"], "orderListId": -1,
        "clientOrderId": order["client_order_id"] or "",
        **_common(order, market),
        "stopPrice": market.tick.format(0), "icebergQty": market.lot.format(0),
        "time": order["created_at"], "updateTime": order["updated_at"], "isWorking": True,
        "workingTime": order["created_at"], "selfTradePreventionMode": order["stp"].upper(),
    }


def new_order(order: dict[str, Any], market: Market, response_type: str) -> dict[str, Any]:
    """POST /api/v3/order: ACK, RESULT (ACK and the order) or FULL (RESULT and the fills it made)."""
    answer = {"symbol": market.symbol, "orderId": order["order_id"], "orderListId": -1,
              "clientOrderId": order["client_order_id"], "transactTime": order["updated_at"]}
    if response_type == "ACK":
        return answer
    answer.update(_common(order, market), workingTime=order["created_at"],
                  selfTradePreventionMode=order["stp"].upper())
    if response_type == "FULL":
        answer["fills"] = [{"price": fill["price"], "qty": fill["quantity"], "commission": fill["fee"],
                            "commissionAsset": fill["fee_asset"], "tradeId": fill["trade_id"]}
                           for fill in order["fills"]]
    return answer


def canceled(order: dict[str, Any], market: Market, cancel_id: str) -> dict[str, Any]:
    """DELETE /api/v3/order and openOrders: `clientOrderId` names the cancel, `origClientOrderId` the order."""
    return {
        "symbol": market.symbol, "origClientOrderId": order["client_order_id"] or "",
        "orderId": order["order_id"], "orderListId": -1, "clientOrderId": cancel_id,
        "transactTime": order["updated_at"], **_common(order, market),
        "selfTradePreventionMode": order["stp"].upper(),
    }


def trade(trade: dict[str, Any], market: Market) -> dict[str, Any]:
    """GET /api/v3/trades: one public trade."""
    return {"id": trade["trade_id"], "price": trade["price"], "qty": trade["quantity"],
            "quoteQty": notional(market, trade["price"], trade["quantity"]), "time": trade["ts"],
            "isBuyerMaker": trade["taker_side"] == "sell", "isBestMatch": True}


def my_trade(fill: dict[str, Any], market: Market) -> dict[str, Any]:
    """GET /api/v3/myTrades: one fill of the caller's."""
    return {"symbol": market.symbol, "id": fill["trade_id"], "orderId": fill["order_id"], "orderListId": -1,
            "price": fill["price"], "qty": fill["quantity"],
            "quoteQty": notional(market, fill["price"], fill["quantity"]), "commission": fill["fee"],
            "commissionAsset": fill["fee_asset"], "time": fill["ts"], "isBuyer": fill["side"] == "buy",
            "isMaker": fill["liquidity"] == "maker", "isBestMatch": True}


def kline(candle: dict[str, Any]) -> list[Any]:
    """GET /api/v3/klines: one candle as Binance's twelve-element array (the last one unused)."""
    return [candle["open_time"], candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"],
            candle["close_time"], candle["quote_volume"], candle["trades"], candle["taker_buy_volume"],
            candle["taker_buy_quote_volume"], "0"]


def _best(levels: list[list[str]], market: Market) -> tuple[str, str]:
    return (levels[0][0], levels[0][1]) if levels else (market.tick.format(0), market.lot.format(0))


def book_ticker(market: Market, book: dict[str, Any]) -> dict[str, Any]:
    """GET /api/v3/ticker/bookTicker from a depth-1 snapshot."""
    bid_price, bid_quantity = _best(book["bids"], market)
    ask_price, ask_quantity = _best(book["asks"], market)
    return {"symbol": market.symbol, "bidPrice": bid_price, "bidQty": bid_quantity, "askPrice": ask_price,
            "askQty": ask_quantity}


def ticker(market: Market, stats: dict[str, Any], book: dict[str, Any] | None) -> dict[str, Any]:
    """GET /api/v3/ticker/24hr from the store's 24-hour statistics (FULL with `book`, MINI without)."""
    zero_price, zero_quantity = market.tick.format(0), market.lot.format(0)
    answer: dict[str, Any] = {"symbol": market.symbol}
    if book is not None:
        volume = market.lot.parse(stats["volume"])
        average = zero_price
        if volume:
            # Exact quote volume / volume, truncated to the tick's decimals plus 8.
            decimals = market.tick.decimals + 8
            shift = decimals + market.lot.decimals - market.quote_step.decimals
            numerator = market.quote_step.parse(stats["quote_volume"]) * 10**max(shift, 0)
            denominator = volume * market.lot.multiplier * 10**max(-shift, 0)
            average = Step.from_decimals(decimals).format(numerator // denominator)
        answer.update(priceChange=stats["change"] or zero_price, priceChangePercent=stats["change_percent"] or "0.00",
                      weightedAvgPrice=average, prevClosePrice=stats["prev_close"] or zero_price,
                      lastPrice=stats["last"] or zero_price, lastQty=stats["last_quantity"] or zero_quantity)
        bid_price, bid_quantity = _best(book["bids"], market)
        ask_price, ask_quantity = _best(book["asks"], market)
        answer.update(bidPrice=bid_price, bidQty=bid_quantity, askPrice=ask_price, askQty=ask_quantity)
    else:
        answer["lastPrice"] = stats["last"] or zero_price
    answer.update(openPrice=stats["open"] or zero_price, highPrice=stats["high"] or zero_price,
                  lowPrice=stats["low"] or zero_price, volume=market.lot.format(market.lot.parse(stats["volume"])),
                  quoteVolume=market.quote_step.format(market.quote_step.parse(stats["quote_volume"])),
                  openTime=stats["open_time"], closeTime=stats["close_time"],
                  firstId=stats["first_trade_id"] if stats["first_trade_id"] is not None else -1,
                  lastId=stats["last_trade_id"] if stats["last_trade_id"] is not None else -1,
                  count=stats["trades"])
    return answer
