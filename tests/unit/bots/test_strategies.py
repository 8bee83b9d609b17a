"""The pure parts of the demo bots: exact price math, the market maker's ladder and fair price, the taker's order."""

from __future__ import annotations

from decimal import Decimal as D

from common.bots.market_maker import Quote, fair_price, quote_ladder
from common.bots.runner import Market
from common.bots.taker import Settings, buy_probability, choose_order, size_range

MARKET = Market("BTC-USDT", "BTC", "USDT", tick=D("0.01"), lot=D("0.001"), min_quantity=D("0.001"),
                min_notional=D("10"), taker_fee_bps=10)


def ladder(inventory: str = "0", levels: int = 2, max_inventory: str = "1.000", quantity: str = "0.200"):
    return quote_ladder(D(100), D(inventory), MARKET, levels=levels, spread_bps=D(20), step_bps=D(10),
                        quantity=D(quantity), max_inventory=D(max_inventory), skew_bps=D(20))


def test_market_rounds_prices_away_from_crossing_and_sizes_to_its_minimums() -> None:
    assert MARKET.price_down(D("99.8049")) == D("99.80") and MARKET.price_up(D("100.2001")) == D("100.21")
    assert MARKET.price_down(D("0.001")) == D("0.01")  # never a zero price
    assert MARKET.lots_down(D("0.0129")) == D("0.012") and MARKET.lots_up(D("0.0121")) == D("0.013")
    assert MARKET.default_quantity(D(100), 100) == D("0.200")  # 100 lots are 10 USDT: twice the minimum notional
    assert MARKET.tradable(D(100), D("0.100")) and not MARKET.tradable(D(100), D("0.099"))


def test_a_flat_market_maker_quotes_a_symmetric_ladder() -> None:
    assert ladder() == [Quote("buy", 0, D("99.80"), D("0.200")), Quote("buy", 1, D("99.70"), D("0.200")),
                        Quote("sell", 0, D("100.20"), D("0.200")), Quote("sell", 1, D("100.30"), D("0.200"))]


def test_inventory_skews_the_ladder_and_the_limit_stops_the_side_that_would_pass_it() -> None:
    long = ladder(inventory="0.500")  # half the limit: 10 bps lower, room to buy 0.5 more
    assert long == [Quote("buy", 0, D("99.70"), D("0.200")), Quote("buy", 1, D("99.60"), D("0.200")),
                    Quote("sell", 0, D("100.10"), D("0.200")), Quote("sell", 1, D("100.20"), D("0.200"))]
    full = ladder(inventory="0.900", levels=3)
    assert [quote.side for quote in full] == ["sell", "sell", "sell"]  # 0.9 + 0.2 would pass 1.0
    short = ladder(inventory="-1.000")
    assert [quote.side for quote in short] == ["buy", "buy"] and short[0].price == D("99.99")  # 100.2 x 0.998


def test_fair_price_prefers_the_last_trade_then_an_earlier_runs_quotes_then_the_default() -> None:
    assert fair_price({"price": "101.50"}, D("90"), D("100")) == D("101.50")
    assert fair_price(None, D("90"), D("100")) == D("90")
    assert fair_price(None, None, D("100")) == D("100")


def test_the_taker_stays_within_its_balance_and_skips_what_cannot_trade() -> None:
    balances = {"USDT": {"available": D("50")}, "BTC": {"available": D("0.150")}}
    # A buy at 101.00 + 50 bps -> 101.51: 50 USDT pays for 0.492 BTC with the 10 bps fee.
    assert choose_order("buy", D("0.8"), D("101.00"), balances, MARKET, D(50)) == (D("101.51"), D("0.492"))
    assert choose_order("buy", D("0.1"), D("101.00"), balances, MARKET, D(50)) == (D("101.51"), D("0.100"))
    assert choose_order("sell", D("0.8"), D("99.00"), balances, MARKET, D(50)) == (D("98.50"), D("0.150"))
    assert choose_order("sell", D("0.01"), D("99.00"), balances, MARKET, D(50)) is None  # 0.010 x 98.5 < 10 USDT
    assert choose_order("buy", D("0.1"), None, balances, MARKET, D(50)) is None  # nothing to take
    assert choose_order("sell", D("0.1"), D("99.00"), {}, MARKET, D(50)) is None  # nothing to sell


def test_the_takers_default_sizes_follow_the_markets_minimums() -> None:
    # 10 USDT minimum notional at 100: twice that is 0.2 BTC, and up to three times as much.
    assert size_range(Settings("BTC-USDT"), MARKET, D(100)) == (D("0.200"), D("0.600"))
    assert size_range(Settings("BTC-USDT", min_quantity=D("0.5")), MARKET, D(100)) == (D("0.5"), D("1.5"))
    assert size_range(Settings("BTC-USDT", max_quantity=D("0.1")), MARKET, D(100)) == (D("0.200"), D("0.200"))


def test_the_taker_leans_towards_undoing_its_position() -> None:
    assert buy_probability(D(0), D("0.3")) == 0.5
    assert buy_probability(D("-1.5"), D("0.3")) == 0.75  # short half of 10 largest orders: buys more often
    assert buy_probability(D("1.5"), D("0.3")) == 0.25
    assert buy_probability(D("30"), D("0.3")) == 0.1 and buy_probability(D("-30"), D("0.3")) == 0.9
