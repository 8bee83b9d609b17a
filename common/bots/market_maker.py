"""`zmx bot market-maker`: quote a ladder around a fair price, within an inventory limit.

Strategy (deliberately simple; it exists so a newcomer sees a live book):
- Fair price: the market's last trade as seen on the public stream; before any trade, the
  middle of the quotes an earlier run of this bot left behind; else `--fair-price`.
- Ladder: `levels` post-only limit orders a side, the first `spread_bps` from the fair
  price, each further one `step_bps` beyond, `quantity` each. The fair price is skewed
  against the inventory (what the bot bought since it started, in base units): at
  `max_inventory` the ladder sits `skew_bps` lower (long) or higher (short), and no order
  is placed that could take the inventory past the limit.
- Requote when the fair price has moved `requote_bps` since the last quote or an order of
  the ladder is gone (filled, or refused). An order whose price or size must change is
  amended (a partly filled one to its filled quantity plus the new size).
- Every order carries a client_order_id `<prefix>-<run>-<b|s><level>-<n>`. After a
  reconnect (the matcher restarted) or lost account events, the bot reconciles its ladder
  by those ids (`BotClient.reconcile`): orders still open are kept, closed ones are
  replaced; orders of an earlier run (same prefix, another run) are canceled.
- On SIGTERM or SIGINT it cancels its orders of this market and exits 0.

`quote_ladder` and `fair_price` are the pure parts and are unit-tested.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.bots.runner import Market, StopFlag, balances_by_asset, run_strategy
from common.config import Config
from common.errors import ConnectionFailed, NotFound, OrderRejected, OutcomeUnknown, ZmxError
from common.sdk.bot import BotClient

log = logging.getLogger("zmx.bot.market_maker")

BPS = Decimal(10_000)
STATUS_LOG_SECONDS = 60.0
STOP_TIMEOUT = 5.0
OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass(frozen=True)
class Settings:
    pair: str
    fair_price: Decimal = Decimal(100)
    spread_bps: Decimal = Decimal(20)
    step_bps: Decimal = Decimal(10)
    levels: int = 3
    quantity: Decimal | None = None  # default: Market.default_quantity(fair price, 100 lots)
    max_inventory: Decimal | None = None  # default: 10 x levels x quantity
    skew_bps: Decimal | None = None  # default: spread_bps
    requote_bps: Decimal = Decimal(5)
    interval: float = 0.5
    client_id_prefix: str = "mm"


@dataclass(frozen=True)
class Quote:
    side: str
    level: int
    price: Decimal
    quantity: Decimal


def quote_ladder(fair: Decimal, inventory: Decimal, market: Market, levels: int, spread_bps: Decimal,
                 step_bps: Decimal, quantity: Decimal, max_inventory: Decimal, skew_bps: Decimal) -> list[Quote]:
    """Return the ladder to quote: bids best first, then asks best first."""
    position = max(-1, min(1, inventory / max_inventory)) if max_inventory > 0 else Decimal(0)
    center = fair * (1 - skew_bps * position / BPS)
    quotes = []
    room_to_buy, room_to_sell = max_inventory - inventory, max_inventory + inventory
    for level in range(levels):
        distance = (spread_bps + step_bps * level) / BPS
        bid, ask = market.price_down(center * (1 - distance)), market.price_up(center * (1 + distance))
        if ask <= bid:
            ask = bid + market.tick
        if quantity <= room_to_buy and market.tradable(bid, quantity):
            quotes.append(Quote("buy", level, bid, quantity))
            room_to_buy -= quantity
        if quantity <= room_to_sell and market.tradable(ask, quantity):
            quotes.append(Quote("sell", level, ask, quantity))
            room_to_sell -= quantity
    return sorted(quotes, key=lambda quote: (quote.side != "buy", quote.level))


def fair_price(last_trade: dict[str, Any] | None, hint: Decimal | None, default: Decimal) -> Decimal:
    """The last trade's price, else the hint (an earlier run's quotes), else the default."""
    if last_trade is not None:
        return Decimal(last_trade["price"])
    return hint if hint is not None else default


class Slot:
    """The bot's order at one rung of the ladder."""

    __slots__ = ("client_order_id", "order_id", "price", "quantity", "filled")

    def __init__(self, client_order_id: str) -> None:
        self.client_order_id = client_order_id
        self.order_id: int | None = None  # None until the matcher's answer says which
        self.price = self.quantity = self.filled = Decimal(0)

    def update(self, order: dict[str, Any]) -> None:
        self.order_id = order["order_id"]
        self.price = Decimal(order["price"])
        self.quantity = Decimal(order["remaining_quantity"])
        self.filled = Decimal(order["filled_quantity"])


