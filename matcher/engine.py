"""The matching engine: markets, books and the ledger behind one method per command.

Every command method takes integers (ticks, lots, asset units) and a timestamp in
nanoseconds, and returns either the affected object or a `Reject`. A rejected command
changes nothing at all (no id, no sequence number, no balance), so only accepted commands
need journaling and replaying them rebuilds exactly the same state.

After each command, `public` holds one `PublicUpdate` per market the command touched
(stamped with that market's next gapless sequence number) and `private` one
`PrivateUpdate` per account (stamped with that account's next sequence number). They
reference live orders: encode them before the next command runs.

Balances: a buy locks price x quantity plus the maximum taker fee in the quote asset (the
headroom shrinks as the order fills and is returned when it closes); a sell locks its
quantity in the base asset; a market buy locks the quote it may spend (its
`quote_quantity`, or the cost of its quantity against the book). Fees are charged in the
asset each side receives and credited to the fee account.
"""

from __future__ import annotations

from collections import OrderedDict

from common.types import (
    ASSET_SYMBOL,
    PAIR_SYMBOL,
    InexactValue,
    Liquidity,
    OrderStatus,
    OrderType,
    RejectCode,
    Side,
    Step,
    StpMode,
    TimeInForce,
)
from matcher.accounts import FEE_ACCOUNT_ID, Account, Ledger, fee_for
from matcher.book import Book, Order

BUY = Side.BUY
SELL = Side.SELL
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
GTC = TimeInForce.GTC
FOK = TimeInForce.FOK
NEW = OrderStatus.NEW
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CANCELED = OrderStatus.CANCELED
EXPIRED = OrderStatus.EXPIRED
STP_NONE = StpMode.NONE
EXPIRE_MAKER = StpMode.EXPIRE_MAKER
EXPIRE_TAKER = StpMode.EXPIRE_TAKER
EXPIRE_BOTH = StpMode.EXPIRE_BOTH
DECREMENT = StpMode.DECREMENT
MAKER = Liquidity.MAKER
TAKER = Liquidity.TAKER

SHARD_BITS = 10
MAX_SHARDS = 1 << SHARD_BITS
MAX_FEE_BPS = 1_000
DEFAULT_ASSET_DECIMALS = 8
MAX_ASSET_DECIMALS = 18
RECENT_CLOSED_LIMIT = 100_000
# A quote-quantity market buy has no lot count; it trades until its budget runs out.
_UNBOUNDED = 1 << 62
# Calling OrderStatus(value) costs about half a microsecond; this lookup takes ints or members.
_STATUS_NAMES = {status: status.name for status in OrderStatus}


class Reject:
    """A refused command: a code from RejectCode, a human message and optional details."""

    __slots__ = ("code", "message", "details")

    def __init__(self, code: RejectCode, message: str, details: dict | None = None) -> None:
        self.code = code
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"Reject({self.code.name}, {self.message!r})"


