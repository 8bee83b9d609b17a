"""Recorder rows and history queries on both backends, against an in-process matcher.

The store must say what the matcher said: orders equal the matcher's `get_order`, balances
its `balances`, fills and trades those in its replies. Lists page by keyset cursors that
stay correct while rows arrive, replays store nothing twice, and candles, tickers,
positions and PnL follow docs/store.md.
"""

from __future__ import annotations

import random

import pytest

from common.recorder.replica import Replica, ReplicaError
from common.store import Batch, ProgressConflict, open_store
from common.store.backends import backend_for_url
from common.store.migrations import MIGRATIONS, migrate
from tests.unit.store.flow import START_NS, FakeMatcher, Rejected, record

MS = 1_000_000
START_MS = START_NS // MS


def _matcher_with_trade() -> FakeMatcher:
    matcher = FakeMatcher()
    matcher.market(taker_fee_bps=5, maker_fee_bps=-1)
    matcher.fund(1, USDT="10000")
    matcher.fund(2, BTC="5")
    return matcher


def _all_pages(fetch, limit):
    items, cursor = [], None
    while True:
        page = fetch(limit, cursor)
        items += page.items
        if not page.has_more:
            assert page.next_cursor is None
            return items
        cursor = page.next_cursor


def test_rows_equal_what_the_matcher_answered(store):
    matcher = _matcher_with_trade()
    maker = matcher.request("place", account_id=2, pair="BTC-USDT", side="sell", type="limit", price="100.00",
                            quantity="1.000", client_order_id="ask-1")
    taker = matcher.request("place", account_id=1, pair="BTC-USDT", side="buy", type="limit", price="101.00",
                            quantity="0.400")
    matcher.request("withdraw", account_id=1, asset="USDT", amount="10")
    record(store, matcher)

    for account_id, order_id in ((2, maker["order_id"]), (1, taker["order_id"])):
        live = matcher.request("get_order", account_id=account_id, order_id=order_id)
        stored = store.order(account_id, order_id)
        stored_fills = stored.pop("fills")
        live.pop("fills")
        assert stored == live
        assert [fill["trade_id"] for fill in stored_fills] == [taker["fills"][0]["trade_id"]]
    assert store.order(1, maker["order_id"]) is None  # another account's order

    [fill] = store.fills(1, None, 10).items
    assert fill == {**taker["fills"][0], "ts": taker["updated_at"]}
    [trade] = store.trades("BTC-USDT", 10).items
    assert trade == {"trade_id": fill["trade_id"], "pair": "BTC-USDT", "price": "100.00", "quantity": "0.400",
                     "taker_side": "buy", "ts": taker["updated_at"]}
    for account_id in (1, 2):
        assert store.balances(account_id) == matcher.request("balances", account_id=account_id)
    assert [item["order_id"] for item in store.orders(2, "open", None, 10).items] == [maker["order_id"]]
    assert store.orders(2, "closed", None, 10).items == []
    assert [item["status"] for item in store.orders(1, "all", "BTC-USDT", 10).items] == ["FILLED"]
    assert store.orders(1, "all", "ETH-USDT", 10).items == []
    assert [(item["asset"], item["amount"]) for item in store.deposits(1, 10).items] == [("USDT", "10000.00000000")]
    assert [(item["asset"], item["amount"]) for item in store.withdrawals(1, 10).items] == [("USDT", "10.00000000")]
    assert store.markets()[0]["pair"] == "BTC-USDT"
    assert store.recorder_progress(0) == len(matcher.records)


