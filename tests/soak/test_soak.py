"""Soak: a whole `zmx up` stack under mixed load while each of its processes is killed once.

What runs, on loopback and free ports (`zmx up` with its demo market and bots,
tests/integration/up_harness.py), on a market of its own, SOAK-USDT:

- TRADERS threads, each one trader with its own API key, send signed REST requests at
  RATE per second on a fixed schedule, drawn from a seeded RNG: 45% limit orders (70%
  resting 1-20 ticks behind 100.00, 30% crossing it by 0-4 ticks, so orders trade),
  20% amends (a lower total quantity, or a new resting price), 25% cancels, 10% open-order
  lookups, which reconcile the trader's idea of its open orders with the matcher's.
- FOLLOWERS threads each keep a book of `orderbook.SOAK-USDT` over WebSocket
  (BookFollower: a snapshot, then diffs that must chain without a gap), reconnecting
  whenever the connection drops.
- Every kind of child of the supervisor, found with psutil (matcher, recorder, gateway,
  feed, the demo's bots, and whatever `zmx up` runs besides), gets SIGKILL once, at evenly
  spread times, while the load goes on; the test waits for the supervisor to restart it.

The clients ride the outages out: a request that gets no answer, or a 504, has an unknown
outcome and is never counted as acknowledged (a later open-order lookup tells the trader
what exists); a 503 `MATCHER_UNAVAILABLE` means the command never left the gateway. Any
other answer that is not the expected one is an error of the run.

Then, with the load stopped and every process back:

- SPEC's invariants: the matcher's `ledger` has totals equal to net deposits for every
  asset, and net deposits grew by exactly what the test deposited; no balance of any
  trader (the demo's included) and no fee-account balance (every market's fees are
  positive here) is negative; the book is not crossed; every level's size is the sum of
  its open orders' remaining quantities;
- every follower holds exactly REST's order book at the same seq (which is the matcher's);
- after every trader cancels all: no balance stays locked, the book is empty, the ledger
  still balances, and the followers hold the empty book at the new seq;
- every acknowledged order exists in the matcher (`get_order`), closed, consistent with
  what its acknowledgements said (a canceled order stays canceled at the filled quantity
  of the cancel; an order acknowledged as FILLED is FILLED), and in the history store
  (`GET /api/v1/account/orders?status=all`) in the same state, with recorded fills
  (`GET /api/v1/account/trades`) that add up to its filled quantity;
- `zmx up` stops on SIGTERM with exit code 0 and no process of the stack is left.

`test_soak` (marker `soak`, left out of the default suite; `make soak`) runs the load for
`ZMX_SOAK_SECONDS` seconds (default 600); `test_soak_short` runs the same code for
SHORT_SECONDS in the default suite.
"""

from __future__ import annotations

import http.client
import itertools
import os
import random
import signal
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.exceptions import WebSocketException

from common.matcher_client import MatcherClient
from tests.integration.feed_harness import BookFollower, FeedClient, snapshot_levels
from tests.integration.gateway_harness import HttpClient, Response
from tests.integration.up_harness import UpStack, healthy
from tests.polling import poll_until

PAIR = "SOAK-USDT"
TICK, LOT = Decimal("0.01"), Decimal("0.001")
REFERENCE_TICKS = 10_000  # 100.00
DEPOSITS = {"USDT": Decimal(1_000_000), "SOAK": Decimal(10_000)}
TRADERS = 4
FOLLOWERS = 2
RATE = 12.0  # requests per second per trader
MAX_OPEN = 30  # a trader with this many open orders cancels instead of placing
SHORT_SECONDS = 35.0
ORDERS = "/api/v1/account/orders"
CLOSED = {"FILLED", "CANCELED", "EXPIRED", "REJECTED"}
# What the gateway answers, correctly, while the matcher restarts.
OUTAGE_CODES = {"MATCHER_UNAVAILABLE", "MATCHER_TIMEOUT"}


@pytest.mark.integration
@pytest.mark.timeout(SHORT_SECONDS + 200)
def test_soak_short(tmp_path: Path) -> None:
    run_soak(tmp_path, SHORT_SECONDS)


@pytest.mark.soak
@pytest.mark.timeout(float(os.environ.get("ZMX_SOAK_SECONDS", "600")) + 300)
def test_soak(tmp_path: Path) -> None:
    run_soak(tmp_path, float(os.environ.get("ZMX_SOAK_SECONDS", "600")))


# ---------------------------------------------------------------- the run


