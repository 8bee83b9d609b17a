"""Reads for the gateway's history endpoints: JSON-ready dicts with decimal strings.

Lists are keyset-paginated (`Page`, common/store/cursors.py), newest first except candles.
Amounts are exact: prices, quantities and balances come back as the decimal strings the
recorder stored, and every sum, value or PnL is computed with integers or `Fraction`
and truncated toward zero to the asset's decimals, never through floats.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

import orjson

from common.store.aggregates import INTERVALS, MINUTE, Candle, Position
from common.store.batch import MarketSpec
from common.store.cursors import decode_cursor
from common.store.store import Page, check_limit, make_page
from common.types import Step, parse_decimal

ORDER_STATUSES = ("open", "closed", "all")
DAY_MS = 86_400_000


def to_fraction(text: str) -> Fraction:
    """Return a decimal string (optionally negative) as an exact Fraction."""
    if text.startswith("-"):
        return -to_fraction(text[1:])
    digits, exponent = parse_decimal(text)
    return Fraction(digits, 10**exponent)


def format_fraction(value: Fraction, decimals: int) -> str:
    """Render `value` with exactly `decimals` places, truncated toward zero."""
    scaled = abs(value.numerator) * 10**decimals // value.denominator
    text = str(scaled).rjust(decimals + 1, "0")
    if decimals:
        text = f"{text[:-decimals]}.{text[-decimals:]}"
    return "-" + text if value < 0 and scaled else text


def _decimals_of(text: str) -> int:
    _, _, fraction = text.partition(".")
    return len(fraction)


def _percent(numerator: Fraction, denominator: Fraction) -> str | None:
    """Return numerator / denominator in percent with two decimals, or None when undefined."""
    if denominator <= 0:
        return None
    return format_fraction(numerator * 100 / denominator, 2)


class HistoryQueries:
    """The Store's read side for history (mixed into Store)."""

    def _init_history(self) -> None:
        self._specs: dict[str, MarketSpec] = {}

    # ------------------------------------------------------------------ markets

    def markets(self) -> list[dict[str, Any]]:
        """Return every market the recorder has seen, as the matcher's market shape (without seq)."""
        with self.backend.transaction() as tx:
            rows = tx.execute("SELECT data FROM markets ORDER BY pair").fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def _market_specs(self, tx) -> dict[str, MarketSpec]:
        rows = tx.execute("SELECT pair, base, quote, tick_size, lot_size, base_decimals, quote_decimals, base_per_lot,"
                          " quote_per_tick_lot FROM markets").fetchall()
        specs = {}
        for pair, base, quote, tick, lot, base_decimals, quote_decimals, base_per_lot, quote_per_tick_lot in rows:
            spec = self._specs.get(pair)
            if spec is None:
                spec = self._specs[pair] = MarketSpec(pair, base, quote, Step(tick), Step(lot),
                                                      Step.from_decimals(base_decimals),
                                                      Step.from_decimals(quote_decimals), base_per_lot,
                                                      quote_per_tick_lot)
            specs[pair] = spec
        return specs

    def _spec(self, tx, pair: str) -> MarketSpec | None:
        spec = self._specs.get(pair)
        if spec is None:
            spec = self._market_specs(tx).get(pair)
        return spec

    @staticmethod
    def _last_trade(tx, pair: str) -> tuple[str, int, int, str] | None:
        """Return (price, ts, trade_id, quantity) of the market's newest trade."""
        return tx.execute("SELECT price, ts, trade_id, quantity FROM trades WHERE pair = %s"
                          " ORDER BY trade_id DESC LIMIT 1", (pair,)).fetchone()

    # ------------------------------------------------------------------ market history

    def trades(self, pair: str, limit: int, cursor: str | None = None) -> Page:
        """The market's trades, newest first: {trade_id, pair, price, quantity, taker_side, ts}."""
        check_limit(limit)
        sql = "SELECT trade_id, price, quantity, taker_side, ts FROM trades WHERE pair = %s"
        params: list[Any] = [pair]
        if cursor is not None:
            sql += " AND trade_id < %s"
            params += decode_cursor(cursor, "trades", 1)
        sql += " ORDER BY trade_id DESC LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit + 1)).fetchall()
        return make_page(rows, limit, "trades", lambda row: (row[0],), lambda row: {
            "trade_id": row[0], "pair": pair, "price": row[1], "quantity": row[2], "taker_side": row[3],
            "ts": row[4]})

    def candles(self, pair: str, interval: str, start_ms: int | None, end_ms: int | None,
                limit: int) -> list[dict[str, Any]]:
        """Candles oldest first; intervals without trades are absent.

        `taker_buy_volume` and `taker_buy_quote_volume` are the volumes of the trades whose
        taker bought (null in candles recorded before the store kept them).

        With `start_ms`: the first `limit` candles opening at or after it (and at or before
        `end_ms`); without: the last `limit` candles opening at or before `end_ms` (or now).
        """
        length = INTERVALS.get(interval)
        if length is None:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
        check_limit(limit)
        columns = ("SELECT open_time, open, high, low, close, volume, quote_volume, trades, taker_buy_volume,"
                   " taker_buy_quote_volume FROM candles")
        params: list[Any] = [pair, interval]
        sql = f"{columns} WHERE pair = %s AND period = %s"
        if start_ms is not None:
            sql += " AND open_time >= %s"
            params.append(start_ms)
        if end_ms is not None:
            sql += " AND open_time <= %s"
            params.append(end_ms)
        sql += " ORDER BY open_time " + ("ASC" if start_ms is not None else "DESC") + " LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit)).fetchall()
        if start_ms is None:
            rows.reverse()
        return [{"open_time": row[0], "close_time": row[0] + length - 1, "open": row[1], "high": row[2],
                 "low": row[3], "close": row[4], "volume": row[5], "quote_volume": row[6], "trades": row[7],
                 "taker_buy_volume": row[8], "taker_buy_quote_volume": row[9]}
                for row in rows]

    def ticker(self, pair: str, now_ms: int) -> dict[str, Any] | None:
        """24-hour statistics from the one-minute candles opening in (now - 24 h, now]; None for an unknown market.

        `open` is the first trade's price in the window and `change` is `last - open`; with
        no trade in the window the price fields are the last trade's price (or null) and the
        volumes zero. `first_trade_id` and `last_trade_id` bound the window's trades (null
        without any), `last_quantity` is the newest trade's quantity and `prev_close` the price
        of the last trade before the window (null without one).
        """
        window_start = -(-(now_ms - DAY_MS + 1) // MINUTE) * MINUTE
        with self.backend.transaction() as tx:
            spec = self._spec(tx, pair)
            if spec is None:
                return None
            rows = tx.execute(
                "SELECT open, high, low, close, volume, quote_volume, trades, first_trade_id, last_trade_id,"
                " taker_buy_volume, taker_buy_quote_volume"
                " FROM candles WHERE pair = %s AND period = '1m' AND open_time >= %s AND open_time <= %s"
                " ORDER BY open_time",
                (pair, window_start, now_ms),
            ).fetchall()
            last = self._last_trade(tx, pair)
            first_ts = last_ts = None
            prev_close = last[0] if last is not None else None
            if rows:
                first_ts = tx.execute("SELECT ts FROM trades WHERE pair = %s AND trade_id = %s",
                                      (pair, rows[0][7])).fetchone()[0]
                last_ts = tx.execute("SELECT ts FROM trades WHERE pair = %s AND trade_id = %s",
                                     (pair, rows[-1][8])).fetchone()[0]
                before = tx.execute("SELECT price FROM trades WHERE pair = %s AND trade_id < %s"
                                    " ORDER BY trade_id DESC LIMIT 1", (pair, rows[0][7])).fetchone()
                prev_close = before[0] if before is not None else None
        tick = spec.tick
        result: dict[str, Any] = {"pair": pair, "open_time": window_start, "close_time": now_ms,
                                  "last": last[0] if last is not None else None,
                                  "last_quantity": last[3] if last is not None else None, "prev_close": prev_close}
        if not rows:
            price = result["last"]
            result.update(open=price, high=price, low=price, volume=spec.lot.format(0),
                          quote_volume=spec.quote_step.format(0), change=None if price is None else tick.format(0),
                          change_percent=None if price is None else "0.00", trades=0, first_trade_ts=None,
                          last_trade_ts=None, first_trade_id=None, last_trade_id=None)
            return result
        total = Candle.from_row(rows[0], spec)
        for row in rows[1:]:
            total.merge(Candle.from_row(row, spec))
        change = total.close - total.open
        result.update(
            last=tick.format(total.close), open=tick.format(total.open), high=tick.format(total.high),
            low=tick.format(total.low), volume=spec.lot.format(total.volume),
            quote_volume=spec.quote_step.format(total.quote_volume), change=tick.format(change),
            change_percent=_percent(Fraction(change), Fraction(total.open)), trades=total.trades,
            first_trade_ts=first_ts, last_trade_ts=last_ts, first_trade_id=total.first_trade_id,
            last_trade_id=total.last_trade_id,
        )
        return result

    # ------------------------------------------------------------------ account history

    def orders(self, trader_id: int, status: str, pair: str | None, limit: int, cursor: str | None = None) -> Page:
        """The account's orders, newest first (by creation), in the matcher's order shape with `fills: []`."""
        if status not in ORDER_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ORDER_STATUSES)}")
        check_limit(limit)
        sql = "SELECT data, created_at, order_id FROM orders WHERE account_id = %s"
        params: list[Any] = [trader_id]
        if pair is not None:
            sql += " AND pair = %s"
            params.append(pair)
        if status != "all":
            sql += " AND is_open = 1" if status == "open" else " AND is_open = 0"
        if cursor is not None:
            sql += " AND (created_at, order_id) < (%s, %s)"
            params += decode_cursor(cursor, "orders", 2)
        sql += " ORDER BY created_at DESC, order_id DESC LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit + 1)).fetchall()
        return make_page(rows, limit, "orders", lambda row: (row[1], row[2]), _order_item)

    def order(self, trader_id: int, order_id: int) -> dict[str, Any] | None:
        """One order of the account with every fill it has had (oldest first), or None."""
        return self._order_with_fills("SELECT data, order_id FROM orders WHERE order_id = %s AND account_id = %s",
                                      (order_id, trader_id))

    def order_by_client_id(self, trader_id: int, pair: str, client_order_id: str) -> dict[str, Any] | None:
        """The account's newest order in `pair` with this client_order_id, with its fills, or None."""
        return self._order_with_fills(
            "SELECT data, order_id FROM orders WHERE account_id = %s AND client_order_id = %s AND pair = %s"
            " ORDER BY created_at DESC, order_id DESC LIMIT 1", (trader_id, client_order_id, pair))

    def _order_with_fills(self, sql: str, params: tuple) -> dict[str, Any] | None:
        with self.backend.transaction() as tx:
            row = tx.execute(sql, params).fetchone()
            if row is None:
                return None
            fills = tx.execute(
                "SELECT trade_id, order_id, pair, side, price, quantity, fee, fee_asset, liquidity, ts FROM fills"
                " WHERE order_id = %s ORDER BY fill_id", (row[1],)).fetchall()
        order = orjson.loads(row[0])
        order["fills"] = [{"trade_id": fill[0], "order_id": fill[1], "pair": fill[2], "side": fill[3],
                           "price": fill[4], "quantity": fill[5], "fee": fill[6], "fee_asset": fill[7],
                           "liquidity": fill[8], "ts": fill[9]} for fill in fills]
        return order

    def account_orders(self, trader_id: int, pair: str, limit: int, *, from_order_id: int | None = None,
                       start_ms: int | None = None, end_ms: int | None = None) -> list[dict[str, Any]]:
        """The account's orders in one market, oldest first, in the matcher's order shape with `fills: []`.

        With `from_order_id` or `start_ms`: the first `limit` orders from there on; without
        either: the newest `limit` (up to `end_ms`). Orders are ordered by creation, which in
        one market is also the order of their ids.
        """
        check_limit(limit)
        sql = "SELECT data FROM orders WHERE account_id = %s AND pair = %s"
        params: list[Any] = [trader_id, pair]
        for condition, value in ((" AND order_id >= %s", from_order_id), (" AND created_at >= %s", start_ms),
                                 (" AND created_at <= %s", end_ms)):
            if value is not None:
                sql += condition
                params.append(value)
        return self._oldest_first(sql, params, "created_at, order_id", limit,
                                  from_order_id is not None or start_ms is not None, _order_item)

    def account_fills(self, trader_id: int, pair: str, limit: int, *, order_id: int | None = None,
                      from_trade_id: int | None = None, start_ms: int | None = None,
                      end_ms: int | None = None) -> list[dict[str, Any]]:
        """The account's fills in one market, oldest first, in the shape of `fills`.

        With `from_trade_id` or `start_ms`: the first `limit` fills from there on; without
        either: the newest `limit` (of `order_id`, up to `end_ms`).
        """
        check_limit(limit)
        sql = ("SELECT ts, fill_id, trade_id, order_id, pair, side, price, quantity, fee, fee_asset, liquidity"
               " FROM fills WHERE account_id = %s AND pair = %s")
        params: list[Any] = [trader_id, pair]
        for condition, value in ((" AND order_id = %s", order_id), (" AND trade_id >= %s", from_trade_id),
                                 (" AND ts >= %s", start_ms), (" AND ts <= %s", end_ms)):
            if value is not None:
                sql += condition
                params.append(value)
        return self._oldest_first(sql, params, "ts, fill_id", limit,
                                  from_trade_id is not None or start_ms is not None, _fill_item)

    def _oldest_first(self, sql: str, params: list[Any], order: str, limit: int, from_start: bool,
                      item) -> list[dict[str, Any]]:
        """Run a listing's query for its first `limit` rows (from_start) or its last, and return them oldest first."""
        direction = " ASC" if from_start else " DESC"
        sql += " ORDER BY " + ", ".join(column + direction for column in order.split(", ")) + " LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit)).fetchall()
        if not from_start:
            rows.reverse()
        return [item(row) for row in rows]

    def fills(self, trader_id: int, pair: str | None, limit: int, cursor: str | None = None) -> Page:
        """The account's fills, newest first: {trade_id, order_id, pair, side, price, quantity, fee, fee_asset, liquidity, ts}."""
        check_limit(limit)
        sql = ("SELECT ts, fill_id, trade_id, order_id, pair, side, price, quantity, fee, fee_asset, liquidity"
               " FROM fills WHERE account_id = %s")
        params: list[Any] = [trader_id]
        if pair is not None:
            sql += " AND pair = %s"
            params.append(pair)
        if cursor is not None:
            sql += " AND (ts, fill_id) < (%s, %s)"
            params += decode_cursor(cursor, "fills", 2)
        sql += " ORDER BY ts DESC, fill_id DESC LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit + 1)).fetchall()
        return make_page(rows, limit, "fills", lambda row: (row[0], row[1]), _fill_item)

    def deposits(self, trader_id: int, limit: int, cursor: str | None = None) -> Page:
        """The account's deposits, newest first: {deposit_id, asset, amount, ts}."""
        return self._funds("deposits", "deposit_id", trader_id, limit, cursor)

    def withdrawals(self, trader_id: int, limit: int, cursor: str | None = None) -> Page:
        """The account's withdrawals, newest first: {withdrawal_id, asset, amount, ts}."""
        return self._funds("withdrawals", "withdrawal_id", trader_id, limit, cursor)

    def _funds(self, table: str, id_column: str, trader_id: int, limit: int, cursor: str | None) -> Page:
        check_limit(limit)
        sql = f"SELECT ts, {id_column}, asset, amount FROM {table} WHERE account_id = %s"
        params: list[Any] = [trader_id]
        if cursor is not None:
            sql += f" AND (ts, {id_column}) < (%s, %s)"
            params += decode_cursor(cursor, table, 2)
        sql += f" ORDER BY ts DESC, {id_column} DESC LIMIT %s"
        with self.backend.transaction() as tx:
            rows = tx.execute(sql, (*params, limit + 1)).fetchall()
        return make_page(rows, limit, table, lambda row: (row[0], row[1]), lambda row: {
            id_column: row[1], "asset": row[2], "amount": row[3], "ts": row[0]})

    def balances_updated_at(self, trader_id: int) -> int | None:
        """When the account's balances last changed (ms), as recorded; None when they never did."""
        with self.backend.transaction() as tx:
            return tx.execute("SELECT MAX(ts) FROM balances WHERE account_id = %s", (trader_id,)).fetchone()[0]

    def balances(self, trader_id: int) -> list[dict[str, Any]]:
        """The account's latest balances as recorded, per asset, summed over shards: {asset, available, locked, total}."""
        with self.backend.transaction() as tx:
            rows = tx.execute("SELECT asset, available, locked FROM balances WHERE account_id = %s",
                              (trader_id,)).fetchall()
        return _sum_balances(rows)

    # ------------------------------------------------------------------ positions and PnL

    def positions(self, trader_id: int) -> list[dict[str, Any]]:
        """The account's positions per market, by average cost (docs/store.md#positions)."""
        with self.backend.transaction() as tx:
            specs = self._market_specs(tx)
            rows = tx.execute("SELECT pair, quantity, cost, realized_pnl, bought, sold, last_fill_id FROM positions"
                              " WHERE account_id = %s ORDER BY pair", (trader_id,)).fetchall()
            last_prices = {row[0]: self._last_trade(tx, row[0]) for row in rows}
        return [_position_item(row[0], Position.from_row(row[1:], specs[row[0]]), specs[row[0]],
                               last_prices[row[0]]) for row in rows]

    def portfolio(self, trader_id: int, valuation_asset: str | None = None) -> dict[str, Any]:
        """Value the account's balances at last prices and compare them with its net deposits."""
        with self.backend.transaction() as tx:
            valuation = _Valuation.load(self, tx, valuation_asset)
            balances = tx.execute("SELECT asset, available, locked FROM balances WHERE account_id = %s",
                                  (trader_id,)).fetchall()
            deposits = tx.execute("SELECT asset, amount FROM deposits WHERE account_id = %s", (trader_id,)).fetchall()
            withdrawals = tx.execute("SELECT asset, amount FROM withdrawals WHERE account_id = %s",
                                     (trader_id,)).fetchall()
        holdings = _holdings(balances)
        net = _net_deposits(deposits, withdrawals)
        result = valuation.summary(holdings, net)
        del result["_pnl"]
        result["trader_id"] = trader_id
        result["assets"] = [
            {"asset": asset, "total": format_fraction(amount, valuation.decimals_of(asset)),
             "price": valuation.price_text(asset), "value": valuation.value_text(asset, amount)}
            for asset, amount in sorted(holdings.items())
        ]
        return result

    def leaderboard(self, limit: int, valuation_asset: str | None = None) -> list[dict[str, Any]]:
        """Traders ranked by PnL (value of balances minus value of net deposits), best first."""
        check_limit(limit)
        with self.backend.transaction() as tx:
            valuation = _Valuation.load(self, tx, valuation_asset)
            traders = tx.execute("SELECT trader_id, username FROM traders").fetchall()
            balances = tx.execute("SELECT account_id, asset, available, locked FROM balances").fetchall()
            deposits = tx.execute("SELECT account_id, asset, amount FROM deposits").fetchall()
            withdrawals = tx.execute("SELECT account_id, asset, amount FROM withdrawals").fetchall()
        by_account: dict[int, list] = {}
        for account_id, *row in balances:
            by_account.setdefault(account_id, []).append(row)
        deposited: dict[int, list] = {}
        for account_id, *row in deposits:
            deposited.setdefault(account_id, []).append(row)
        withdrawn: dict[int, list] = {}
        for account_id, *row in withdrawals:
            withdrawn.setdefault(account_id, []).append(row)
        entries = []
        for trader_id, username in traders:
            summary = valuation.summary(_holdings(by_account.get(trader_id, [])),
                                        _net_deposits(deposited.get(trader_id, []), withdrawn.get(trader_id, [])))
            entries.append((summary.pop("_pnl"), trader_id, username, summary))
        entries.sort(key=lambda entry: (-entry[0], entry[1]))
        return [{"rank": rank, "trader_id": trader_id, "username": username, **summary}
                for rank, (_, trader_id, username, summary) in enumerate(entries[:limit], start=1)]