def test_a_random_flow_is_recorded_exactly(store):
    rng = random.Random(5)
    matcher = FakeMatcher()
    matcher.market(taker_fee_bps=10, maker_fee_bps=-2)
    matcher.market("ETH-USDT", tick_size="0.1", lot_size="0.01")
    accounts = range(1, 6)
    for account in accounts:
        matcher.fund(account, USDT="100000", BTC="50", ETH="500")
    order_ids = set()
    for _ in range(600):
        account = rng.choice(accounts)
        pair = rng.choice(("BTC-USDT", "ETH-USDT"))
        roll = rng.random()
        try:
            if roll < 0.15 and order_ids:
                order = rng.choice(sorted(order_ids))
                matcher.request("cancel", account_id=account, order_id=order)
            elif roll < 0.25 and order_ids:
                order = rng.choice(sorted(order_ids))
                matcher.request("amend", account_id=account, order_id=order,
                                quantity=f"{rng.randint(1, 3)}.{rng.randint(0, 99):02d}0")
            elif roll < 0.3:
                reply = matcher.request("place", account_id=account, pair=pair, side=rng.choice(("buy", "sell")),
                                        type="market", quantity=f"0.{rng.randint(1, 99):02d}0",
                                        time_in_force=rng.choice(("IOC", "FOK")))
                order_ids.add(reply["order_id"])
            else:
                price = f"{rng.randint(90, 110)}.{rng.randint(0, 9)}0"
                reply = matcher.request("place", account_id=account, pair=pair, side=rng.choice(("buy", "sell")),
                                        type="limit", price=price, quantity=f"{rng.randint(0, 2)}.{rng.randint(1, 99):02d}0",
                                        stp=rng.choice(("expire_maker", "none", "decrement", "expire_both")))
                order_ids.add(reply["order_id"])
        except Rejected:
            pass
    record(store, matcher, batch_records=rng.randint(7, 40))

    for account in accounts:
        assert store.balances(account) == matcher.request("balances", account_id=account)
        stored_orders = {order["order_id"]: order for order in _all_pages(
            lambda limit, cursor: store.orders(account, "all", None, limit, cursor), 17)}
        for order_id, stored in stored_orders.items():
            live = matcher.request("get_order", account_id=account, order_id=order_id)
            live["fills"] = []
            assert stored == live
        open_ids = {order["order_id"] for order in matcher.request("open_orders", account_id=account)}
        assert {order["order_id"] for order in store.orders(account, "open", None, 1000).items} == open_ids
        fills = _all_pages(lambda limit, cursor: store.fills(account, None, limit, cursor), 13)
        assert len({(fill["trade_id"], fill["order_id"]) for fill in fills}) == len(fills)
    trades = _all_pages(lambda limit, cursor: store.trades("BTC-USDT", limit, cursor), 11)
    trades += _all_pages(lambda limit, cursor: store.trades("ETH-USDT", limit, cursor), 11)
    all_fills = sum(len(_all_pages(lambda limit, cursor: store.fills(account, None, limit, cursor), 100))
                    for account in accounts)
    assert trades and all_fills == 2 * len(trades)


def test_replaying_records_stores_nothing_twice(store, store_url):
    matcher = _matcher_with_trade()
    for n in range(20):
        side = ("buy", "sell")[n % 2]
        price = "100.00" if side == "sell" else "100.50"
        matcher.request("place", account_id=1 + n % 2 if side == "buy" else 2, pair="BTC-USDT", side=side,
                        type="limit", price=price, quantity="0.010")
    record(store, matcher, batch_records=6)

    def snapshot():
        tables = {}
        with store.backend.transaction() as tx:
            for table in ("trades", "fills", "orders", "order_events", "deposits", "withdrawals", "balances",
                          "candles", "positions", "markets", "assets"):
                tables[table] = sorted(tuple(row) for row in tx.execute(f"SELECT * FROM {table}").fetchall())
        return tables

    before = snapshot()
    # The same batch again on top of the progress it was built from: refused by the compare-and-set.
    replica = Replica.empty(0)
    batch = Batch(0, 0)
    for item in matcher.records:
        replica.apply(item["seq"], item["ts"], item["cmd"], batch)
    with pytest.raises(ProgressConflict) as conflict:
        store.write_batch(batch)
    assert conflict.value.found == len(matcher.records)
    # Even with the progress forced back, a replay adds no row and counts no trade twice.
    store.write_batch(batch, after_seq=len(matcher.records))
    assert snapshot() == before
    with store.backend.transaction(write=True) as tx:
        tx.execute("UPDATE recorder_progress SET journal_seq = 0")
    store.write_batch(batch)  # caches warm: candles and positions skip by watermark
    assert snapshot() == before
    with store.backend.transaction(write=True) as tx:
        tx.execute("UPDATE recorder_progress SET journal_seq = 0")
    fresh = open_store(store_url)  # caches cold: the watermarks are read back from the store
    try:
        fresh.write_batch(batch)
    finally:
        fresh.close()
    assert snapshot() == before