class MarketMaker:
    """The quoting loop around one BotClient."""

    def __init__(self, client: BotClient, market: Market, settings: Settings, stop: StopFlag) -> None:
        self.client = client
        self.market = market
        self.settings = settings
        self.stop = stop
        self.run_id = secrets.token_hex(3)
        self.prefix = f"{settings.client_id_prefix}-"
        self.slots: dict[tuple[str, int], Slot] = {}
        self.by_client_id: dict[str, tuple[str, int]] = {}
        self.numbers = 0
        self.hint: Decimal | None = None
        self.quoted_fair: Decimal | None = None
        self.base_total = Decimal(0)
        self.neutral: Decimal | None = None
        self.must_reconcile = True
        self.halted = False
        self.fills = 0
        self.quantity = settings.quantity or market.default_quantity(settings.fair_price, 100)
        self.max_inventory = settings.max_inventory or 10 * settings.levels * self.quantity
        self.skew_bps = settings.spread_bps if settings.skew_bps is None else settings.skew_bps

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        self.client.follow_book(self.market.pair)
        log.info("market maker started", extra={"pair": self.market.pair, "run": self.run_id,
                                                "quantity": str(self.quantity), "levels": self.settings.levels,
                                                "max_inventory": str(self.max_inventory)})
        last_status = time.monotonic()
        while not self.stop.stopping:
            for event in self.client.poll(self.settings.interval):
                self.on_event(event)
            if self.stop.stopping:
                break
            try:
                if self.must_reconcile:
                    self.reconcile()
                self.requote()
            except (OutcomeUnknown, ConnectionFailed) as error:
                # Some request may or may not have run: find out before acting again.
                log.warning("lost touch with the matcher", extra={"code": error.code, "error": error.message})
                self.must_reconcile = True
            if time.monotonic() - last_status >= STATUS_LOG_SECONDS:
                last_status = time.monotonic()
                log.info("status", extra=self.status())
        self.shutdown()

    def status(self) -> dict[str, Any]:
        return {"fair": str(self.quoted_fair), "inventory": format(self.inventory, "f"), "orders": len(self.slots),
                "fills": self.fills, "book": repr(self.client.books[self.market.pair].book)}

    @property
    def inventory(self) -> Decimal:
        return self.base_total - (self.neutral if self.neutral is not None else self.base_total)

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "connected" and event["reconnect"]:
            log.info("reconnected to the matcher: reconciling")
            self.must_reconcile = True
        elif kind == "events_lost":
            log.warning("account events lost: reconciling", extra=event)
            self.must_reconcile = True
        elif kind == "disconnected":
            log.warning("disconnected from the matcher")
        elif kind == "account":
            for order in event["orders"]:
                self._track(order)
            for fill in event["fills"]:
                if fill["pair"] == self.market.pair:
                    self.fills += 1
            for balance in event["balances"]:
                if balance["asset"] == self.market.base:
                    self.base_total = Decimal(balance["total"])

    def _track(self, order: dict[str, Any]) -> None:
        slot_key = self.by_client_id.get(order.get("client_order_id") or "")
        if slot_key is None:
            return
        slot = self.slots.get(slot_key)
        if slot is None or slot.client_order_id != order["client_order_id"]:
            return
        if order["status"] in OPEN:
            slot.update(order)
        else:
            self._forget(slot_key)

    def _forget(self, slot_key: tuple[str, int]) -> None:
        slot = self.slots.pop(slot_key, None)
        if slot is not None:
            self.by_client_id.pop(slot.client_order_id, None)

    # ------------------------------------------------------------ reconcile

    def reconcile(self) -> None:
        """Rebuild the ladder's state from the matcher's: open orders by client_order_id, balances."""
        known = {slot.client_order_id: slot.order_id for slot in self.slots.values()}
        result = self.client.reconcile(known, self.market.pair)
        for client_order_id in result.closed:
            self._forget(self.by_client_id[client_order_id])
        for client_order_id, order in result.open.items():
            self.slots[self.by_client_id[client_order_id]].update(order)
        leftovers = [order for order in result.others if (order.get("client_order_id") or "").startswith(self.prefix)]
        if leftovers and self.quoted_fair is None:
            prices = [Decimal(order["price"]) for order in leftovers]
            self.hint = (min(prices) + max(prices)) / 2
        for order in leftovers:
            try:
                self.client.cancel(order["order_id"])
            except (NotFound, OrderRejected):
                pass  # closed meanwhile
        base = balances_by_asset(result.balances).get(self.market.base, {}).get("total", Decimal(0))
        self.base_total = base
        if self.neutral is None:
            self.neutral = base
        self.must_reconcile = False
        self.quoted_fair = None  # requote now
        log.info("reconciled", extra={"open": len(result.open), "closed": len(result.closed),
                                      "canceled_leftovers": len(leftovers), "inventory": format(self.inventory, "f")})

    # ------------------------------------------------------------ quoting

    def requote(self) -> None:
        settings = self.settings
        fair = fair_price(self.client.last_trade(self.market.pair), self.hint, settings.fair_price)
        targets = quote_ladder(fair, self.inventory, self.market, settings.levels, settings.spread_bps,
                               settings.step_bps, self.quantity, self.max_inventory, self.skew_bps)
        wanted = {(quote.side, quote.level): quote for quote in targets}
        moved = self.quoted_fair is None or abs(fair - self.quoted_fair) * BPS >= settings.requote_bps * self.quoted_fair
        if not moved and set(wanted) == set(self.slots):
            return
        for slot_key in [key for key in self.slots if key not in wanted]:
            self._cancel(slot_key)
        halted = False
        for slot_key, quote in wanted.items():
            try:
                self._quote(slot_key, quote)
            except OrderRejected as error:
                if error.code == "MARKET_HALTED":
                    halted = True
                    break
                # POST_ONLY_WOULD_TAKE, INSUFFICIENT_BALANCE, ...: this rung waits for the next round.
                log.debug("quote refused", extra={"side": quote.side, "level": quote.level,
                                                  "price": str(quote.price), "code": error.code})
        if halted != self.halted:
            self.halted = halted
            log.warning("market halted: not quoting" if halted else "market trading again")
        self.quoted_fair = fair
        log.debug("quoted", extra={"fair": str(fair), "inventory": str(self.inventory),
                                   "quotes": [[quote.side, str(quote.price), str(quote.quantity)] for quote in targets]})

    def _quote(self, slot_key: tuple[str, int], quote: Quote) -> None:
        slot = self.slots.get(slot_key)
        if slot is not None:
            if slot.order_id is None or (slot.price == quote.price and slot.quantity == quote.quantity):
                return  # unanswered (the next reconcile settles it), or already right
            try:
                slot.update(self.client.amend(slot.order_id, price=quote.price, quantity=slot.filled + quote.quantity))
                return
            except (NotFound, OrderRejected) as error:
                if error.code not in ("ORDER_NOT_FOUND", "ORDER_NOT_OPEN"):
                    raise
                self._forget(slot_key)  # filled or canceled meanwhile: place a fresh one
        self.numbers += 1
        client_order_id = f"{self.prefix}{self.run_id}-{quote.side[0]}{quote.level}-{self.numbers}"
        # Known before it is sent, so a reconcile after a timeout asks about it.
        slot = self.slots[slot_key] = Slot(client_order_id)
        self.by_client_id[client_order_id] = slot_key
        try:
            order = self.client.place(self.market.pair, quote.side, "limit", price=quote.price,
                                      quantity=quote.quantity, post_only=True, client_order_id=client_order_id)
        except ZmxError as error:
            if not isinstance(error, (OutcomeUnknown, ConnectionFailed)):
                self._forget(slot_key)
            raise
        if order["status"] in OPEN:
            slot.update(order)
        else:
            self._forget(slot_key)

    def _cancel(self, slot_key: tuple[str, int]) -> None:
        slot = self.slots[slot_key]
        try:
            if slot.order_id is None:
                self.client.cancel(client_order_id=slot.client_order_id)
            else:
                self.client.cancel(slot.order_id)
        except (NotFound, OrderRejected):
            pass  # already closed
        self._forget(slot_key)

    # ------------------------------------------------------------ stop

    def shutdown(self) -> None:
        """Cancel this market's orders, trying for up to STOP_TIMEOUT seconds if the matcher is away."""
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            try:
                canceled = self.client.cancel_all(self.market.pair)["canceled"]
                log.info("market maker stopped", extra={"signal": self.stop.signal_name, "canceled": len(canceled),
                                                        **self.status()})
                return
            except (OutcomeUnknown, ConnectionFailed) as error:
                if time.monotonic() >= deadline:
                    log.error("could not cancel the quotes before stopping", extra={"error": error.message})
                    return
                self.client.poll(0.2)


def run_market_maker(config: Config, key_file: str, settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; return the exit code."""
    return run_strategy(config, key_file, settings, MarketMaker, log)