# ---------------------------------------------------------------------- helpers


def _fill_item(row) -> dict[str, Any]:
    """A fill from (ts, fill_id, trade_id, order_id, pair, side, price, quantity, fee, fee_asset, liquidity)."""
    return {"trade_id": row[2], "order_id": row[3], "pair": row[4], "side": row[5], "price": row[6],
            "quantity": row[7], "fee": row[8], "fee_asset": row[9], "liquidity": row[10], "ts": row[0]}


def _order_item(row) -> dict[str, Any]:
    order = orjson.loads(row[0])
    order["fills"] = []
    return order


def _sum_balances(rows) -> list[dict[str, Any]]:
    totals: dict[str, list] = {}
    for asset, available, locked in rows:
        entry = totals.setdefault(asset, [Fraction(0), Fraction(0), 0])
        entry[0] += to_fraction(available)
        entry[1] += to_fraction(locked)
        entry[2] = max(entry[2], _decimals_of(available))
    result = []
    for asset in sorted(totals):
        available, locked, decimals = totals[asset]
        result.append({"asset": asset, "available": format_fraction(available, decimals),
                       "locked": format_fraction(locked, decimals),
                       "total": format_fraction(available + locked, decimals)})
    return result


def _holdings(rows) -> dict[str, Fraction]:
    holdings: dict[str, Fraction] = {}
    for asset, available, locked in rows:
        holdings[asset] = holdings.get(asset, Fraction(0)) + to_fraction(available) + to_fraction(locked)
    return holdings