def test_pages_stay_correct_while_rows_arrive(store):
    matcher = _matcher_with_trade()
    matcher.fund(2, BTC="100")
    replica = None

    def trade(count):
        for _ in range(count):
            matcher.request("place", account_id=2, pair="BTC-USDT", side="sell", type="limit", price="100.00",
                            quantity="0.010")
            matcher.request("place", account_id=1, pair="BTC-USDT", side="buy", type="market", quantity="0.010")

    trade(30)
    replica = record(store, matcher)
    first = store.fills(1, None, 10)
    seen = list(first.items)
    cursor = first.next_cursor
    trade(15)  # newer fills arrive between pages: they are before the cursor, never in later pages
    replica = record(store, matcher, replica)
    while cursor:
        page = store.fills(1, "BTC-USDT", 10, cursor)
        seen += page.items
        cursor = page.next_cursor
    assert len(seen) == 30 and len({fill["trade_id"] for fill in seen}) == 30
    assert [fill["trade_id"] for fill in seen] == sorted((fill["trade_id"] for fill in seen), reverse=True)
    newest = store.fills(1, None, 100).items
    assert len(newest) == 45 and newest[15:] == seen

    trades_first = store.trades("BTC-USDT", 20)
    trade(5)
    record(store, matcher, replica)
    trades_rest = _all_pages(lambda limit, cursor: store.trades("BTC-USDT", limit, cursor or trades_first.next_cursor),
                             20)
    assert len(trades_first.items) + len(trades_rest) == 45
    with pytest.raises(ValueError):
        store.fills(1, None, 10, trades_first.next_cursor)  # a cursor of another listing


def test_candles_query_window_and_limit(store):
    matcher = _matcher_with_trade()
    matcher.fund(2, BTC="100")
    matcher.fund(1, USDT="1000000")
    for minute in range(10):
        ts = START_NS + minute * 60_000 * MS + 30_000 * MS
        matcher.request("place", ts=ts, account_id=2, pair="BTC-USDT", side="sell", type="limit",
                        price=f"{100 + minute}.00", quantity="0.010")
        matcher.request("place", ts=ts + MS, account_id=1, pair="BTC-USDT", side="buy", type="market",
                        quantity="0.010")
    record(store, matcher)
    everything = store.candles("BTC-USDT", "1m", None, None, 1000)
    assert [candle["open_time"] for candle in everything] == [START_MS + minute * 60_000 for minute in range(10)]
    assert everything[0]["close_time"] == START_MS + 59_999
    assert [candle["close"] for candle in everything] == [f"{100 + minute}.00" for minute in range(10)]
    assert store.candles("BTC-USDT", "1m", None, None, 3) == everything[-3:]
    assert store.candles("BTC-USDT", "1m", START_MS + 120_000, None, 2) == everything[2:4]
    assert store.candles("BTC-USDT", "1m", START_MS + 60_001, START_MS + 240_000, 100) == everything[2:5]
    assert store.candles("BTC-USDT", "1m", None, START_MS + 119_999, 100) == everything[:2]
    [five] = store.candles("BTC-USDT", "5m", START_MS, START_MS, 10)
    assert (five["open"], five["high"], five["low"], five["close"], five["trades"]) == ("100.00", "104.00", "100.00",
                                                                                      "104.00", 5)
    assert five["volume"] == "0.050" and five["quote_volume"] == "5.10000000"
    [day] = store.candles("BTC-USDT", "1d", None, None, 10)
    assert day["open_time"] == START_MS and day["close_time"] == START_MS + 86_400_000 - 1 and day["trades"] == 10
    with pytest.raises(ValueError):
        store.candles("BTC-USDT", "2m", None, None, 10)


