"""One market's order book: price levels, FIFO queues, and the orders resting in them.

Layout
    `asks` is a SortedDict from price (ticks) to Level; `bids` is a SortedDict from
    -price to Level, so index 0 of either side is its best price; `best_bid_level` and
    `best_ask_level` cache that index 0. Each Level keeps a running `size` (sum of its
    orders' remaining lots), a count of live orders, and a deque of orders in arrival order.

Priority
    Price first, then time: the maker at the front of the best level trades first, and
    the trade price is always the maker's price.

Removal
    Cancels and fills in the middle of a queue are lazy: the order is detached
    (`order.level = None`) and the level's size and live count drop at once, while the
    stale deque entry is skipped when it reaches the front, and the deque is compacted
    when stale entries outnumber live ones. This keeps cancel O(1) without a linked list.
    An order that loses priority (amend up or to a new price) is re-queued as a new
    Order object, so a stale entry can never be mistaken for a live one.

Amend semantics (applied by the engine through these primitives)
    Lowering the quantity at the same price keeps the queue position (`reduce`); any
    other change detaches the order and queues a fresh copy at the back.

Complexity
    add: O(log L) for a new level, O(1) otherwise; cancel: O(1) amortised, O(log L) when
    the level empties; best price: O(1); L = number of levels on that side.

The book does no I/O, reads no clock and knows nothing of balances: the engine drives it.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

from common.types import OrderStatus, Side

_BUY = Side.BUY
_OPEN_LIMIT = OrderStatus.PARTIALLY_FILLED


class Order:
    """An order as the matcher keeps it; every number is an integer (ticks, lots, units)."""

    __slots__ = (
        "order_id",
        "account_id",
        "market",
        "side",
        "order_type",
        "price",
        "quantity",
        "quote_quantity",
        "remaining",
        "filled",
        "filled_quote",
        "time_in_force",
        "post_only",
        "stp",
        "client_order_id",
        "status",
        "locked",
        "created_ns",
        "updated_ns",
        "level",
    )

    def __init__(
        self,
        order_id,
        account_id,
        market,
        side,
        order_type,
        price,
        quantity,
        quote_quantity,
        time_in_force,
        post_only,
        stp,
        client_order_id,
        ts_ns,
    ):
        self.order_id = order_id
        self.account_id = account_id
        self.market = market
        self.side = side
        self.order_type = order_type
        self.price = price
        self.quantity = quantity
        self.quote_quantity = quote_quantity
        self.remaining = quantity
        self.filled = 0
        self.filled_quote = 0
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.stp = stp
        self.client_order_id = client_order_id
        self.status = OrderStatus.NEW
        self.locked = 0
        self.created_ns = ts_ns
        self.updated_ns = ts_ns
        self.level = None

    def requeued(self) -> "Order":
        """Return a copy that can be queued afresh; this object becomes a stale queue entry."""
        clone = Order.__new__(Order)
        for name in Order.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.level = None
        return clone

    @property
    def is_open(self) -> bool:
        return self.status <= _OPEN_LIMIT

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id}, acct={self.account_id}, {Side(self.side).name} "
            f"{self.remaining}/{self.quantity}@{self.price}, {OrderStatus(self.status).name})"
        )


class Level:
    """The orders resting at one price, in arrival order."""

    __slots__ = ("price", "size", "live", "queue")

    def __init__(self, price: int) -> None:
        self.price = price
        self.size = 0
        self.live = 0
        self.queue: deque[Order] = deque()

    def front(self) -> Order:
        """Return the oldest live order, dropping stale entries on the way."""
        queue = self.queue
        order = queue[0]
        while order.level is not self:
            queue.popleft()
            order = queue[0]
        return order

    def orders(self) -> list[Order]:
        """Return the live orders in priority order."""
        return [order for order in self.queue if order.level is self]


class Book:
    """Both sides of one market; tracks which levels changed since the last `take_changes`.

    `best_bid_level` / `best_ask_level` cache index 0 of each side (None when the side is
    empty): `SortedDict.peekitem(0)` costs about 200 ns, and the matcher needs the best
    level on every order, so the cache is refreshed only when a level is created or dropped.
    """

    __slots__ = ("market", "bids", "asks", "best_bid_level", "best_ask_level", "changed_bids", "changed_asks")

    def __init__(self, market: str) -> None:
        self.market = market
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.best_bid_level: Level | None = None
        self.best_ask_level: Level | None = None
        # Price -> the level now at that price. A level that went away keeps size 0, so
        # `take_changes` reads sizes straight from these objects without a lookup.
        self.changed_bids: dict[int, Level] = {}
        self.changed_asks: dict[int, Level] = {}

    def add(self, order: Order) -> None:
        """Queue `order` at the back of its price level."""
        price = order.price
        if order.side == _BUY:
            levels = self.bids
            level = levels.get(-price)
            if level is None:
                level = levels[-price] = Level(price)
                best = self.best_bid_level
                if best is None or price > best.price:
                    self.best_bid_level = level
            self.changed_bids[price] = level
        else:
            levels = self.asks
            level = levels.get(price)
            if level is None:
                level = levels[price] = Level(price)
                best = self.best_ask_level
                if best is None or price < best.price:
                    self.best_ask_level = level
            self.changed_asks[price] = level
        level.queue.append(order)
        level.size += order.remaining
        level.live += 1
        order.level = level

    def remove(self, order: Order) -> None:
        """Detach `order` from its level (lazily) and drop the level when it empties."""
        level = order.level
        order.level = None
        level.size -= order.remaining
        level.live -= 1
        if not level.live:
            price = level.price
            if order.side == _BUY:
                self.changed_bids[price] = level
                levels = self.bids
                del levels[-price]
                if level is self.best_bid_level:
                    self.best_bid_level = levels.peekitem(0)[1] if levels else None
            else:
                self.changed_asks[price] = level
                levels = self.asks
                del levels[price]
                if level is self.best_ask_level:
                    self.best_ask_level = levels.peekitem(0)[1] if levels else None
            return
        if order.side == _BUY:
            self.changed_bids[level.price] = level
        else:
            self.changed_asks[level.price] = level
        if len(level.queue) > 2 * level.live + 16:
            level.queue = deque(level.orders())

    def reduce(self, order: Order, lots: int) -> None:
        """Take `lots` off a resting order's remaining quantity, keeping its queue position."""
        order.remaining -= lots
        level = order.level
        level.size -= lots
        if order.side == _BUY:
            self.changed_bids[level.price] = level
        else:
            self.changed_asks[level.price] = level

    def best_bid(self) -> int | None:
        level = self.best_bid_level
        return level.price if level is not None else None

    def best_ask(self) -> int | None:
        level = self.best_ask_level
        return level.price if level is not None else None

    def would_cross(self, side: int, price: int) -> bool:
        """Tell whether a limit order at `price` would trade on arrival."""
        if side == _BUY:
            level = self.best_ask_level
            return level is not None and level.price <= price
        level = self.best_bid_level
        return level is not None and level.price >= price

    def take_changes(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Return the absolute size of every level changed since the last call (0 = gone)."""
        bids = asks = ()
        # Most commands change one level a side: skip the sort and the comprehension then.
        changed = self.changed_bids
        if changed:
            if len(changed) == 1:
                ((price, level),) = changed.items()
                bids = [(price, level.size)]
            else:
                bids = [(price, changed[price].size) for price in sorted(changed, reverse=True)]
            self.changed_bids = {}
        changed = self.changed_asks
        if changed:
            if len(changed) == 1:
                ((price, level),) = changed.items()
                asks = [(price, level.size)]
            else:
                asks = [(price, changed[price].size) for price in sorted(changed)]
            self.changed_asks = {}
        return bids, asks

    def depth(self, limit: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Return (bids, asks) as (price, size) pairs, best first, at most `limit` levels a side."""
        bids = [(level.price, level.size) for level in self.bids.values()[:limit]]
        asks = [(level.price, level.size) for level in self.asks.values()[:limit]]
        return bids, asks

    def resting_orders(self):
        """Yield every resting order: bids best first, then asks best first, FIFO within a level."""
        for level in self.bids.values():
            yield from level.orders()
        for level in self.asks.values():
            yield from level.orders()

    def check_invariants(self) -> None:
        """Raise AssertionError if the book is crossed or any level disagrees with its orders."""
        for key, level in self.bids.items():
            _check_level(level, -key, Side.BUY)
        for key, level in self.asks.items():
            _check_level(level, key, Side.SELL)
        for levels, cached in ((self.bids, self.best_bid_level), (self.asks, self.best_ask_level)):
            if cached is not (levels.peekitem(0)[1] if levels else None):
                raise AssertionError(f"{self.market}: cached best level {cached and cached.price} is not index 0")
        best_bid, best_ask = self.best_bid(), self.best_ask()
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            raise AssertionError(f"{self.market}: crossed book {best_bid} >= {best_ask}")


def _check_level(level: Level, price: int, side: Side) -> None:
    orders = level.orders()
    if level.price != price:
        raise AssertionError(f"level keyed {price} holds price {level.price}")
    if not orders or len(orders) != level.live:
        raise AssertionError(f"level {price}: live count {level.live} but {len(orders)} orders")
    if level.size != sum(order.remaining for order in orders):
        raise AssertionError(f"level {price}: size {level.size} != sum of remaining quantities")
    for order in orders:
        if order.price != price or order.side != side or order.remaining <= 0 or not order.is_open:
            raise AssertionError(f"level {price}: misplaced order {order!r}")