def _net_deposits(deposits, withdrawals) -> dict[str, Fraction]:
    net: dict[str, Fraction] = {}
    for asset, amount in deposits:
        net[asset] = net.get(asset, Fraction(0)) + to_fraction(amount)
    for asset, amount in withdrawals:
        net[asset] = net.get(asset, Fraction(0)) - to_fraction(amount)
    return net


def _position_item(pair: str, position: Position, spec: MarketSpec, last) -> dict[str, Any]:
    base_step, quote_step = spec.base_step, spec.quote_step
    quantity, cost = position.quantity, position.cost
    decimals = spec.tick.decimals + 8
    average = None
    if quantity:
        # cost (quote units) / quantity (base units), as quote per base with tick decimals + 8.
        average = format_fraction(Fraction(cost * 10**base_step.decimals, quantity * 10**quote_step.decimals),
                                  decimals)
    item = {
        "pair": pair, "asset": spec.base, "quote": spec.quote,
        "quantity": base_step.format(quantity), "average_cost": average, "cost": quote_step.format(cost),
        "realized_pnl": quote_step.format(position.realized),
        "bought": base_step.format(position.bought), "sold": base_step.format(position.sold),
        "last_price": None, "market_value": None, "unrealized_pnl": None,
    }
    if last is not None:
        ticks = spec.tick.parse(last[0])
        # quantity base units at `ticks`: quote units = units x ticks x quote_per_tick_lot / base_per_lot.
        value = Fraction(quantity * ticks * spec.quote_per_tick_lot, spec.base_per_lot)
        value_units = int(value)  # truncates toward zero
        item.update(last_price=last[0], market_value=quote_step.format(value_units),
                    unrealized_pnl=quote_step.format(value_units - cost))
    return item


