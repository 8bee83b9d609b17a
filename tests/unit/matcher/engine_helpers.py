"""Test-side helpers for engine tests: a thin driver, state readers, and a seeded random flow.

The driver (`Exchange`) only fills in the arguments a test does not care about and hands
out increasing timestamps; every call goes straight to the real `Engine` method.

The standard market is BTC-USDT with tick 0.01 and lot 1 over BTC and USDT kept to 2
decimals, so a price of 10000 ticks is 100.00 USDT, one lot is 100 BTC units, and a
notional is simply price x lots USDT units (`quote_per_tick_lot == 1`).
"""

from __future__ import annotations

import random

from common.types import OrderStatus, OrderType, Side, StpMode, TimeInForce
from matcher import snapshot
from matcher.book import Order
from matcher.engine import Engine, Reject

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
NEW, PARTIALLY_FILLED, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
CANCELED, EXPIRED = OrderStatus.CANCELED, OrderStatus.EXPIRED
PAIR = "BTC-USDT"
BTC_PER_LOT = 100


class Exchange:
    """One engine with the standard market; methods mirror Engine's with test defaults."""

    def __init__(
        self,
        maker_fee_bps: int = 0,
        taker_fee_bps: int = 0,
        min_quantity: str = "0",
        min_notional: str = "0",
        shard_id: int = 0,
        max_open_orders: int = 1_000,
    ) -> None:
        self.engine = Engine(shard_id=shard_id, max_open_orders=max_open_orders)
        self.ts = 1_000
        assert self.engine.create_asset("BTC", 2) is not None
        assert self.engine.create_asset("USDT", 2) is not None
        market = self.engine.create_market(
            PAIR, "0.01", "1", min_quantity, min_notional, maker_fee_bps, taker_fee_bps, self.next_ts()
        )
        assert not isinstance(market, Reject), market
        self.market = market
        self.book = market.book

    def next_ts(self) -> int:
        self.ts += 1
        return self.ts

    # -- funds

    def fund(self, account_id: int, btc: int = 0, usdt: int = 0) -> None:
        """Deposit `btc` and `usdt` units (not lots, not ticks)."""
        for asset, amount in (("BTC", btc), ("USDT", usdt)):
            if amount:
                result = self.engine.deposit(account_id, asset, amount, self.next_ts())
                assert not isinstance(result, Reject), result

    def balance(self, account_id: int, asset: str) -> tuple[int, int]:
        """Return (available, locked) in units."""
        account = self.engine.ledger.accounts.get(account_id)
        return account.balance(asset) if account is not None else (0, 0)

    def balances(self, *account_ids: int) -> dict[int, dict[str, tuple[int, int]]]:
        return {a: {asset: self.balance(a, asset) for asset in ("BTC", "USDT")} for a in account_ids}

    # -- orders

    def place(
        self,
        account_id: int,
        side: Side,
        price: int | None,
        quantity: int | None,
        *,
        order_type: OrderType = LIMIT,
        tif: TimeInForce = GTC,
        quote_quantity: int | None = None,
        post_only: bool = False,
        stp: StpMode = StpMode.EXPIRE_MAKER,
        client_order_id: str | None = None,
        symbol: str = PAIR,
    ) -> Order | Reject:
        return self.engine.place(
            account_id, symbol, side, order_type, tif, price, quantity, quote_quantity,
            post_only, stp, client_order_id, self.next_ts(),
        )

    def limit(self, account_id: int, side: Side, price: int, quantity: int, **options) -> Order:
        """Place a limit order that must be accepted."""
        order = self.place(account_id, side, price, quantity, **options)
        assert isinstance(order, Order), order
        return order

    def market_order(
        self,
        account_id: int,
        side: Side,
        quantity: int | None = None,
        *,
        quote_quantity: int | None = None,
        protection: int | None = None,
        tif: TimeInForce = IOC,
        stp: StpMode = StpMode.EXPIRE_MAKER,
    ) -> Order | Reject:
        return self.place(
            account_id, side, protection, quantity, order_type=MARKET, tif=tif,
            quote_quantity=quote_quantity, stp=stp,
        )

    def amend(self, account_id: int, order_id: int, quantity: int | None = None, price: int | None = None):
        return self.engine.amend(account_id, order_id, None, quantity, price, self.next_ts())

    def cancel(self, account_id: int, order_id: int | None = None, client_order_id: str | None = None):
        return self.engine.cancel(account_id, order_id, client_order_id, self.next_ts())

    def cancel_all(self, account_id: int, symbol: str | None = None):
        return self.engine.cancel_all(account_id, symbol, self.next_ts())

    # -- what a user sees

    def depth(self):
        return self.book.depth()

    def queue(self, side: Side, price: int) -> list[int]:
        """Return the order ids resting at one price, front of the queue first."""
        levels = self.book.bids if side == BUY else self.book.asks
        level = levels.get(-price if side == BUY else price)
        return [order.order_id for order in level.orders()] if level is not None else []

    def public(self) -> list[tuple]:
        return [public_tuple(update) for update in self.engine.public]

    def private(self) -> dict[int, tuple]:
        return {update.account_id: private_tuple(update) for update in self.engine.private}

    def check(self) -> None:
        self.engine.check_invariants()

    def assert_rejected_without_change(self, action, code) -> Reject:
        """Run `action()`, expect a Reject with `code`, and prove it changed nothing at all."""
        before = snapshot.dump(self.engine)
        result = action()
        assert isinstance(result, Reject), result
        assert result.code == code, result
        assert snapshot.dump(self.engine) == before
        assert self.engine.public == [] and self.engine.private == []
        self.check()
        return result


