"""Differential test: the engine against a tiny naive reference matcher kept in this file.

The reference knows nothing of levels, queues, locks or fees: a plain list of resting orders
and O(n) scans for the best maker (best price, then earliest arrival). Random flows of
limit orders (GTC / IOC), cancels and amends, with self-trades allowed (stp none) and zero
fees, must give the same accept/reject decisions, the same trades (price, quantity, maker
and taker ids, in order) and the same L2 after every command.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import example, given, settings

from common.types import OrderType, Side, StpMode, TimeInForce
from matcher.engine import Engine, Reject

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC
PAIR = "X-Y"
ACCOUNTS = (1, 2, 3)


class NaiveOrder:
    def __init__(self, order_id, account_id, side, price, quantity, arrival):
        self.order_id = order_id
        self.account_id = account_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.filled = 0
        self.arrival = arrival

    @property
    def remaining(self):
        return self.quantity - self.filled


class NaiveMatcher:
    """Price-time priority by brute force."""

    def __init__(self):
        self.resting: list[NaiveOrder] = []
        self.arrivals = 0

    def _match(self, taker: NaiveOrder) -> list[tuple]:
        trades = []
        while taker.remaining:
            if taker.side == BUY:
                makers = [o for o in self.resting if o.side == SELL and o.price <= taker.price]
                key = lambda o: (o.price, o.arrival)  # noqa: E731
            else:
                makers = [o for o in self.resting if o.side == BUY and o.price >= taker.price]
                key = lambda o: (-o.price, o.arrival)  # noqa: E731
            if not makers:
                break
            maker = min(makers, key=key)
            lots = min(taker.remaining, maker.remaining)
            maker.filled += lots
            taker.filled += lots
            trades.append((maker.price, lots, maker.order_id, taker.order_id))
            if not maker.remaining:
                self.resting.remove(maker)
        return trades

    def _rest(self, order: NaiveOrder) -> None:
        self.arrivals += 1
        order.arrival = self.arrivals
        self.resting.append(order)

    def place(self, order_id, account_id, side, price, quantity, tif) -> list[tuple]:
        taker = NaiveOrder(order_id, account_id, side, price, quantity, 0)
        trades = self._match(taker)
        if taker.remaining and tif == GTC:
            self._rest(taker)
        return trades

    def _find(self, account_id, order_id):
        for order in self.resting:
            if order.order_id == order_id and order.account_id == account_id:
                return order
        return None

    def cancel(self, account_id, order_id) -> bool:
        order = self._find(account_id, order_id)
        if order is not None:
            self.resting.remove(order)
        return order is not None

    def amend(self, account_id, order_id, quantity, price) -> list[tuple] | None:
        """Return the trades, or None when the amend is refused."""
        order = self._find(account_id, order_id)
        if order is None or (quantity is None and price is None):
            return None
        new_total = order.quantity if quantity is None else quantity
        new_price = order.price if price is None else price
        if new_total <= order.filled or (new_price == order.price and new_total == order.quantity):
            return None
        if new_price == order.price and new_total < order.quantity:
            order.quantity = new_total  # keeps its arrival: same place in the queue
            return []
        self.resting.remove(order)
        order.quantity, order.price = new_total, new_price
        trades = self._match(order)
        if order.remaining:
            self._rest(order)
        return trades

    def depth(self):
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for order in self.resting:
            side = bids if order.side == BUY else asks
            side[order.price] = side.get(order.price, 0) + order.remaining
        return sorted(bids.items(), reverse=True), sorted(asks.items())


def new_engine() -> Engine:
    engine = Engine(shard_id=1, max_open_orders=10_000)
    engine.create_asset("X", 0)
    engine.create_asset("Y", 0)
    assert not isinstance(engine.create_market(PAIR, "1", "1", "0", "0", 0, 0, 1), Reject)
    for account_id in ACCOUNTS:
        engine.deposit(account_id, "X", 10**9, 1)
        engine.deposit(account_id, "Y", 10**12, 1)
    return engine


def engine_trades(engine: Engine) -> list[tuple]:
    """(price, quantity, maker id, taker id) of the last command's trades, in trade order."""
    trades: dict[int, dict] = {}
    for update in engine.private:
        for fill in update.fills:
            trade = trades.setdefault(fill.trade_id, {"price": fill.price, "quantity": fill.quantity})
            trade["maker" if fill.liquidity == 0 else "taker"] = fill.order.order_id
    return [(t["price"], t["quantity"], t["maker"], t["taker"]) for _, t in sorted(trades.items())]