class _Valuation:
    """Last prices of every asset in one valuation asset, from the store's markets and trades."""

    def __init__(self, asset: str | None, decimals: int, prices: dict[str, Fraction],
                 asset_decimals: dict[str, int]) -> None:
        self.asset = asset
        self.decimals = decimals
        self.prices = prices
        self.asset_decimals = asset_decimals

    @classmethod
    def load(cls, store: HistoryQueries, tx, asset: str | None) -> "_Valuation":
        specs = store._market_specs(tx)
        asset_decimals: dict[str, int] = {}
        for row in tx.execute("SELECT asset, decimals FROM assets").fetchall():
            asset_decimals[row[0]] = max(asset_decimals.get(row[0], 0), row[1])
        if asset is None:
            quotes = Counter(spec.quote for spec in specs.values())
            asset = min(quotes, key=lambda quote: (-quotes[quote], quote)) if quotes else None
        prices: dict[str, Fraction] = {}
        if asset is not None:
            prices[asset] = Fraction(1)
            for pair, spec in sorted(specs.items()):
                if asset not in (spec.base, spec.quote):
                    continue
                last = store._last_trade(tx, pair)
                if last is None:
                    continue
                price = to_fraction(last[0])
                if spec.quote == asset:
                    prices.setdefault(spec.base, price)
                elif price:
                    prices.setdefault(spec.quote, 1 / price)
        return cls(asset, asset_decimals.get(asset, 8) if asset is not None else 8, prices, asset_decimals)

    def decimals_of(self, asset: str) -> int:
        return self.asset_decimals.get(asset, 8)

    def price_text(self, asset: str) -> str | None:
        price = self.prices.get(asset)
        return None if price is None else format_fraction(price, max(self.decimals, 8))

    def value_text(self, asset: str, amount: Fraction) -> str | None:
        price = self.prices.get(asset)
        return None if price is None else format_fraction(amount * price, self.decimals)

    def summary(self, holdings: dict[str, Fraction], net: dict[str, Fraction]) -> dict[str, Any]:
        """Return value, net deposits and PnL in the valuation asset (assets without a price are left out)."""
        value = sum((amount * self.prices[asset] for asset, amount in holdings.items() if asset in self.prices),
                    Fraction(0))
        deposits = sum((amount * self.prices[asset] for asset, amount in net.items() if asset in self.prices),
                       Fraction(0))
        pnl = value - deposits
        unpriced = sorted({asset for asset, amount in holdings.items() if amount and asset not in self.prices}
                          | {asset for asset, amount in net.items() if amount and asset not in self.prices})
        return {
            "valuation_asset": self.asset,
            "value": format_fraction(value, self.decimals),
            "net_deposits": format_fraction(deposits, self.decimals),
            "pnl": format_fraction(pnl, self.decimals),
            "return_percent": _percent(pnl, deposits),
            "unpriced_assets": unpriced,
            "_pnl": pnl,
        }