def state(order: Order) -> tuple:
    """Return what a user sees of an order's progress: (status, filled, remaining)."""
    return OrderStatus(order.status), order.filled, order.remaining


def order_tuple(order: Order) -> tuple:
    return tuple(getattr(order, name) for name in snapshot.ORDER_FIELDS)


def fill_tuple(fill) -> tuple:
    return (fill.order.order_id, fill.trade_id, fill.price, fill.quantity, fill.fee, fill.fee_asset, int(fill.liquidity))


def public_tuple(update) -> tuple:
    """(market, seq, ts, bids, asks, trades, halted) with plain ints and lists."""
    trades = [(trade_id, price, lots, int(side), ts) for trade_id, price, lots, side, ts in update.trades]
    return (update.market, update.seq, update.ts_ns, list(update.bids), list(update.asks), trades, update.halted)


def private_tuple(update) -> tuple:
    return (
        update.account_id,
        update.seq,
        update.ts_ns,
        [order_tuple(order) for order in update.orders],
        [fill_tuple(fill) for fill in update.fills],
        list(update.balances),
    )


def result_tuple(result) -> tuple:
    """Turn any command result into comparable plain data, taken before the next command runs."""
    if isinstance(result, Reject):
        return ("reject", result.code, result.message, result.details)
    if isinstance(result, Order):
        return ("order", order_tuple(result))
    if isinstance(result, list):
        return ("orders", [order_tuple(order) for order in result])
    if result is None:
        return ("none",)
    return ("other", type(result).__name__)


def outcome(engine: Engine, result) -> tuple:
    """A command's result plus the public and private updates it produced."""
    return (
        result_tuple(result),
        [public_tuple(update) for update in engine.public],
        [private_tuple(update) for update in engine.private],
    )


# -------------------------------------------------------------------- seeded random flow

FLOW_ACCOUNTS = (1, 2, 3, 4)
FLOW_MARKETS = {
    # symbol: (mid price in ticks, maker bps, taker bps)
    "BTC-USDT": (50_000, 2, 7),
    "ETH-USDT": (3_000, -3, 5),
}
STP_MODES = list(StpMode)


def flow_engine(shard_id: int = 5) -> Engine:
    """Two markets with non-trivial unit factors (one pays maker rebates), four funded accounts."""
    engine = Engine(shard_id=shard_id, max_open_orders=40)
    assert not isinstance(engine.create_asset("USDT", 6), Reject)
    # BTC: lot 0.001 of an 8-decimal asset -> 100_000 units a lot; tick 0.1 x lot 0.001 = 0.0001 USDT.
    assert not isinstance(engine.create_market("BTC-USDT", "0.1", "0.001", "0.002", "5", 2, 7, 1), Reject)
    # ETH: 18 decimals would overflow orjson's 64-bit ints in big balances; 8 is the default.
    assert not isinstance(engine.create_market("ETH-USDT", "0.01", "0.01", "0", "0", -3, 5, 2), Reject)
    for account_id in FLOW_ACCOUNTS:
        for asset, amount in (("USDT", 50_000_000_000), ("BTC", 50_000_000), ("ETH", 2_000_000_000)):
            assert not isinstance(engine.deposit(account_id, asset, amount, 3), Reject)
    return engine