def run_soak(tmp_path: Path, seconds: float) -> None:
    stop_load, stop_following = threading.Event(), threading.Event()
    (tmp_path / "stack").mkdir()
    with UpStack(tmp_path / "stack", demo=True, gateway={"workers": 1, "threads": 4}) as stack:
        with MatcherClient(stack.endpoints["command_endpoint"], timeout=10) as matcher:
            demo_deposits = decimals(matcher.request("ledger")["net_deposits"])
        status, created = stack.request("POST", "/api/v1/admin/markets", {
            "pair": PAIR, "tick_size": str(TICK), "lot_size": str(LOT), "maker_fee_bps": 1, "taker_fee_bps": 5},
            stack.admin)
        assert status == 201, created
        deposits = {asset: str(amount) for asset, amount in DEPOSITS.items()}
        traders = [Trader(number, stack, stack.create_trader(f"soak{number}", deposits), stop_load)
                   for number in range(TRADERS)]
        followers = [Follower(stack.ws_url, stop_following) for _ in range(FOLLOWERS)]
        for thread in (*traders, *followers):
            thread.start()
        try:
            try:
                killed = kill_each_child_once(stack, seconds)
            finally:
                stop_load.set()
                for trader in traders:
                    trader.join(30)
            assert not [trader.name for trader in traders if trader.is_alive()]
            print(summary(traders, followers, killed))
            assert not [error for trader in traders for error in trader.unexpected], stack.error_lines()
            assert sum(len(trader.acked) for trader in traders) >= seconds * TRADERS, "the load did not run"
            wait_until_whole(stack, killed)
            with MatcherClient(stack.endpoints["command_endpoint"], timeout=10) as matcher:
                check_invariants(matcher, traders, followers, stack, demo_deposits)
                cancel_everything(traders, stack)
                check_invariants(matcher, traders, followers, stack, demo_deposits, after_cancel_all=True)
                check_acknowledged_orders(matcher, traders, stack)
        finally:
            stop_following.set()
            for follower in followers:
                follower.join(30)
        assert not [error for follower in followers for error in follower.errors]


def kill_each_child_once(stack: UpStack, seconds: float) -> dict[str, int]:
    """SIGKILL each kind of child once, evenly spread over `seconds`; return kind -> the pid killed."""
    start = time.monotonic()
    children = sorted(stack.children_by_kind().items(), key=lambda item: item[1].pid)
    assert len(children) >= 4, [kind for kind, _ in children]
    killed = {}
    for index, (kind, _) in enumerate(children):
        # A schedule, not a wait for a condition: the kills are meant to land at these times.
        time.sleep(max(0.0, start + seconds * (index + 1) / (len(children) + 1) - time.monotonic()))
        stack.remember_processes()  # gunicorn's workers, so that leaving the stack proves they ended too
        pid = killed[kind] = stack.children_by_kind()[kind].pid
        os.kill(pid, signal.SIGKILL)
        poll_until(lambda: (child := stack.children_by_kind().get(kind)) is not None and child.pid != pid, 30,
                   f"the supervisor to restart {kind}", interval=0.05)
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    return killed


def wait_until_whole(stack: UpStack, killed: dict[str, int]) -> None:
    """Wait until every kind of child runs again and the gateway, the matcher and the feed answer."""
    poll_until(lambda: healthy(stack.http_port), 30, "the gateway's health")
    poll_until(lambda: (health := feed_health(stack.ws_port)) and health["live"] == health["markets"] >= 2, 30,
               "the feed to follow every market")
    now = stack.children_by_kind()
    assert sorted(now) == sorted(killed), (sorted(now), killed)
    assert not [kind for kind, pid in killed.items() if now[kind].pid == pid]