class Market:
    """A market's rules, integer conversion factors, status, sequence number and book."""

    __slots__ = (
        "symbol",
        "base",
        "quote",
        "tick",
        "lot",
        "base_per_lot",
        "quote_per_tick_lot",
        "min_quantity",
        "min_notional",
        "maker_fee_bps",
        "taker_fee_bps",
        "lock_fee_bps",
        "halted",
        "seq",
        "book",
        "trades",
        "status_changed",
    )

    def __init__(self, symbol, base, quote, tick, lot, base_per_lot, quote_per_tick_lot,
                 min_quantity, min_notional, maker_fee_bps, taker_fee_bps):
        self.symbol = symbol
        self.base = base
        self.quote = quote
        self.tick: Step = tick
        self.lot: Step = lot
        self.base_per_lot = base_per_lot
        self.quote_per_tick_lot = quote_per_tick_lot
        self.min_quantity = min_quantity
        self.min_notional = min_notional
        self.maker_fee_bps = maker_fee_bps
        self.taker_fee_bps = taker_fee_bps
        self.lock_fee_bps = max(taker_fee_bps, maker_fee_bps, 0)
        self.halted = False
        self.seq = 0
        self.book = Book(symbol)
        self.trades: list = []
        self.status_changed = False

    def buy_lock(self, price: int, lots: int) -> int:
        """Return what a buy of `lots` at `price` must hold locked: notional plus fee headroom."""
        notional = price * lots * self.quote_per_tick_lot
        bps = self.lock_fee_bps
        return notional - (-notional * bps // 10_000) if bps else notional


class PublicUpdate:
    """What one command changed in one market: level sizes, trades, status; one seq."""

    __slots__ = ("market", "seq", "ts_ns", "bids", "asks", "trades", "halted")

    def __init__(self, market, seq, ts_ns, bids, asks, trades, halted):
        self.market = market
        self.seq = seq
        self.ts_ns = ts_ns
        self.bids = bids
        self.asks = asks
        self.trades = trades
        self.halted = halted


class PrivateUpdate:
    """What one command changed for one account: orders, fills, balances; one seq."""

    __slots__ = ("account_id", "seq", "ts_ns", "orders", "fills", "balances")

    def __init__(self, account_id, seq, ts_ns, orders, fills, balances):
        self.account_id = account_id
        self.seq = seq
        self.ts_ns = ts_ns
        self.orders = orders
        self.fills = fills
        self.balances = balances


class Fill:
    """One side of a trade as its owner sees it; `fee` is negative for a rebate."""

    __slots__ = ("order", "trade_id", "price", "quantity", "fee", "fee_asset", "liquidity")

    def __init__(self, order, trade_id, price, quantity, fee, fee_asset, liquidity):
        self.order = order
        self.trade_id = trade_id
        self.price = price
        self.quantity = quantity
        self.fee = fee
        self.fee_asset = fee_asset
        self.liquidity = liquidity


class _Touched(PrivateUpdate):
    """Per-account collector of what the running command changed; `_finish` publishes it.

    It is the PrivateUpdate itself rather than a separate object copied into one at the
    end: building an object costs more than anything else a command does per account.
    While the command runs `orders` is a dict by order id (an order touched twice is
    listed once) and `assets` collects the assets whose balances moved.
    """

    __slots__ = ("account", "assets")

    def __init__(self, account: Account) -> None:
        self.account = account
        self.account_id = account.account_id
        self.orders: dict[int, Order] = {}
        self.fills: list[Fill] = []
        self.assets: dict[str, None] = {}


class Engine:
    """All markets and balances of one matcher shard; commands in, updates out."""

    def __init__(self, shard_id: int = 0, max_open_orders: int = 1_000) -> None:
        if not 0 <= shard_id < MAX_SHARDS:
            raise ValueError(f"shard_id must be in 0..{MAX_SHARDS - 1}")
        self.shard_id = shard_id
        self.max_open_orders = max_open_orders
        self.assets: dict[str, Step] = {}
        self.markets: dict[str, Market] = {}
        self.ledger = Ledger()
        self.orders: dict[int, Order] = {}
        self.recent_closed: OrderedDict[int, Order] = OrderedDict()
        # (account id, client order id) -> the newest of recent_closed with that client id
        self.recent_closed_by_client_id: dict[tuple[int, str], Order] = {}
        self.bot_keys: dict[str, int] = {}
        self.order_counter = 0
        self.trade_counter = 0
        self.public: list[PublicUpdate] = []
        self.private: list[PrivateUpdate] = []
        self._dirty_markets: list[Market] = []
        self._touched: dict[int, _Touched] = {}

    # ------------------------------------------------------------------ ids and events

    def _touch(self, account: Account) -> _Touched:
        touched = self._touched.get(account.account_id)
        if touched is None:
            touched = self._touched[account.account_id] = _Touched(account)
        return touched

    def _mark(self, market: Market) -> None:
        if market not in self._dirty_markets:
            self._dirty_markets.append(market)

    def _finish(self, ts: int) -> None:
        """Stamp sequence numbers and turn the running command's changes into updates."""
        public = []
        for market in self._dirty_markets:
            bids, asks = market.book.take_changes()
            trades = market.trades
            if not (bids or asks or trades or market.status_changed):
                continue
            market.trades = []
            market.seq += 1
            halted = market.halted if market.status_changed else None
            market.status_changed = False
            public.append(PublicUpdate(market.symbol, market.seq, ts, bids, asks, trades, halted))
        self.public = public
        self._dirty_markets = []
        private = []
        for touched in self._touched.values():
            account = touched.account
            if touched.account_id == FEE_ACCOUNT_ID:
                continue
            touched.seq = account.seq = account.seq + 1
            touched.ts_ns = ts
            touched.orders = list(touched.orders.values())
            available, locked = account.available, account.locked
            # A loop, not a comprehension: for the one or two assets of a command it is
            # faster on CPython 3.11, where a comprehension is a nested function call.
            balances = touched.balances = []
            for asset in touched.assets:
                balances.append((asset, available.get(asset, 0), locked.get(asset, 0)))
            private.append(touched)
        self.private = private
        self._touched = {}

    def _no_updates(self) -> None:
        self.public = []
        self.private = []

    # ------------------------------------------------------------------ balances

    def _lock(self, account: Account, asset: str, amount: int) -> None:
        account.available[asset] -= amount
        account.locked[asset] = account.locked.get(asset, 0) + amount

    def _release(self, order: Order, account: Account, asset: str, amount: int) -> None:
        if amount:
            order.locked -= amount
            account.locked[asset] -= amount
            account.available[asset] = account.available.get(asset, 0) + amount
            self._touch(account).assets[asset] = None

    def _trim_buy_lock(self, order: Order, account: Account, market: Market) -> None:
        """Hand back whatever a limit buy holds beyond what its remaining quantity needs."""
        self._release(order, account, market.quote, order.locked - market.buy_lock(order.price, order.remaining))

    def _close(self, order: Order, status: OrderStatus, market: Market, account: Account) -> None:
        """Finish an order: off the book, lock returned, out of the open-order indexes."""
        if order.level is not None:
            market.book.remove(order)
        order.status = status
        order.remaining = 0
        touched = self._touch(account)
        locked = order.locked
        if locked:
            asset = market.quote if order.side == BUY else market.base
            order.locked = 0
            account.locked[asset] -= locked
            available = account.available
            available[asset] = available.get(asset, 0) + locked
            touched.assets[asset] = None
        order_id = order.order_id
        if self.orders.pop(order_id, None) is not None:
            del account.open_orders[order_id]
            if order.client_order_id is not None:
                del account.client_ids[order.client_order_id]
        self.remember_closed(order)
        touched.orders[order_id] = order

    # ------------------------------------------------------------------ orders

    def place(
        self,
        account_id: int,
        symbol: str,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int | None,
        quantity: int | None,
        quote_quantity: int | None,
        post_only: bool,
        stp: StpMode,
        client_order_id: str | None,
        ts: int,
    ) -> Order | Reject:
        """Place a limit or market order; return it (possibly already FILLED/EXPIRED) or a Reject."""
        market = self.markets.get(symbol)
        if market is None:
            return self._reject(RejectCode.UNKNOWN_MARKET, f"unknown market {symbol}", {"pair": symbol})
        if market.halted:
            return self._reject(RejectCode.MARKET_HALTED, f"{symbol} is halted", {"pair": symbol})
        if account_id == FEE_ACCOUNT_ID:
            return self._reject(RejectCode.FORBIDDEN, "the fee account does not trade")
        shape = _check_shape(side, order_type, time_in_force, price, quantity, quote_quantity, post_only)
        if shape is not None:
            return self._reject(RejectCode.INVALID_FIELD, shape[1], {"field": shape[0]})
        if quantity is not None and quantity < market.min_quantity:
            return self._reject(
                RejectCode.BELOW_MIN_QUANTITY,
                f"quantity is below the minimum {market.lot.format(market.min_quantity)}",
                {"min_quantity": market.lot.format(market.min_quantity)},
            )
        if market.min_notional:
            notional = quote_quantity
            if price is not None and quantity is not None:
                notional = price * quantity * market.quote_per_tick_lot
            if notional is not None and notional < market.min_notional:
                return self._reject(RejectCode.BELOW_MIN_NOTIONAL, "order value is below the market's minimum notional")
        account = self.ledger.accounts.get(account_id)
        if client_order_id is not None and account is not None and client_order_id in account.client_ids:
            return self._reject(
                RejectCode.DUPLICATE_CLIENT_ORDER_ID,
                f"an open order already uses client_order_id {client_order_id}",
                {"client_order_id": client_order_id},
            )
        book = market.book
        resting = order_type == LIMIT and time_in_force == GTC
        if resting and account is not None and len(account.open_orders) >= self.max_open_orders:
            return self._reject(RejectCode.TOO_MANY_OPEN_ORDERS, f"at most {self.max_open_orders} open orders")
        if post_only and book.would_cross(side, price):
            return self._reject(RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity")

        if side == SELL:
            asset, lock = market.base, quantity * market.base_per_lot
        elif quote_quantity is not None:
            asset, lock = market.quote, quote_quantity
        elif price is not None:
            asset, lock = market.quote, market.buy_lock(price, quantity)
        else:
            skip = account_id if stp == EXPIRE_MAKER and account is not None and account.open_orders else None
            asset, lock = market.quote, _cost_of(book.asks, quantity, market.quote_per_tick_lot, skip)
        available = account.available.get(asset, 0) if account is not None else 0
        if lock > available:
            return self._reject(
                RejectCode.INSUFFICIENT_BALANCE,
                f"insufficient {asset}: need {self.assets[asset].format(lock)}, available {self.assets[asset].format(available)}",
                {"asset": asset},
            )

        if account is None:
            account = self.ledger.account(account_id)
        self.order_counter += 1  # ids carry the shard in their low SHARD_BITS bits
        order = Order(
            (self.order_counter << SHARD_BITS) | self.shard_id, account_id, symbol, side, order_type, price or 0,
            quantity if quantity is not None else _UNBOUNDED, quote_quantity,
            time_in_force, post_only, stp, client_order_id, ts,
        )
        touched = self._touched.get(account_id)
        if touched is None:
            touched = self._touched[account_id] = _Touched(account)
        touched.orders[order.order_id] = order
        if market not in self._dirty_markets:
            self._dirty_markets.append(market)
        if time_in_force == FOK and _fillable(book, order) < quantity:
            order.status = EXPIRED
            order.remaining = 0
            self.remember_closed(order)
            self._finish(ts)
            return order

        if lock:
            account.available[asset] -= lock
            locked = account.locked
            locked[asset] = locked.get(asset, 0) + lock
            order.locked = lock
            touched.assets[asset] = None
        taker_expired = self._match(market, order, account, ts)
        self._settle_taker(market, order, account, resting, taker_expired)
        self._finish(ts)
        return order

    def _settle_taker(
        self, market: Market, order: Order, account: Account, may_rest: bool, stp_expired: bool
    ) -> None:
        """After matching: rest a GTC remainder, or close the order with its final status.

        An order that self-trade prevention stopped is EXPIRED even when nothing is left of it.
        """
        if order.quote_quantity is not None:
            self._close(order, FILLED if self._budget_spent(market, order, stp_expired) else EXPIRED, market, account)
            order.quantity = order.filled
        elif not order.remaining:
            self._close(order, EXPIRED if stp_expired or order.filled != order.quantity else FILLED, market, account)
        elif may_rest and not stp_expired:
            if order.filled:
                order.status = PARTIALLY_FILLED
                # Only a fill can leave a limit buy holding more than its remainder needs.
                if order.side == BUY:
                    self._trim_buy_lock(order, account, market)
            else:
                order.status = NEW
            market.book.add(order)
            order_id = order.order_id
            self.orders[order_id] = order
            account.open_orders[order_id] = order
            if order.client_order_id is not None:
                account.client_ids[order.client_order_id] = order
        else:
            self._close(order, EXPIRED, market, account)

    @staticmethod
    def _budget_spent(market: Market, order: Order, stp_expired: bool) -> bool:
        """Tell whether a quote-quantity market buy spent its budget as far as the book allows.

        True when what is left cannot buy one more lot at the next ask it could take, or, once
        no such ask remains, at the average price it paid; False when nothing traded.
        """
        if stp_expired or not order.filled:
            return False
        per_tick_lot = market.quote_per_tick_lot
        best = market.book.best_ask_level
        if best is not None and (not order.price or best.price <= order.price):
            return order.locked < best.price * per_tick_lot
        return order.locked * order.filled < order.filled_quote

    def remember_closed(self, order: Order) -> None:
        """Keep a closed order for lookups, by id and by client id, among the newest RECENT_CLOSED_LIMIT."""
        recent = self.recent_closed
        recent[order.order_id] = order
        by_client_id = self.recent_closed_by_client_id
        if order.client_order_id is not None:
            by_client_id[(order.account_id, order.client_order_id)] = order
        if len(recent) > RECENT_CLOSED_LIMIT:
            _, dropped = recent.popitem(last=False)
            if dropped.client_order_id is not None:
                key = (dropped.account_id, dropped.client_order_id)
                if by_client_id.get(key) is dropped:
                    del by_client_id[key]

    def _match(self, market: Market, taker: Order, account: Account, ts: int) -> bool:
        """Trade `taker` against the opposite side; return True when STP expired the taker."""
        book = market.book
        is_buy = taker.side == BUY
        limit = taker.price
        level = book.best_ask_level if is_buy else book.best_bid_level
        # Most limit orders do not cross: leave before any other set-up.
        if level is None or (limit and (level.price > limit if is_buy else level.price < limit)):
            return False
        # A market buy spends at most what it locked (its quote_quantity, or the book's cost).
        on_budget = is_buy and (not limit or taker.quote_quantity is not None)
        per_tick_lot = market.quote_per_tick_lot
        stp = taker.stp
        own = taker.account_id
        while taker.remaining:
            price = level.price
            while level.live:
                maker = level.queue[0]
                if maker.level is not level:
                    maker = level.front()
                if maker.account_id == own and stp != STP_NONE:
                    if stp == EXPIRE_MAKER:
                        self._close(maker, EXPIRED, market, account)
                        continue
                    if stp == DECREMENT:
                        self._decrement(market, taker, maker, account)
                        if not taker.remaining:
                            return True
                        continue
                    if stp == EXPIRE_BOTH:
                        self._close(maker, EXPIRED, market, account)
                    return True
                lots = taker.remaining if taker.remaining < maker.remaining else maker.remaining
                if on_budget:
                    affordable = taker.locked // (price * per_tick_lot)
                    if affordable < lots:
                        lots = affordable
                        if not lots:
                            return False
                self._fill(market, taker, account, maker, price, lots, ts)
                if not taker.remaining:
                    return False
            level = book.best_ask_level if is_buy else book.best_bid_level
            if level is None or (limit and (level.price > limit if is_buy else level.price < limit)):
                return False
        return False

    def _decrement(self, market: Market, taker: Order, maker: Order, account: Account) -> None:
        """Self-trade prevention `decrement`: shrink both orders' quantities by the overlap, no trade."""
        lots = taker.remaining if taker.remaining < maker.remaining else maker.remaining
        taker.remaining -= lots
        if taker.quote_quantity is None:
            taker.quantity -= lots
        maker.quantity -= lots
        market.book.reduce(maker, lots)
        if maker.side == SELL:
            self._release(maker, account, market.base, lots * market.base_per_lot)
        else:
            self._trim_buy_lock(maker, account, market)
        if taker.side == SELL:
            self._release(taker, account, market.base, lots * market.base_per_lot)
        elif taker.price and taker.quote_quantity is None:
            self._trim_buy_lock(taker, account, market)
        if not maker.remaining:
            self._close(maker, EXPIRED, market, account)
        else:
            self._touch(account).orders[maker.order_id] = maker

    def _fill(
        self, market: Market, taker: Order, taker_account: Account, maker: Order, price: int, lots: int, ts: int
    ) -> None:
        """Execute one trade at the maker's price and settle both sides and the fees."""
        self.trade_counter += 1
        trade_id = (self.trade_counter << SHARD_BITS) | self.shard_id
        base, quote = market.base, market.quote
        base_amount = lots * market.base_per_lot
        quote_amount = price * lots * market.quote_per_tick_lot
        accounts = self.ledger.accounts
        maker_account = accounts[maker.account_id]
        fee_account = accounts[FEE_ACCOUNT_ID]
        if taker.side == BUY:
            buyer, seller, buyer_account, seller_account = taker, maker, taker_account, maker_account
            buyer_bps, seller_bps = market.taker_fee_bps, market.maker_fee_bps
            buyer_liquidity, seller_liquidity = TAKER, MAKER
        else:
            buyer, seller, buyer_account, seller_account = maker, taker, maker_account, taker_account
            buyer_bps, seller_bps = market.maker_fee_bps, market.taker_fee_bps
            buyer_liquidity, seller_liquidity = MAKER, TAKER
        buyer_fee = fee_for(base_amount, buyer_bps)
        seller_fee = fee_for(quote_amount, seller_bps)

        buyer.locked -= quote_amount
        buyer_account.locked[quote] -= quote_amount
        available = buyer_account.available
        available[base] = available.get(base, 0) + base_amount - buyer_fee
        seller.locked -= base_amount
        seller_account.locked[base] -= base_amount
        available = seller_account.available
        available[quote] = available.get(quote, 0) + quote_amount - seller_fee
        available = fee_account.available
        available[base] = available.get(base, 0) + buyer_fee
        available[quote] = available.get(quote, 0) + seller_fee

        market.book.reduce(maker, lots)
        maker.filled += lots
        maker.filled_quote += quote_amount
        maker.updated_ns = ts
        taker.remaining -= lots
        taker.filled += lots
        taker.filled_quote += quote_amount
        taker.updated_ns = ts
        # _touch inlined for both sides: this runs once per trade.
        touched_accounts = self._touched
        touched = touched_accounts.get(buyer_account.account_id)
        if touched is None:
            touched = touched_accounts[buyer_account.account_id] = _Touched(buyer_account)
        assets = touched.assets
        if buyer.price and buyer.quote_quantity is None:
            # Hand back the fee headroom the filled lots no longer need (see _trim_buy_lock).
            excess = buyer.locked - market.buy_lock(buyer.price, buyer.remaining)
            if excess:
                buyer.locked -= excess
                buyer_account.locked[quote] -= excess
                available = buyer_account.available
                available[quote] = available.get(quote, 0) + excess
                assets[quote] = None

        market.trades.append((trade_id, price, lots, taker.side, ts))
        touched.fills.append(Fill(buyer, trade_id, price, lots, buyer_fee, base, buyer_liquidity))
        assets[base] = None
        assets[quote] = None
        touched.orders[buyer.order_id] = buyer
        touched = touched_accounts.get(seller_account.account_id)
        if touched is None:
            touched = touched_accounts[seller_account.account_id] = _Touched(seller_account)
        touched.fills.append(Fill(seller, trade_id, price, lots, seller_fee, quote, seller_liquidity))
        assets = touched.assets
        assets[base] = None
        assets[quote] = None
        touched.orders[seller.order_id] = seller
        if maker.remaining:
            maker.status = PARTIALLY_FILLED
        else:
            self._close(maker, FILLED, market, maker_account)

    def cancel(self, account_id: int, order_id: int | None, client_order_id: str | None, ts: int) -> Order | Reject:
        """Cancel one open order of the account, by order id or client order id."""
        order = self._find_open(account_id, order_id, client_order_id)
        if isinstance(order, Reject):
            return order
        market = self.markets[order.market]
        if market not in self._dirty_markets:
            self._dirty_markets.append(market)
        order.updated_ns = ts
        self._close(order, CANCELED, market, self.ledger.accounts[account_id])
        self._finish(ts)
        return order

    def cancel_all(self, account_id: int, symbol: str | None, ts: int) -> list[Order] | Reject:
        """Cancel every open order of the account, optionally only in one market."""
        if symbol is not None and symbol not in self.markets:
            return self._reject(RejectCode.UNKNOWN_MARKET, f"unknown market {symbol}", {"pair": symbol})
        account = self.ledger.accounts.get(account_id)
        if account is None:
            self._no_updates()
            return []
        canceled = [order for order in account.open_orders.values() if symbol is None or order.market == symbol]
        for order in canceled:
            market = self.markets[order.market]
            self._mark(market)
            order.updated_ns = ts
            self._close(order, CANCELED, market, account)
        self._finish(ts)
        return canceled

    def amend(
        self,
        account_id: int,
        order_id: int | None,
        client_order_id: str | None,
        quantity: int | None,
        price: int | None,
        ts: int,
    ) -> Order | Reject:
        """Change an open order's total quantity and/or price (SPEC 3: priority kept only on a same-price decrease)."""
        order = self._find_open(account_id, order_id, client_order_id)
        if isinstance(order, Reject):
            return order
        market = self.markets[order.market]
        if market.halted:
            return self._reject(RejectCode.MARKET_HALTED, f"{market.symbol} is halted", {"pair": market.symbol})
        if quantity is None and price is None:
            return self._reject(RejectCode.AMEND_REJECTED, "give a new quantity or price")
        if price is not None and price <= 0:
            return self._reject(RejectCode.INVALID_FIELD, "price must be greater than zero", {"field": "price"})
        new_total = order.quantity if quantity is None else quantity
        if new_total <= order.filled:
            return self._reject(RejectCode.AMEND_REJECTED, "new quantity must exceed the filled quantity")
        new_remaining = order.remaining if quantity is None else new_total - order.filled
        new_price = order.price if price is None else price
        if new_price == order.price and new_remaining == order.remaining:
            return self._reject(RejectCode.AMEND_REJECTED, "amend changes nothing")
        if new_total < market.min_quantity:
            return self._reject(RejectCode.BELOW_MIN_QUANTITY, "quantity is below the market minimum")
        if new_price * new_total * market.quote_per_tick_lot < market.min_notional:
            return self._reject(RejectCode.BELOW_MIN_NOTIONAL, "order value is below the market's minimum notional")
        account = self.ledger.accounts[account_id]
        book = market.book
        asset = market.quote if order.side == BUY else market.base

        if new_price == order.price and new_remaining < order.remaining:
            book.reduce(order, order.remaining - new_remaining)
            order.quantity = new_total
            order.updated_ns = ts
            if order.side == BUY:
                self._trim_buy_lock(order, account, market)
            else:
                self._release(order, account, asset, order.locked - new_remaining * market.base_per_lot)
            self._touch(account).orders[order.order_id] = order
            self._mark(market)
            self._finish(ts)
            return order

        if order.post_only and book.would_cross(order.side, new_price):
            return self._reject(RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity at the new price")
        if order.side == BUY:
            new_lock = market.buy_lock(new_price, new_remaining)
        else:
            new_lock = new_remaining * market.base_per_lot
        extra = new_lock - order.locked
        if extra > account.available.get(asset, 0):
            return self._reject(RejectCode.INSUFFICIENT_BALANCE, f"insufficient {asset} for the amended order", {"asset": asset})

        book.remove(order)
        del self.orders[order.order_id]
        del account.open_orders[order.order_id]
        if order.client_order_id is not None:
            del account.client_ids[order.client_order_id]
        amended = order.requeued()
        amended.price = new_price
        amended.quantity = new_total
        amended.remaining = new_remaining
        amended.updated_ns = ts
        if extra > 0:
            self._lock(account, asset, extra)
            amended.locked += extra
        elif extra < 0:
            self._release(amended, account, asset, -extra)
        touched = self._touch(account)
        touched.assets[asset] = None
        touched.orders[amended.order_id] = amended
        self._mark(market)
        taker_expired = self._match(market, amended, account, ts)
        self._settle_taker(market, amended, account, True, taker_expired)
        self._finish(ts)
        return amended

    def _find_open(self, account_id: int, order_id: int | None, client_order_id: str | None) -> Order | Reject:
        account = self.ledger.accounts.get(account_id)
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is not None and order.account_id == account_id:
                return order
            closed = self.recent_closed.get(order_id)
        else:
            order = account.client_ids.get(client_order_id) if account is not None else None
            if order is not None:
                return order
            closed = None
        if closed is not None and closed.account_id == account_id:
            status = _STATUS_NAMES[closed.status]
            return self._reject(
                RejectCode.ORDER_NOT_OPEN, f"order {order_id} is {status}", {"order_id": order_id, "status": status}
            )
        return self._reject(RejectCode.ORDER_NOT_FOUND, "no such open order", {"order_id": order_id, "client_order_id": client_order_id})

    def _reject(self, code: RejectCode, message: str, details: dict | None = None) -> Reject:
        self.public = []
        self.private = []
        return Reject(code, message, details)

    # ------------------------------------------------------------------ funds

    def deposit(self, account_id: int, asset: str, amount: int, ts: int) -> Account | Reject:
        """Credit `amount` units of `asset` to the account's available balance."""
        if asset not in self.assets:
            return self._reject(RejectCode.UNKNOWN_ASSET, f"unknown asset {asset}", {"asset": asset})
        if amount <= 0:
            return self._reject(RejectCode.INVALID_AMOUNT, "amount must be greater than zero", {"field": "amount"})
        if account_id == FEE_ACCOUNT_ID:
            return self._reject(RejectCode.FORBIDDEN, "the fee account takes no deposits")
        account = self.ledger.account(account_id)
        self.ledger.deposit(account, asset, amount)
        self._touch(account).assets[asset] = None
        self._finish(ts)
        return account

    def withdraw(self, account_id: int, asset: str, amount: int, ts: int) -> Account | Reject:
        """Debit `amount` units of `asset` from the account's available balance."""
        if asset not in self.assets:
            return self._reject(RejectCode.UNKNOWN_ASSET, f"unknown asset {asset}", {"asset": asset})
        if amount <= 0:
            return self._reject(RejectCode.INVALID_AMOUNT, "amount must be greater than zero", {"field": "amount"})
        account = self.ledger.accounts.get(account_id)
        if account is None or not self.ledger.withdraw(account, asset, amount):
            return self._reject(RejectCode.INSUFFICIENT_BALANCE, f"insufficient available {asset}", {"asset": asset})
        self._touch(account).assets[asset] = None
        self._finish(ts)
        return account

    # ------------------------------------------------------------------ administration

    def create_asset(self, symbol: str, decimals: int) -> Step | Reject:
        """Register an asset whose balances are kept in units of 10**-decimals."""
        if not isinstance(symbol, str) or not ASSET_SYMBOL.fullmatch(symbol):
            return self._reject(RejectCode.INVALID_FIELD, "asset must be 1-12 of A-Z 0-9", {"field": "asset"})
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= MAX_ASSET_DECIMALS:
            return self._reject(
                RejectCode.INVALID_FIELD, f"decimals must be an integer in 0..{MAX_ASSET_DECIMALS}", {"field": "decimals"}
            )
        if symbol in self.assets:
            return self._reject(RejectCode.ALREADY_EXISTS, f"asset {symbol} exists", {"asset": symbol})
        step = self.assets[symbol] = Step.from_decimals(decimals)
        self._no_updates()
        return step

    def create_market(
        self,
        symbol: str,
        tick_size: str,
        lot_size: str,
        min_quantity: str,
        min_notional: str,
        maker_fee_bps: int,
        taker_fee_bps: int,
        ts: int,
    ) -> Market | Reject:
        """Open a market `BASE-QUOTE`, creating either asset (8 decimals or finer) if new."""
        match = PAIR_SYMBOL.fullmatch(symbol) if isinstance(symbol, str) else None
        if match is None:
            return self._reject(RejectCode.INVALID_FIELD, "pair must look like BTC-USDT", {"field": "pair"})
        if symbol in self.markets:
            return self._reject(RejectCode.ALREADY_EXISTS, f"market {symbol} exists", {"pair": symbol})
        base, quote = match.groups()
        if base == quote:
            return self._reject(RejectCode.INVALID_FIELD, "base and quote must differ", {"field": "pair"})
        steps = {}
        for field, text in (("tick_size", tick_size), ("lot_size", lot_size)):
            try:
                steps[field] = Step(text)
            except InexactValue as error:
                return self._reject(RejectCode.INVALID_FIELD, f"{field}: {error}", {"field": field})
        tick, lot = steps["tick_size"], steps["lot_size"]
        for field, bps, low in (("maker_fee_bps", maker_fee_bps, -MAX_FEE_BPS), ("taker_fee_bps", taker_fee_bps, 0)):
            if not isinstance(bps, int) or isinstance(bps, bool) or not low <= bps <= MAX_FEE_BPS:
                return self._reject(RejectCode.INVALID_FIELD, f"{field} must be an integer in {low}..{MAX_FEE_BPS}", {"field": field})
        if maker_fee_bps < 0 and -maker_fee_bps > taker_fee_bps:
            return self._reject(
                RejectCode.INVALID_FIELD, "a maker rebate may not exceed the taker fee", {"field": "maker_fee_bps"}
            )
        try:
            notional_step = Step(f"{tick.multiplier * lot.multiplier}e-{tick.decimals + lot.decimals}")
        except InexactValue as error:
            return self._reject(RejectCode.INVALID_FIELD, f"tick_size x lot_size: {error}", {"field": "tick_size"})
        if notional_step.decimals > MAX_ASSET_DECIMALS or lot.decimals > MAX_ASSET_DECIMALS:
            return self._reject(
                RejectCode.INVALID_FIELD, f"lot_size and tick_size x lot_size need at most {MAX_ASSET_DECIMALS} decimals",
                {"field": "lot_size"},
            )
        base_step = self.assets.get(base) or Step.from_decimals(max(DEFAULT_ASSET_DECIMALS, lot.decimals))
        quote_step = self.assets.get(quote) or Step.from_decimals(max(DEFAULT_ASSET_DECIMALS, notional_step.decimals))
        try:
            base_per_lot = lot.units_per(base_step)
        except InexactValue:
            return self._reject(RejectCode.INVALID_FIELD, f"lot_size is finer than {base}'s precision", {"field": "lot_size"})
        try:
            quote_per_tick_lot = notional_step.units_per(quote_step)
        except InexactValue:
            return self._reject(
                RejectCode.INVALID_FIELD, f"tick_size x lot_size is finer than {quote}'s precision", {"field": "tick_size"}
            )
        try:
            minimum_lots = lot.parse(min_quantity)
        except InexactValue as error:
            return self._reject(RejectCode.INVALID_FIELD, f"min_quantity: {error}", {"field": "min_quantity"})
        try:
            minimum_notional = quote_step.parse(min_notional)
        except InexactValue as error:
            return self._reject(RejectCode.INVALID_FIELD, f"min_notional: {error}", {"field": "min_notional"})
        self.assets.setdefault(base, base_step)
        self.assets.setdefault(quote, quote_step)
        market = Market(
            symbol, base, quote, tick, lot, base_per_lot, quote_per_tick_lot,
            max(minimum_lots, 1), minimum_notional, maker_fee_bps, taker_fee_bps,
        )
        self.markets[symbol] = market
        market.status_changed = True
        self._mark(market)
        self._finish(ts)
        return market

    def set_halted(self, symbol: str, halted: bool, ts: int) -> Market | Reject:
        """Halt (new orders and amends refused, cancels allowed) or resume a market."""
        market = self.markets.get(symbol)
        if market is None:
            return self._reject(RejectCode.UNKNOWN_MARKET, f"unknown market {symbol}", {"pair": symbol})
        market.halted = halted
        market.status_changed = True
        self._mark(market)
        self._finish(ts)
        return market

    def register_bot_key(self, account_id: int, public_key: str) -> Reject | None:
        """Bind a bot's CURVE public key (Z85, 40 chars) to one trader account."""
        if not isinstance(public_key, str) or len(public_key) != 40:
            return self._reject(RejectCode.INVALID_FIELD, "public_key must be 40 Z85 characters", {"field": "public_key"})
        if account_id == FEE_ACCOUNT_ID or account_id < 0:
            return self._reject(RejectCode.FORBIDDEN, "bots trade for trader accounts only")
        owner = self.bot_keys.get(public_key)
        if owner is not None:
            return self._reject(RejectCode.ALREADY_EXISTS, "key already registered", {"account_id": owner})
        self.bot_keys[public_key] = account_id
        self._no_updates()
        return None

    def revoke_bot_key(self, public_key: str) -> Reject | None:
        if self.bot_keys.pop(public_key, None) is None:
            return self._reject(RejectCode.NOT_FOUND, "no such bot key")
        self._no_updates()
        return None

    # ------------------------------------------------------------------ queries (no state change)

    def order(self, account_id: int, order_id: int | None, client_order_id: str | None) -> Order | None:
        """Return an open or recently closed order of the account.

        By client order id: the open order that has it, else the newest recently closed one.
        """
        if order_id is not None:
            order = self.orders.get(order_id) or self.recent_closed.get(order_id)
        else:
            account = self.ledger.accounts.get(account_id)
            order = account.client_ids.get(client_order_id) if account is not None else None
            if order is None:
                order = self.recent_closed_by_client_id.get((account_id, client_order_id))
        return order if order is not None and order.account_id == account_id else None

    def open_orders(self, account_id: int, symbol: str | None = None) -> list[Order]:
        account = self.ledger.accounts.get(account_id)
        if account is None:
            return []
        return [order for order in account.open_orders.values() if symbol is None or order.market == symbol]

    def balances(self, account_id: int) -> list[tuple[str, int, int]]:
        """Return (asset, available, locked) for every asset the account has ever held."""
        account = self.ledger.accounts.get(account_id)
        if account is None:
            return []
        assets = sorted(set(account.available) | set(account.locked))
        return [(asset, account.available.get(asset, 0), account.locked.get(asset, 0)) for asset in assets]

    # ------------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """Raise AssertionError unless every SPEC section 3 invariant holds."""
        locks: dict[tuple[int, str], int] = {}
        for market in self.markets.values():
            market.book.check_invariants()
            for order in market.book.resting_orders():
                if self.orders.get(order.order_id) is not order:
                    raise AssertionError(f"resting order {order.order_id} missing from the order index")
                if order.side == BUY:
                    expected, asset = market.buy_lock(order.price, order.remaining), market.quote
                else:
                    expected, asset = order.remaining * market.base_per_lot, market.base
                if order.locked != expected:
                    raise AssertionError(f"order {order.order_id} locks {order.locked}, expected {expected}")
                key = (order.account_id, asset)
                locks[key] = locks.get(key, 0) + order.locked
        resting = sum(1 for market in self.markets.values() for _ in market.book.resting_orders())
        if len(self.orders) != resting:
            raise AssertionError(f"order index holds {len(self.orders)} orders, books hold {resting}")
        for account in self.ledger.accounts.values():
            for asset, amount in account.locked.items():
                if amount != locks.get((account.account_id, asset), 0):
                    raise AssertionError(
                        f"account {account.account_id} has {amount} {asset} locked, its orders lock {locks.get((account.account_id, asset), 0)}"
                    )
            if len(account.open_orders) != sum(1 for order in self.orders.values() if order.account_id == account.account_id):
                raise AssertionError(f"account {account.account_id}: open-order index disagrees")
        self.ledger.check_invariants()


def _check_shape(side, order_type, time_in_force, price, quantity, quote_quantity, post_only):
    """Return (field, message) when the combination of order fields is not allowed."""
    if order_type == LIMIT:
        if price is None or price <= 0:
            return "price", "a limit order needs a price"
        if quantity is None or quantity <= 0:
            return "quantity", "a limit order needs a quantity"
        if quote_quantity is not None:
            return "quote_quantity", "quote_quantity is for market buys only"
        return None
    if post_only:
        return "post_only", "post_only applies to limit orders only"
    if time_in_force == GTC:
        return "time_in_force", "a market order is IOC or FOK"
    if (quantity is None) == (quote_quantity is None):
        return "quantity", "a market order needs exactly one of quantity and quote_quantity"
    if quote_quantity is not None:
        if side != BUY:
            return "quote_quantity", "quote_quantity is for market buys only"
        if time_in_force == FOK:
            return "time_in_force", "FOK needs a quantity"
        if quote_quantity <= 0:
            return "quote_quantity", "quote_quantity must be greater than zero"
    elif quantity <= 0:
        return "quantity", "quantity must be greater than zero"
    if price is not None and price <= 0:
        return "price", "price must be greater than zero"
    return None


def _cost_of(levels, lots: int, per_tick_lot: int, skip_account: int | None = None) -> int:
    """Return the quote a market buy of `lots` would spend against `levels` as they stand.

    Orders of `skip_account` are left out: self-trade prevention expires them instead of buying.
    """
    cost = 0
    for level in levels.values():
        size = level.size
        if skip_account is not None:
            size -= sum(order.remaining for order in level.orders() if order.account_id == skip_account)
        take = lots if lots < size else size
        cost += level.price * take * per_tick_lot
        lots -= take
        if not lots:
            break
    return cost


def _fillable(book: Book, taker: Order) -> int:
    """Return how many lots a FOK order could fill now, given its limit and its STP mode."""
    is_buy = taker.side == BUY
    levels = book.asks if is_buy else book.bids
    limit, need, own, stp = taker.price, taker.remaining, taker.account_id, taker.stp
    total = 0
    for level in levels.values():
        if limit and (level.price > limit if is_buy else level.price < limit):
            break
        for maker in level.orders():
            if maker.account_id == own and stp != STP_NONE:
                if stp == EXPIRE_MAKER:
                    continue
                return total
            total += maker.remaining
            if total >= need:
                return total
    return total
