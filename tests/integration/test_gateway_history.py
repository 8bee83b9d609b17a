"""The history routes end to end: matcher, `zmx recorder`, `zmx gateway`, one SQLite store."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.store import open_store
from tests.integration.test_gateway import ORDERS, make_gateway, market, trader_client  # noqa: F401 (fixture)
from tests.integration.test_recorder import RecorderProcess, recorders  # noqa: F401 (fixture)
from tests.polling import poll_until

pytestmark = pytest.mark.integration

API = "/api/v1"


def test_history_routes_serve_what_the_recorder_stored(make_gateway, recorders) -> None:
    cluster, gateway = make_gateway()
    store_url = f"sqlite:///{cluster.data_dir.resolve() / 'store.sqlite3'}"  # the gateway's default store
    recorder = RecorderProcess(cluster, store_url)
    recorders.append(recorder)
    recorder.start()
    market(gateway)
    alice = trader_client(gateway, "alice", USDT="10000", BTC="10")
    bob = trader_client(gateway, "bob", USDT="10000")
    for price in ("100.00", "101.00"):
        placed = alice.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "sell", "type": "limit",
                                                "price": price, "quantity": "1.000"})
        assert placed.status == 201, placed
    taker = bob.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "buy", "type": "market", "quantity": "1.500"})
    assert taker.json["data"]["status"] == "FILLED", taker
    withdrawn = bob.request("POST", f"{API}/account/withdrawals", {"asset": "USDT", "amount": "100"})
    assert withdrawn.status == 201, withdrawn

    store = open_store(store_url)
    try:
        with cluster.matcher(0).client() as matcher:
            journal_seq = matcher.request("ping")["journal_seq"]
        poll_until(lambda: store.recorder_progress(0) >= journal_seq, 20, "the recorder to catch up")
    finally:
        store.close()
    public = gateway.client()

    trades = public.raw("GET", f"{API}/markets/BTC-USDT/trades?limit=1").json["data"]
    assert [(trade["price"], trade["quantity"], trade["taker_side"]) for trade in trades["items"]] == [
        ("101.00", "0.500", "buy")]
    assert trades["has_more"] is True
    rest = public.raw("GET", f"{API}/markets/BTC-USDT/trades?limit=5&cursor={trades['next_cursor']}").json["data"]
    assert [(trade["price"], trade["quantity"]) for trade in rest["items"]] == [("100.00", "1.000")]
    assert (rest["has_more"], rest["next_cursor"]) == (False, None)

    candles = public.raw("GET", f"{API}/markets/BTC-USDT/candles?interval=1h").json["data"]
    assert [(c["open"], c["high"], c["low"], c["close"], c["volume"], c["trades"]) for c in candles] == [
        ("100.00", "101.00", "100.00", "101.00", "1.500", 2)]
    assert Decimal(candles[0]["quote_volume"]) == Decimal("150.5")

    ticker = public.raw("GET", f"{API}/markets/BTC-USDT/ticker").json["data"]
    assert (ticker["last"], ticker["volume"], ticker["trades"]) == ("101.00", "1.500", 2)
    assert (ticker["best_bid"], ticker["best_ask"]) == (None, "101.00")

    closed = bob.request("GET", f"{ORDERS}?status=closed").json["data"]["items"]
    assert [(order["order_id"], order["status"]) for order in closed] == [(taker.json["data"]["order_id"], "FILLED")]
    assert len(alice.request("GET", f"{ORDERS}?status=all").json["data"]["items"]) == 2
    fills = bob.request("GET", f"{API}/account/trades").json["data"]["items"]
    assert [(fill["price"], fill["quantity"], fill["liquidity"]) for fill in fills] == [
        ("101.00", "0.500", "taker"), ("100.00", "1.000", "taker")]
    deposits = alice.request("GET", f"{API}/account/deposits").json["data"]["items"]
    assert sorted((deposit["asset"], Decimal(deposit["amount"])) for deposit in deposits) == [
        ("BTC", Decimal(10)), ("USDT", Decimal(10000))]
    withdrawals = bob.request("GET", f"{API}/account/withdrawals").json["data"]["items"]
    assert [(row["asset"], Decimal(row["amount"])) for row in withdrawals] == [("USDT", Decimal(100))]

    positions = bob.request("GET", f"{API}/account/positions").json["data"]["items"]
    # 1.5 bought, less the 5 bps taker fee charged in the BTC received.
    assert [(position["pair"], Decimal(position["quantity"])) for position in positions] == [
        ("BTC-USDT", Decimal("1.49925"))]
    portfolio = bob.request("GET", f"{API}/account/portfolio").json["data"]
    assert portfolio["trader_id"] == bob.request("GET", f"{API}/account").json["data"]["trader_id"]
    board = bob.request("GET", f"{API}/leaderboard").json["data"]["items"]
    assert sorted(entry["username"] for entry in board) == ["alice", "bob"]

    bad_cursor = bob.request("GET", f"{API}/account/trades?cursor=bm90LWEtY3Vyc29y")
    assert (bad_cursor.status, bad_cursor.code, bad_cursor.json["error"]["details"]) == (
        400, "INVALID_FIELD", {"field": "cursor"})
    unknown = public.raw("GET", f"{API}/markets/NOPE-USDT/trades")
    assert (unknown.status, unknown.code) == (400, "UNKNOWN_MARKET")
    inverted = public.raw("GET", f"{API}/markets/BTC-USDT/candles?start=2000&end=1000")
    assert (inverted.status, inverted.code) == (400, "INVALID_FIELD")
    anonymous = public.raw("GET", f"{API}/account/trades")
    assert (anonymous.status, anonymous.code) == (401, "MISSING_AUTHENTICATION")