def test_ticker_covers_the_last_24_hours(store):
    matcher = _matcher_with_trade()
    matcher.fund(2, BTC="100")
    matcher.fund(1, USDT="1000000")
    assert store.ticker("BTC-USDT", START_MS) is None  # not recorded yet
    prices = [("90.00", 0), ("100.00", 3_600_000), ("120.00", 7_200_000), ("110.00", 86_400_000 + 60_000)]
    for price, offset in prices:
        ts = START_NS + offset * MS
        matcher.request("place", ts=ts, account_id=2, pair="BTC-USDT", side="sell", type="limit", price=price,
                        quantity="0.100")
        matcher.request("place", ts=ts + MS, account_id=1, pair="BTC-USDT", side="buy", type="market",
                        quantity="0.100")
    record(store, matcher)
    now = START_MS + 86_400_000 + 120_000
    ticker = store.ticker("BTC-USDT", now)
    # The 90.00 trade at START is more than 24 h old; the window opens with 100.00.
    assert ticker["open"] == "100.00" and ticker["last"] == "110.00"
    assert (ticker["high"], ticker["low"]) == ("120.00", "100.00")
    assert ticker["change"] == "10.00" and ticker["change_percent"] == "10.00"
    assert ticker["volume"] == "0.300" and ticker["quote_volume"] == "33.00000000" and ticker["trades"] == 3
    assert ticker["first_trade_ts"] == START_MS + 3_600_000 + 1
    assert ticker["last_trade_ts"] == START_MS + 86_400_000 + 60_000 + 1
    trade_ids = [trade["trade_id"] for trade in store.trades("BTC-USDT", 10).items]  # newest first
    assert (ticker["first_trade_id"], ticker["last_trade_id"]) == (trade_ids[2], trade_ids[0])
    assert (ticker["prev_close"], ticker["last_quantity"]) == ("90.00", "0.100")  # the trade before the window
    quiet = store.ticker("BTC-USDT", now + 3 * 86_400_000)
    assert quiet["last"] == "110.00" and quiet["volume"] == "0.000" and quiet["trades"] == 0
    assert (quiet["first_trade_id"], quiet["last_trade_id"], quiet["prev_close"]) == (None, None, "110.00")