class RandomFlow:
    """Generate commands from a seeded random.Random; each is (method name, positional args)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ts = 10
        self.orders: list[tuple[int, int, str]] = []  # (order_id, account_id, market), newest last
        self.client_ids = [f"c{i}" for i in range(6)]

    def note(self, result) -> None:
        """Remember orders a later cancel or amend may target."""
        if isinstance(result, Order):
            self.orders.append((result.order_id, result.account_id, result.market))
            del self.orders[:-60]

    def _target(self, engine: Engine, account: int) -> tuple[int, int, int]:
        """Pick an order (mostly an open one): its id, mostly its owner, its market's mid."""
        if engine.orders and self.rng.random() < 0.8:
            order = engine.orders[self.rng.choice(list(engine.orders))]
            order_id, owner, symbol = order.order_id, order.account_id, order.market
        else:
            order_id, owner, symbol = self.rng.choice(self.orders)
        return order_id, owner if self.rng.random() < 0.9 else account, FLOW_MARKETS[symbol][0]

    def command(self, engine: Engine) -> tuple[str, tuple]:
        """Return the next command; `engine` is only read, to aim amends and cancels at open orders."""
        rng = self.rng
        self.ts += rng.randint(1, 1_000)
        ts = self.ts
        account = rng.choice(FLOW_ACCOUNTS)
        symbol = rng.choice(list(FLOW_MARKETS))
        mid = FLOW_MARKETS[symbol][0]
        roll = rng.random()
        if roll < 0.55:
            return "place", self._place(account, symbol, mid, ts)
        if roll < 0.70 and self.orders:
            order_id, account, mid = self._target(engine, account)
            quantity = rng.choice([None, rng.randint(0, 12)])
            price = rng.choice([None, mid + rng.randint(-6, 6)]) if quantity is not None else mid + rng.randint(-6, 6)
            return "amend", (account, order_id, None, quantity, price, ts)
        if roll < 0.82 and self.orders:
            if rng.random() < 0.3:
                return "cancel", (account, None, rng.choice(self.client_ids), ts)
            order_id, account, _ = self._target(engine, account)
            return "cancel", (account, rng.choice([order_id, order_id, 12345 << 10]), None, ts)
        if roll < 0.86:
            return "cancel_all", (account, rng.choice([None, symbol, "NOPE-USDT"]), ts)
        if roll < 0.92:
            asset = rng.choice(["USDT", "BTC", "ETH", "DOGE"])
            return rng.choice(["deposit", "withdraw"]), (account, asset, rng.choice([0, rng.randint(1, 10**9)]), ts)
        if roll < 0.94:
            return "set_halted", (symbol, rng.random() < 0.25, ts)
        return "place", self._place(account, symbol, mid, ts)

    def _place(self, account: int, symbol: str, mid: int, ts: int) -> tuple:
        rng = self.rng
        side = rng.choice([BUY, SELL])
        stp = rng.choice(STP_MODES)
        client_order_id = rng.choice(self.client_ids) if rng.random() < 0.25 else None
        if rng.random() < 0.8:
            tif = rng.choices([GTC, IOC, FOK], [6, 2, 2])[0]
            post_only = tif == GTC and rng.random() < 0.15
            price = mid + rng.randint(-6, 6)
            return (account, symbol, side, LIMIT, tif, price, rng.randint(1, 8), None, post_only, stp, client_order_id, ts)
        tif = rng.choice([IOC, FOK])
        protection = rng.choice([None, mid + rng.randint(-6, 6)])
        if side == BUY and tif == IOC and rng.random() < 0.4:
            return (account, symbol, side, MARKET, tif, protection, None, rng.randint(1, 400_000_000), False, stp, client_order_id, ts)
        return (account, symbol, side, MARKET, tif, protection, rng.randint(1, 10), None, False, stp, client_order_id, ts)


def run(engine: Engine, command: tuple[str, tuple]):
    name, args = command
    return getattr(engine, name)(*args)


# -------------------------------------------------------------------- scenario fixtures

ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
FUNDS_BTC = 100_000  # 1,000.00 BTC = 1,000 lots
FUNDS_USDT = 100_000_000  # 1,000,000.00 USDT


def funded(**market_options) -> Exchange:
    """The standard market with ALICE, BOB, CAROL and DAVE each holding FUNDS_BTC and FUNDS_USDT."""
    ex = Exchange(**market_options)
    for account_id in (ALICE, BOB, CAROL, DAVE):
        ex.fund(account_id, btc=FUNDS_BTC, usdt=FUNDS_USDT)
    return ex


def trade_id(counter: int, shard_id: int = 0) -> int:
    """The id of the `counter`-th trade of a shard."""
    return (counter << 10) | shard_id


def wallet(btc_delta: int = 0, btc_locked: int = 0, usdt_delta: int = 0, usdt_locked: int = 0) -> dict:
    """Expected balances of a funded account: (available, locked) after the given changes in units.

    The deltas are changes to the account's total; what is locked comes out of available.
    """
    return {
        "BTC": (FUNDS_BTC + btc_delta - btc_locked, btc_locked),
        "USDT": (FUNDS_USDT + usdt_delta - usdt_locked, usdt_locked),
    }