# A place is (account, side, distance 0-3 from the mid of 100, quantity, tif, crossing): most
# orders are passive (on their own side of the mid), so levels hold queues several orders deep.
PLACE = st.tuples(
    st.just("place"), st.sampled_from(ACCOUNTS), st.sampled_from([BUY, SELL]),
    st.integers(0, 3), st.integers(1, 6), st.sampled_from([GTC, GTC, IOC]), st.integers(0, 3).map(lambda n: n == 0),
)
CANCEL = st.tuples(st.just("cancel"), st.integers(0, 10**6), st.integers(0, 4))
# An amend's quantity is a change to the target's current total, so decreases are common.
AMEND = st.tuples(st.just("amend"), st.integers(0, 10**6), st.none() | st.integers(-3, 3), st.none() | st.integers(97, 103))
# Mostly places (st.one_of would pick each kind equally and cancels would drain the book).
OPERATION = st.sampled_from(["place"] * 6 + ["cancel", "amend", "amend"]).flatmap(
    {"place": PLACE, "cancel": CANCEL, "amend": AMEND}.__getitem__
)
FLOWS = st.lists(OPERATION, min_size=20, max_size=150)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(FLOWS)
@example([
    # Amend up at the same price loses priority, then a sweep must hit the other order first.
    ("place", 1, BUY, 0, 2, GTC, False), ("place", 2, BUY, 0, 2, GTC, False),
    ("amend", 0, 1, None), ("place", 3, SELL, 1, 3, GTC, True),
])
@example([
    # Amend down keeps priority: the next taker still meets the amended order first.
    ("place", 1, SELL, 0, 3, GTC, False), ("place", 2, SELL, 0, 2, GTC, False),
    ("amend", 0, -2, None), ("place", 3, BUY, 0, 1, GTC, True),
])
@example([
    # A crossing amend trades at the makers' prices, best first, then rests its remainder.
    ("place", 1, SELL, 1, 3, GTC, False), ("place", 2, SELL, 0, 2, GTC, False), ("place", 3, BUY, 2, 7, GTC, False),
    ("amend", 2, None, 101), ("place", 1, SELL, 3, 9, IOC, True),
])
def test_engine_matches_the_naive_reference(flow):
    engine, naive = new_engine(), NaiveMatcher()
    placed: list[tuple[int, int]] = []  # (order_id, account_id)

    def target(index: int) -> tuple[int, int]:
        """Mostly an open order (the engine's own index), sometimes any order ever placed."""
        open_ids = list(engine.orders)
        if open_ids and index % 5:
            order = engine.orders[open_ids[index % len(open_ids)]]
            return order.order_id, order.account_id
        return placed[index % len(placed)]

    ts = 1
    for op in flow:
        ts += 1
        if op[0] == "place":
            _, account_id, side, distance, quantity, tif, crossing = op
            price = 100 + distance if (side == BUY) == crossing else 100 - distance
            result = engine.place(account_id, PAIR, side, OrderType.LIMIT, tif, price, quantity, None, False, StpMode.NONE, None, ts)
            assert not isinstance(result, Reject), result
            expected = naive.place(result.order_id, account_id, side, price, quantity, tif)
            placed.append((result.order_id, account_id))
            assert result.filled == sum(trade[1] for trade in expected)
        elif not placed:
            continue
        elif op[0] == "cancel":
            _, index, who = op
            order_id, owner = target(index)
            account_id = owner if who else ACCOUNTS[index % len(ACCOUNTS)]
            result = engine.cancel(account_id, order_id, None, ts)
            assert (not isinstance(result, Reject)) == naive.cancel(account_id, order_id)
            expected = []
        else:
            _, index, change, price = op
            order_id, owner = target(index)
            current = engine.orders.get(order_id)
            quantity = None if change is None else (current.quantity if current is not None else 1) + change
            result = engine.amend(owner, order_id, None, quantity, price, ts)
            expected = naive.amend(owner, order_id, quantity, price)
            assert isinstance(result, Reject) == (expected is None), (op, result)
            expected = expected or []
        assert engine_trades(engine) == expected, op
        assert engine.markets[PAIR].book.depth() == naive.depth(), op
    engine.check_invariants()