def test_positions_portfolio_and_leaderboard(store):
    matcher = FakeMatcher()
    matcher.market()  # no fees: the numbers below are round
    matcher.market("ETH-BTC", tick_size="0.0001", lot_size="0.01")
    matcher.market("ETH-USDT")  # USDT quotes the most markets: the default valuation asset
    alice = store.create_trader("alice")["trader_id"]
    bob = store.create_trader("bob")["trader_id"]
    carol = store.create_trader("carol")["trader_id"]
    matcher.fund(alice, USDT="1000")
    matcher.fund(bob, BTC="10", ETH="5")
    # alice buys 2 BTC at 100, then 1 at 130: 3 BTC at an average cost of 110.
    for price, quantity in (("100.00", "2.000"), ("130.00", "1.000")):
        matcher.request("place", account_id=bob, pair="BTC-USDT", side="sell", type="limit", price=price,
                        quantity=quantity)
        matcher.request("place", account_id=alice, pair="BTC-USDT", side="buy", type="market", quantity=quantity)
    # alice sells 1 BTC at 140 to bob, who has the USDT from his sales.
    matcher.request("place", account_id=bob, pair="BTC-USDT", side="buy", type="limit", price="140.00",
                    quantity="1.000")
    matcher.request("place", account_id=alice, pair="BTC-USDT", side="sell", type="market", quantity="1.000")
    record(store, matcher)

    [position] = store.positions(alice)
    assert position == {
        "pair": "BTC-USDT", "asset": "BTC", "quote": "USDT", "quantity": "2.00000000",
        "average_cost": "110.0000000000", "cost": "220.00000000", "realized_pnl": "30.00000000",
        "bought": "3.00000000", "sold": "1.00000000", "last_price": "140.00", "market_value": "280.00000000",
        "unrealized_pnl": "60.00000000",
    }
    portfolio = store.portfolio(alice)
    # 2 BTC at 140 + 1000 - 330 + 140 USDT = 1090; deposits 1000.
    assert portfolio["valuation_asset"] == "USDT"
    assert (portfolio["value"], portfolio["net_deposits"], portfolio["pnl"]) == ("1090.00000000", "1000.00000000",
                                                                                 "90.00000000")
    assert portfolio["return_percent"] == "9.00"
    assert portfolio["unpriced_assets"] == []
    # bob holds ETH, which has no price in USDT (neither ETH market traded).
    bob_portfolio = store.portfolio(bob)
    assert bob_portfolio["unpriced_assets"] == ["ETH"]
    board = store.leaderboard(10)
    assert [entry["username"] for entry in board] == ["alice", "carol", "bob"]
    assert [entry["rank"] for entry in board] == [1, 2, 3]
    assert board[1]["pnl"] == "0.00000000" and board[1]["return_percent"] is None
    # bob: 8 BTC x 140 + 330 - 140 USDT = 1310 against 10 BTC x 140 = 1400 deposited: alice's gain.
    assert board[2]["pnl"] == "-90.00000000"
    assert store.leaderboard(1) == board[:1]
    in_btc = store.portfolio(alice, valuation_asset="BTC")
    # USDT is priced through BTC-USDT inverted: 1/140 BTC.
    assert in_btc["valuation_asset"] == "BTC" and in_btc["assets"][1]["price"] == "0.00714285"
    assert in_btc["value"] == "7.78571428"


def test_replica_refuses_gaps_and_divergence(store):
    matcher = _matcher_with_trade()
    replica = Replica.empty(0)
    with pytest.raises(ReplicaError):
        replica.apply(2, START_NS, matcher.records[1]["cmd"])
    replica.apply(1, START_NS, matcher.records[0]["cmd"])
    with pytest.raises(ReplicaError):  # a deposit of an asset this replica never saw created
        Replica.empty(0).apply(1, START_NS, matcher.records[1]["cmd"])


