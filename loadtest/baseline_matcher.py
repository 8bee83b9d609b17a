"""The smallest honest price-time matcher: a yardstick for `bench_matcher.py`, not a product.

One `SortedDict` per side from price key to a FIFO `deque` of orders (bids keyed by
-price so index 0 is the best on both sides), an order-id dict for cancels, lazy removal
(a canceled order is flagged and skipped when it reaches the front). No accounts, no
fees, no events, no sequence numbers, no validation: it only counts trades. What the
full engine costs beyond this is the price of the ledger and the event stream.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

BUY = 0
SELL = 1


class BaselineOrder:
    __slots__ = ("order_id", "side", "price", "remaining", "live")

    def __init__(self, order_id: int, side: int, price: int, remaining: int) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.remaining = remaining
        self.live = True


class BaselineMatcher:
    """Limit orders and cancels on one book; `trades` and `traded_lots` count what happened."""

    __slots__ = ("bids", "asks", "orders", "trades", "traded_lots")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.orders: dict[int, BaselineOrder] = {}
        self.trades = 0
        self.traded_lots = 0

    def place(self, order_id: int, side: int, price: int, quantity: int) -> int:
        """Match a limit order, rest the remainder; return how many trades it made."""
        if side == BUY:
            levels, rest_levels, rest_key = self.asks, self.bids, -price
        else:
            levels, rest_levels, rest_key = self.bids, self.asks, price
        orders = self.orders
        remaining = quantity
        trades = 0
        while remaining and levels:
            key, queue = levels.peekitem(0)
            level_price = key if side == BUY else -key
            if (level_price > price) if side == BUY else (level_price < price):
                break
            while queue and remaining:
                maker = queue[0]
                if not maker.live:
                    queue.popleft()
                    continue
                lots = remaining if remaining < maker.remaining else maker.remaining
                remaining -= lots
                maker.remaining -= lots
                trades += 1
                self.traded_lots += lots
                if not maker.remaining:
                    maker.live = False
                    queue.popleft()
                    del orders[maker.order_id]
            if not queue:
                del levels[key]
            elif not remaining:
                # The level may hold only canceled entries now; drop it so the best is live.
                while queue and not queue[0].live:
                    queue.popleft()
                if not queue:
                    del levels[key]
        self.trades += trades
        if remaining:
            order = BaselineOrder(order_id, side, price, remaining)
            queue = rest_levels.get(rest_key)
            if queue is None:
                queue = rest_levels[rest_key] = deque()
            queue.append(order)
            orders[order_id] = order
        return trades

    def cancel(self, order_id: int) -> bool:
        """Cancel a resting order; False when it is no longer open."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return False
        order.live = False
        levels, key = (self.bids, -order.price) if order.side == BUY else (self.asks, order.price)
        queue = levels[key]
        # Drop the level once nothing live is left, so the best price is always a live one.
        while queue and not queue[0].live:
            queue.popleft()
        if not queue:
            del levels[key]
        return True

    def best_bid(self) -> int | None:
        return -self.bids.peekitem(0)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Return (bids, asks) as (price, size) pairs, best first, for cross-checking the engine."""
        bids = [(-key, _size(queue)) for key, queue in self.bids.items()]
        asks = [(key, _size(queue)) for key, queue in self.asks.items()]
        return [level for level in bids if level[1]], [level for level in asks if level[1]]


def _size(queue: deque) -> int:
    return sum(order.remaining for order in queue if order.live)
