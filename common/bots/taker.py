"""`zmx bot taker`: take liquidity at random times, sides and sizes, within its balance.

Every `interval` seconds on average (exponentially distributed gaps, so arrivals are a
Poisson process) it picks a side at random, leaning towards undoing what it has bought
or sold since it started (so that the market maker's inventory, its mirror image, keeps
coming back and the demo book stays two-sided), and a size between `min_quantity` and
`max_quantity` (by default the smallest size the market's minimums allow at the best
price, with 10 lots at least, and three times that), and sends an IOC limit order priced
`slippage_bps` through the best opposite price of its local book (kept from the public
PUB). It never spends more than its
available balance: a buy is cut to what the quote asset pays for at that price plus the
taker fee, a sell to the base it holds; a size below the market's minimums is skipped. An
empty opposite side is skipped too. Orders that get no answer are looked up by their
client_order_id before the next one; SIGTERM or SIGINT stops it (an IOC order never rests,
so there is nothing to cancel).
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.bots.runner import Market, StopFlag, balances_by_asset, run_strategy
from common.config import Config
from common.errors import ConnectionFailed, NotFound, OrderRejected, OutcomeUnknown
from common.sdk.bot import BotClient

log = logging.getLogger("zmx.bot.taker")

BPS = Decimal(10_000)


@dataclass(frozen=True)
class Settings:
    pair: str
    interval: float = 2.0
    min_quantity: Decimal | None = None
    max_quantity: Decimal | None = None
    slippage_bps: Decimal = Decimal(50)
    seed: int | None = None
    client_id_prefix: str = "taker"


def size_range(settings: Settings, market: Market, price: Decimal) -> tuple[Decimal, Decimal]:
    """Return the smallest and largest order size, the defaults made from the market's minimums at `price`."""
    smallest = settings.min_quantity or market.default_quantity(price, 10)
    return smallest, max(smallest, settings.max_quantity or 3 * smallest)


# The taker's position (base bought minus sold since start) at which it is sure to trade
# against it, in multiples of its largest order.
FLATTEN_AT = 10


def buy_probability(position: Decimal, largest: Decimal) -> float:
    """Return the chance of buying: one half when flat, less when long, more when short."""
    lean = float(position / (FLATTEN_AT * largest)) if largest > 0 else 0.0
    return min(0.9, max(0.1, 0.5 - lean / 2))


def choose_order(side: str, quantity: Decimal, book_best: Decimal | None, balances: dict[str, dict[str, Decimal]],
                 market: Market, slippage_bps: Decimal) -> tuple[Decimal, Decimal] | None:
    """Return (price, quantity) for an IOC order of `quantity` on `side`, cut to the balance; None to skip."""
    if book_best is None:
        return None
    quantity = market.lots_down(quantity)
    if side == "buy":
        price = market.price_up(book_best * (1 + slippage_bps / BPS))
        spendable = balances.get(market.quote, {}).get("available", Decimal(0))
        quantity = min(quantity, market.lots_down(spendable / (price * (1 + Decimal(market.taker_fee_bps) / BPS))))
    else:
        price = market.price_down(book_best * (1 - slippage_bps / BPS))
        quantity = min(quantity, market.lots_down(balances.get(market.base, {}).get("available", Decimal(0))))
    if not market.tradable(price, quantity):
        return None
    return price, quantity


class Taker:
    def __init__(self, client: BotClient, market: Market, settings: Settings, stop: StopFlag) -> None:
        self.client = client
        self.market = market
        self.settings = settings
        self.stop = stop
        self.random = random.Random(settings.seed)
        self.run_id = secrets.token_hex(3)
        self.numbers = 0
        self.unresolved: list[str] = []  # client_order_ids whose outcome is unknown
        self.balances: dict[str, dict[str, Decimal]] = {}
        self.start_base: Decimal | None = None
        self.trades = 0

    def run(self) -> None:
        book = self.client.follow_book(self.market.pair)
        log.info("taker started", extra={"pair": self.market.pair, "run": self.run_id,
                                         "interval": self.settings.interval})
        while not self.stop.stopping:
            due = time.monotonic() + self.random.expovariate(1 / self.settings.interval)
            while not self.stop.stopping and time.monotonic() < due:
                for event in self.client.poll(min(0.5, max(0.0, due - time.monotonic()))):
                    self.on_event(event)
            if self.stop.stopping:
                break
            try:
                if self.unresolved or not self.balances:
                    self.resolve()
                if book.synced:
                    self.take(book)
            except (OutcomeUnknown, ConnectionFailed) as error:
                log.warning("lost touch with the matcher", extra={"code": error.code, "error": error.message})
        log.info("taker stopped", extra={"signal": self.stop.signal_name, "trades": self.trades})

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "account":
            for balance in event["balances"]:
                self.balances[balance["asset"]] = {name: Decimal(balance[name])
                                                   for name in ("available", "locked", "total")}
        elif event["type"] in ("events_lost", "connected"):
            self.balances = {}  # fetched again before the next order

    def resolve(self) -> None:
        """Look up orders whose outcome is unknown, and refresh the balances."""
        for client_order_id in self.unresolved:
            try:
                order = self.client.get_order(client_order_id=client_order_id)
                log.info("an order without answer is open", extra={"order_id": order["order_id"]})
            except NotFound:
                pass  # an IOC order is never open for long: it ran (see the balances) or never arrived
        self.unresolved.clear()
        self.balances = balances_by_asset(self.client.balances())
        if self.start_base is None:
            self.start_base = self.base_total()

    def base_total(self) -> Decimal:
        return self.balances.get(self.market.base, {}).get("total", Decimal(0))

    def take(self, book) -> None:
        reference = book.mid()
        if reference is None:
            level = book.best_bid() or book.best_ask()
            if level is None:
                log.debug("nothing to take: the book is empty")
                return
            reference = level[0]
        smallest, largest = size_range(self.settings, self.market, reference)
        position = self.base_total() - (self.start_base or Decimal(0))
        side = "buy" if self.random.random() < buy_probability(position, largest) else "sell"
        best = book.best_ask() if side == "buy" else book.best_bid()
        choice = None
        if best is not None:
            lots = self.random.randint(int(smallest / self.market.lot), int(largest / self.market.lot))
            choice = choose_order(side, lots * self.market.lot, best[0], self.balances, self.market,
                                  self.settings.slippage_bps)
        if choice is None:
            log.debug("nothing to take", extra={"side": side})
            return
        price, quantity = choice
        self.numbers += 1
        client_order_id = f"{self.settings.client_id_prefix}-{self.run_id}-{self.numbers}"
        self.unresolved.append(client_order_id)
        try:
            order = self.client.place(self.market.pair, side, "limit", price=price, quantity=quantity,
                                      time_in_force="IOC", client_order_id=client_order_id)
        except OrderRejected as error:
            self.unresolved.remove(client_order_id)
            log.info("order refused", extra={"side": side, "price": str(price), "quantity": str(quantity),
                                             "code": error.code})
            return
        self.unresolved.remove(client_order_id)
        self.trades += len(order["fills"])
        log.info("took", extra={"side": side, "price": str(price), "quantity": str(quantity),
                                "filled": order["filled_quantity"], "average_price": order["average_price"]})


def run_taker(config: Config, key_file: str, settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; return the exit code."""
    return run_strategy(config, key_file, settings, Taker, log)