def test_binance_listings_are_oldest_first_within_their_bounds(store):
    matcher = _matcher_with_trade()
    matcher.fund(2, BTC="100")
    matcher.fund(1, USDT="1000000")
    asks = [matcher.request("place", ts=START_NS + minute * 60_000 * MS, account_id=2, pair="BTC-USDT",
                            side="sell", type="limit", price=f"{100 + minute}.00", quantity="0.010",
                            client_order_id=f"ask-{minute}") for minute in range(5)]
    taker = matcher.request("place", ts=START_NS + 10 * 60_000 * MS, account_id=1, pair="BTC-USDT", side="buy",
                            type="market", quantity="0.030", client_order_id="again")
    sold = matcher.request("place", ts=START_NS + 11 * 60_000 * MS, account_id=1, pair="BTC-USDT", side="sell",
                           type="limit", price="90.00", quantity="0.010", client_order_id="again")
    matcher.request("place", ts=START_NS + 12 * 60_000 * MS, account_id=2, pair="BTC-USDT", side="buy",
                    type="market", quantity="0.010")
    record(store, matcher)
    ask_ids = [ask["order_id"] for ask in asks]

    def ids(orders):
        return [order["order_id"] for order in orders]

    assert ids(store.account_orders(2, "BTC-USDT", 3)) == ask_ids[3:] + [ids(store.orders(2, "all", None, 1).items)[0]]
    assert ids(store.account_orders(2, "BTC-USDT", 2, from_order_id=ask_ids[1])) == ask_ids[1:3]
    assert ids(store.account_orders(2, "BTC-USDT", 10, start_ms=START_MS + 60_000, end_ms=START_MS + 180_000)) == \
        ask_ids[1:4]
    assert store.account_orders(2, "ETH-USDT", 10) == []
    assert store.account_orders(1, "BTC-USDT", 10)[0]["fills"] == []

    fills = store.account_fills(1, "BTC-USDT", 10)
    assert [(fill["order_id"], fill["price"], fill["side"]) for fill in fills] == [
        (taker["order_id"], "100.00", "buy"), (taker["order_id"], "101.00", "buy"), (taker["order_id"], "102.00", "buy"),
        (sold["order_id"], "90.00", "sell")]
    assert store.account_fills(1, "BTC-USDT", 2) == fills[2:]  # the newest, oldest first
    assert store.account_fills(1, "BTC-USDT", 2, from_trade_id=fills[1]["trade_id"]) == fills[1:3]
    assert store.account_fills(1, "BTC-USDT", 10, order_id=sold["order_id"]) == fills[3:]
    assert store.account_fills(1, "BTC-USDT", 10, start_ms=fills[3]["ts"]) == fills[3:]

    # The newest order with a client id wins; each comes with all its fills.
    again = store.order_by_client_id(1, "BTC-USDT", "again")
    assert (again["order_id"], [fill["price"] for fill in again["fills"]]) == (sold["order_id"], ["90.00"])
    assert store.order_by_client_id(2, "BTC-USDT", "ask-0")["order_id"] == ask_ids[0]
    assert store.order_by_client_id(1, "BTC-USDT", "ask-0") is None  # another account's
    assert store.order_by_client_id(2, "ETH-USDT", "ask-0") is None
    assert store.balances_updated_at(1) == START_MS + 12 * 60_000
    assert store.balances_updated_at(99) is None

    [candle] = store.candles("BTC-USDT", "1h", None, None, 10)
    # Bought by takers: 0.030 from account 1 and 0.010 (at 90.00) from account 2; the sell at 90.00 rested.
    assert (candle["volume"], candle["taker_buy_volume"], candle["taker_buy_quote_volume"]) == (
        "0.040", "0.040", "3.93000000")


def test_migration_3_fills_client_ids_in_and_leaves_old_candles_taker_volumes_unknown(store_url):
    backend = backend_for_url(store_url)
    try:
        migrate(backend, MIGRATIONS[:2])
        with backend.transaction(write=True) as tx:
            tx.execute("INSERT INTO orders (order_id, account_id, pair, status, is_open, created_at, updated_at,"
                       " journal_seq, data) VALUES (1024, 7, 'BTC-USDT', 'NEW', 1, 5, 5, 1, %s)",
                       ('{"order_id": 1024, "client_order_id": "old-1", "pair": "BTC-USDT"}',))
            tx.execute("INSERT INTO candles (pair, period, open_time, open, high, low, close, volume, quote_volume,"
                       " trades, first_trade_id, last_trade_id) VALUES ('BTC-USDT', '1m', 0, '1.00', '1.00',"
                       " '1.00', '1.00', '1.000', '1.00000000', 1, 1024, 1024)")
        assert migrate(backend) == [3]
    finally:
        backend.close()
    store = open_store(store_url)
    try:
        assert store.order_by_client_id(7, "BTC-USDT", "old-1")["order_id"] == 1024
        [candle] = store.candles("BTC-USDT", "1m", None, None, 10)
        assert (candle["taker_buy_volume"], candle["taker_buy_quote_volume"]) == (None, None)
    finally:
        store.close()