def feed_health(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return orjson.loads(response.read()) if response.status == 200 else {}
    except OSError:
        return {}
    finally:
        connection.close()


# ---------------------------------------------------------------- load


@dataclass
class Acked:
    """What the acknowledgements of one order said."""

    client_order_id: str
    status: str  # when placed
    filled: Decimal  # when placed
    canceled_filled: Decimal | None = None  # filled quantity in the acknowledged cancel


class Trader(threading.Thread):
    """One trader's signed REST flow; records every acknowledged order."""

    def __init__(self, number: int, stack: UpStack, credentials: dict[str, Any], stop: threading.Event) -> None:
        super().__init__(name=f"trader-{number}", daemon=True)
        self.number = number
        self.trader_id = credentials["trader_id"]
        self.credentials = credentials
        self.rng = random.Random(f"soak-{number}")
        self.stop = stop
        self.client = HttpClient(stack.http_port, credentials["api_key"], credentials["api_secret"], timeout=15)
        self.client_order_ids = (f"soak-{number}-{sequence}" for sequence in itertools.count())
        self.acked: dict[int, Acked] = {}
        self.open: dict[int, dict[str, Any]] = {}  # the open orders as last seen
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[str] = []

    def run(self) -> None:
        due = time.monotonic()
        try:
            while not self.stop.is_set():
                self.step()
                # After an outage, carry on at the rate instead of bursting to catch up.
                due = max(due + 1 / RATE, time.monotonic())
                self.stop.wait(due - time.monotonic())
        except Exception:  # a bug of the test itself: make the run fail with it
            self.unexpected.append(traceback.format_exc())
        finally:
            self.client.close()

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.45 and len(self.open) >= MAX_OPEN:
            roll = 0.8  # cancel instead, so the book stays bounded
        if not self.open or roll < 0.45:
            self.place()
        elif roll < 0.65:
            self.amend()
        elif roll < 0.90:
            self.cancel()
        else:
            self.sync()

    def place(self) -> None:
        rng = self.rng
        side = rng.choice(("buy", "sell"))
        offset = -1 - rng.randrange(20) if rng.random() < 0.7 else rng.randrange(5)
        client_order_id = next(self.client_order_ids)
        response = self.request("POST", ORDERS, {
            "pair": PAIR, "side": side, "type": "limit", "price": price(side, offset),
            "quantity": str(rng.randint(1, 50) * LOT), "client_order_id": client_order_id})
        if self.judge("place", response, 201):
            order = response.json["data"]
            self.acked[order["order_id"]] = Acked(client_order_id, order["status"], Decimal(order["filled_quantity"]))
            self.track(order)

    def amend(self) -> None:
        rng = self.rng
        order = self.open[rng.choice(list(self.open))]
        quantity_lots = int(Decimal(order["quantity"]) / LOT)
        filled_lots = int(Decimal(order["filled_quantity"]) / LOT)
        if rng.random() < 0.5 and quantity_lots - filled_lots >= 2:
            body = {"quantity": str(rng.randint(filled_lots + 1, quantity_lots - 1) * LOT)}
        else:
            body = {"price": price(order["side"], -1 - rng.randrange(20))}
        response = self.request("PATCH", f"{ORDERS}/{order['order_id']}", body)
        # AMEND_REJECTED: a fill since the last look left the new quantity at or below the filled one.
        if self.judge("amend", response, 200, "ORDER_NOT_OPEN", "AMEND_REJECTED"):
            self.track(response.json["data"])
        elif response is not None and response.code == "ORDER_NOT_OPEN":
            del self.open[order["order_id"]]

    def cancel(self) -> None:
        order_id = self.rng.choice(list(self.open))
        response = self.request("DELETE", f"{ORDERS}/{order_id}")
        if self.judge("cancel", response, 200, "ORDER_NOT_OPEN"):
            order = response.json["data"]
            if order_id in self.acked:
                self.acked[order_id].canceled_filled = Decimal(order["filled_quantity"])
            del self.open[order_id]
        elif response is not None and response.code == "ORDER_NOT_OPEN":
            del self.open[order_id]

    def sync(self) -> None:
        response = self.request("GET", f"{ORDERS}?status=open&pair={PAIR}&limit=1000")
        if self.judge("open orders", response, 200):
            self.open = {order["order_id"]: order for order in response.json["data"]["items"]}

    def track(self, order: dict[str, Any]) -> None:
        if order["status"] in CLOSED:
            self.open.pop(order["order_id"], None)
        else:
            self.open[order["order_id"]] = order

    def request(self, method: str, target: str, body: Any = None) -> Response | None:
        """Send a signed request; None when no answer came (the outcome is unknown)."""
        try:
            return self.client.request(method, target, body)
        except (OSError, http.client.HTTPException):
            self.client.close()  # the next request opens a new connection
            return None

    def judge(self, operation: str, response: Response | None, success: int, *expected: str) -> bool:
        """Count the outcome; return True for `success`; note anything that should not happen."""
        if response is None:
            self.outcomes[f"{operation}: no answer"] += 1
            return False
        if response.status == success:
            self.outcomes[f"{operation}: {success}"] += 1
            return True
        code = error_code(response)
        self.outcomes[f"{operation}: {response.status} {code}"] += 1
        if code not in OUTAGE_CODES and code not in expected:
            self.unexpected.append(f"{self.name} {operation}: {response!r}")
        return False


def error_code(response: Response) -> str | None:
    try:
        return response.code
    except (ValueError, KeyError, TypeError):  # not an error envelope
        return None


def price(side: str, offset: int) -> str:
    """The price `offset` ticks through 100.00 towards the other side (negative: behind it)."""
    return str((REFERENCE_TICKS + (offset if side == "buy" else -offset)) * TICK)


class Follower(threading.Thread):
    """A WebSocket client keeping the book; reconnects (and gets a new snapshot) whenever it drops."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(name="follower", daemon=True)
        self.url = url
        self.stop = stop
        self.lock = threading.Lock()
        self.book = BookFollower(f"orderbook.{PAIR}")
        self.connections = 0
        self.refused = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with FeedClient(self.url) as client:
                    self.connections += 1
                    reply = client.request("subscribe", "subscribed", channels=[self.book.channel])
                    if reply["op"] == "error":  # e.g. the feed just restarted and the matcher is down
                        self.refused[reply["code"]] += 1
                        self.stop.wait(0.2)
                        continue
                    self.follow(client)
            except (OSError, TimeoutError, WebSocketException) as error:
                self.refused[type(error).__name__] += 1
                self.stop.wait(0.2)
            except AssertionError as error:  # the book diverged: note it, start over from a snapshot
                self.errors.append(f"{error}\n{traceback.format_exc()}")
                self.book = BookFollower(self.book.channel)

    def follow(self, client: FeedClient) -> None:
        while not self.stop.is_set():
            message = client.receive(0.5)
            if message is not None:
                with self.lock:
                    self.book.apply(message)
            client.received.clear()  # FeedClient keeps every message; a soak has too many

    def state(self) -> tuple[int | None, dict[str, list[list[Decimal]]]]:
        with self.lock:
            return self.book.seq, self.book.levels()


def summary(traders: list[Trader], followers: list[Follower], killed: dict[str, int]) -> str:
    outcomes = sum((trader.outcomes for trader in traders), Counter())
    lines = [f"killed and restarted: {', '.join(killed)}",
             f"acknowledged orders: {sum(len(trader.acked) for trader in traders)}"]
    lines += [f"  {outcome}: {count}" for outcome, count in sorted(outcomes.items())]
    for follower in followers:
        lines.append(f"follower: {follower.connections} connections, {follower.book.snapshots} snapshots, "
                     f"{follower.book.diffs} diffs, refused {dict(follower.refused)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- final checks


def cancel_everything(traders: list[Trader], stack: UpStack) -> None:
    for trader in traders:
        client = HttpClient(stack.http_port, trader.credentials["api_key"], trader.credentials["api_secret"])
        try:
            response = client.request("POST", f"{ORDERS}/cancel-all", {"pair": PAIR})
        finally:
            client.close()
        assert response.status == 200, response


def decimals(amounts: dict[str, str]) -> dict[str, Decimal]:
    return {asset: Decimal(amount) for asset, amount in amounts.items()}


def check_invariants(matcher: MatcherClient, traders: list[Trader], followers: list[Follower], stack: UpStack,
                     demo_deposits: dict[str, Decimal], after_cancel_all: bool = False) -> None:
    """SPEC's invariants on the matcher's state, and every follower's book against REST's."""
    ledger = matcher.request("ledger")
    net_deposits = decimals(ledger["net_deposits"])
    assert decimals(ledger["totals"]) == net_deposits, ledger
    expected = {asset: demo_deposits.get(asset, 0) + amount * TRADERS for asset, amount in DEPOSITS.items()}
    assert net_deposits == {**demo_deposits, **expected}, (ledger, demo_deposits)
    for balance in ledger["fee_account"]:
        assert Decimal(balance["available"]) >= 0 and Decimal(balance["locked"]) >= 0, ledger
    admin = HttpClient(stack.http_port)
    try:
        everyone = pages(admin, "/api/v1/admin/traders", stack.admin)
    finally:
        admin.close()
    for trader in everyone:
        for balance in matcher.request("balances", account_id=trader["trader_id"]):
            assert Decimal(balance["available"]) >= 0 and Decimal(balance["locked"]) >= 0, (trader, balance)
    open_levels: dict[tuple[str, Decimal], Decimal] = defaultdict(Decimal)
    for trader in traders:
        if after_cancel_all:
            for balance in matcher.request("balances", account_id=trader.trader_id):
                assert Decimal(balance["locked"]) == 0, (trader.name, balance)
        for order in matcher.request("open_orders", account_id=trader.trader_id, pair=PAIR):
            open_levels[order["side"], Decimal(order["price"])] += Decimal(order["remaining_quantity"])
    snapshot = matcher.request("snapshot", pair=PAIR)
    book = {("buy", Decimal(price)): Decimal(size) for price, size in snapshot["bids"]}
    book.update({("sell", Decimal(price)): Decimal(size) for price, size in snapshot["asks"]})
    assert book == open_levels
    if snapshot["bids"] and snapshot["asks"]:
        assert Decimal(snapshot["bids"][0][0]) < Decimal(snapshot["asks"][0][0]), "crossed book"
    if after_cancel_all:
        assert not book
    status, rest_book = stack.request("GET", f"/api/v1/markets/{PAIR}/orderbook?depth=5000")
    assert status == 200, rest_book
    rest_book = rest_book["data"]
    assert (rest_book["seq"], snapshot_levels(rest_book)) == (snapshot["seq"], snapshot_levels(snapshot))
    for follower in followers:
        # An idle market's heartbeat brings a lagging client to the current seq within a second.
        seq, levels = poll_until(lambda: (state := follower.state())[0] == rest_book["seq"] and state, 15,
                                 f"a follower to reach seq {rest_book['seq']} (it has {follower.state()[0]})")
        assert levels == snapshot_levels(rest_book), f"a follower's book diverged at seq {seq}"


def check_acknowledged_orders(matcher: MatcherClient, traders: list[Trader], stack: UpStack) -> None:
    """Every acknowledged order: in the matcher as acknowledged, and in the store in the same state."""
    for trader in traders:
        orders = get_orders(matcher, trader)
        for order_id, acked in trader.acked.items():
            order = orders[order_id]
            assert order["client_order_id"] == acked.client_order_id, order
            assert order["status"] in CLOSED, order
            assert Decimal(order["filled_quantity"]) >= acked.filled, (acked, order)
            if acked.status == "FILLED":
                assert order["status"] == "FILLED", (acked, order)
            if acked.canceled_filled is not None:
                assert (order["status"], Decimal(order["filled_quantity"])) == ("CANCELED", acked.canceled_filled), \
                    (acked, order)
        client = HttpClient(stack.http_port, trader.credentials["api_key"], trader.credentials["api_secret"])
        try:
            # The recorder writes the store with some delay (and caught up after its own restart).
            poll_until(lambda: not store_differences(client, orders, trader.acked), 60,
                       f"the store to hold {trader.name}'s orders as the matcher does")
        except AssertionError as error:
            raise AssertionError(f"{error}: {store_differences(client, orders, trader.acked)[:5]}") from None
        finally:
            client.close()


def get_orders(matcher: MatcherClient, trader: Trader) -> dict[int, dict[str, Any]]:
    """The matcher's `get_order` of every acknowledged order (pipelined, in chunks)."""
    orders = {}
    order_ids = list(trader.acked)
    for start in range(0, len(order_ids), 500):
        chunk = order_ids[start:start + 500]
        requests = [matcher.send("get_order", account_id=trader.trader_id, order_id=order_id) for order_id in chunk]
        for order_id, request_id in zip(chunk, requests):
            reply = matcher.wait(request_id)
            assert reply["ok"], (order_id, reply)
            orders[order_id] = reply["data"]
    return orders


def store_differences(client: HttpClient, orders: dict[int, dict[str, Any]], acked: dict[int, Acked]) -> list:
    """What the store has differently from the matcher for the acknowledged orders (empty: nothing)."""
    stored = {order["order_id"]: order for order in pages(client, f"{ORDERS}?status=all&pair={PAIR}")}
    fills: dict[int, Decimal] = defaultdict(Decimal)
    for fill in pages(client, f"/api/v1/account/trades?pair={PAIR}"):
        fills[fill["order_id"]] += Decimal(fill["quantity"])
    differences = []
    fields = ("client_order_id", "side", "price", "quantity", "filled_quantity", "status")
    for order_id in acked:
        order, record = orders[order_id], stored.get(order_id)
        if record is None:
            differences.append((order_id, "not in the store"))
        elif [record[field] for field in fields] != [order[field] for field in fields]:
            differences.append((order_id, {field: (order[field], record[field]) for field in fields}))
        elif fills[order_id] != Decimal(order["filled_quantity"]):
            differences.append((order_id, f"fills add up to {fills[order_id]}, filled {order['filled_quantity']}"))
    return differences


def pages(client: HttpClient, target: str, admin: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every item of a paginated list: signed by the client's key, or with the admin's headers."""
    items, cursor = [], None
    while True:
        page_target = f"{target}{'&' if '?' in target else '?'}limit=1000" + (f"&cursor={cursor}" if cursor else "")
        response = client.raw("GET", page_target, headers=admin) if admin else client.request("GET", page_target)
        assert response.status == 200, response
        page = response.json["data"]
        items += page["items"]
        if not page["has_more"]:
            return items
        cursor = page["next_cursor"]
