"""Locust load test of the REST API: a seeded mix of public reads and signed order entry.

    locust -f loadtest/locust_rest.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 --html rest-report.html

Run it against `zmx up` (or any gateway). Setup, not measured: when the test starts, the
market `--pair` (default BTC-USDT, the demo market) is created if it does not exist
(tick 0.01, lot 0.001, maker 1 bps, taker 5 bps); then every user creates its own trader
through the admin API and deposits 1,000,000 of the quote asset and 10,000 of the base.
Each simulated user is one trader, so `-u 50` trades from 50 accounts. The admin token is
`--admin-token`, else `ZMX_ADMIN_TOKEN`, else the file `<--data-dir>/gateway/admin.token`
(`zmx up` writes it there; default data directory `./data`).

Order mix. Each user draws its actions from its own `random.Random(f"{seed}-{n}")` (n: the
order in which users started), so a run with the same seed and user count repeats the same
decisions (what the server answers still differs from run to run):

    place a limit GTC order   35%   70% rest 1-20 ticks behind the reference price,
                                    30% cross it by 0-4 ticks; side at random; 1-50 times
                                    the smallest order the market accepts at these prices
    amend an open order       15%   half lower its total quantity (keeps priority), half
                                    move it to 1-20 ticks behind the reference
    cancel an open order      20%
    order book (depth 20)     10%   public
    ticker, recent trades     5%, 5%  public, from the history store
    own open orders           5%   also resynchronises the user's list of open orders
    own balances              5%

With no open order, amend and cancel place instead; above `--max-open` open orders, place
cancels instead, so the book stays bounded. The reference price is `--price`, else the
book's mid price, else the last trade, else 100. An amend or cancel that races with a fill
(`ORDER_NOT_OPEN`, `ORDER_NOT_FOUND`, `AMEND_REJECTED` because the order filled meanwhile)
is the server answering correctly and counts as a success; any other status that is not
2xx is a failure, including 429 (raise the gateway's `rate_limit_*` settings for very
large runs: every public read of a run comes from one address).

Latency is Locust's: from sending a request to the end of its response, per request name.
Locust users are a closed loop (a user waits for each answer before its next request) and
each user is paced at `--user-rate` requests per second (constant throughput), so a stall
of the server delays the requests that should have been sent during it rather than
charging them: these percentiles suffer from coordinated omission. Paced latencies without
it: loadtest/bench_gateway.py. docs/loadtest.md explains the runs.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import time
import urllib.error
import urllib.request
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from locust import FastHttpUser, constant_throughput, events, task

OK_RACES = {"ORDER_NOT_OPEN", "ORDER_NOT_FOUND", "AMEND_REJECTED"}
ORDERS = "/api/v1/account/orders"
QUOTE_DEPOSIT = "1000000"
BASE_DEPOSIT = "10000"
user_numbers = itertools.count()
market: dict = {}


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    parser.add_argument("--pair", default="BTC-USDT", help="market to trade (created when missing)")
    parser.add_argument("--admin-token", default="", include_in_web_ui=False,
                        help="admin token (default: $ZMX_ADMIN_TOKEN, else <data-dir>/gateway/admin.token)")
    parser.add_argument("--data-dir", default="data", help="zmx data directory holding gateway/admin.token")
    parser.add_argument("--seed", type=int, default=42, help="seed of every user's order flow")
    parser.add_argument("--price", default="", help="reference price (default: the book's mid, or 100)")
    parser.add_argument("--user-rate", type=float, default=5.0, help="requests per second per user")
    parser.add_argument("--max-open", type=int, default=40, help="open orders per user before it cancels")


def admin_token(options) -> str:
    if options.admin_token:
        return options.admin_token
    if os.environ.get("ZMX_ADMIN_TOKEN"):
        return os.environ["ZMX_ADMIN_TOKEN"]
    path = Path(options.data_dir) / "gateway" / "admin.token"
    try:
        return path.read_text().strip()
    except OSError as error:
        raise SystemExit(f"locust_rest: no admin token: pass --admin-token or set ZMX_ADMIN_TOKEN ({error})")


def call(host: str, method: str, target: str, body: object = None, headers: dict | None = None) -> tuple[int, dict]:
    """One setup request outside Locust's statistics; return (status, decoded envelope)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(host + target, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
    except urllib.error.URLError as error:
        raise SystemExit(f"locust_rest: cannot reach {host}: {error.reason}") from None


def admin_call(environment, target: str, body: dict) -> dict:
    status, envelope = call(environment.host, "POST", target, body, {"Authorization": f"Bearer {market['token']}"})
    if status != 201:
        raise RuntimeError(f"POST {target} answered {status}: {envelope}")
    return envelope["data"]


@events.test_start.add_listener
def set_up_market(environment, **kwargs) -> None:
    """Create the market when it is missing and choose the reference price."""
    options = environment.parsed_options
    market["token"] = admin_token(options)
    pair = options.pair
    status, envelope = call(environment.host, "POST", "/api/v1/admin/markets",
                            {"pair": pair, "tick_size": "0.01", "lot_size": "0.001", "maker_fee_bps": 1,
                             "taker_fee_bps": 5}, {"Authorization": f"Bearer {market['token']}"})
    if status != 201 and envelope.get("error", {}).get("code") != "ALREADY_EXISTS":
        raise RuntimeError(f"creating {pair} answered {status}: {envelope}")
    markets = call(environment.host, "GET", "/api/v1/markets")[1]["data"]["items"]
    found = next(item for item in markets if item["pair"] == pair)
    tick, lot = Decimal(found["tick_size"]), Decimal(found["lot_size"])
    reference = Decimal(options.price) if options.price else reference_price(environment.host, pair)
    # At least 100 ticks, so that 20 ticks behind it is still a positive price.
    reference_ticks = max(int(reference / tick), 100)
    # The smallest order the market takes at the lowest price the flow sends, in whole lots.
    smallest = max(Decimal(found["min_quantity"]), Decimal(found["min_notional"]) / ((reference_ticks - 20) * tick))
    unit = max((smallest / lot).to_integral_value(rounding=ROUND_CEILING), 1) * lot
    market.update(pair=pair, base=found["base"], quote=found["quote"], tick=tick, unit=unit,
                  reference_ticks=reference_ticks)


def reference_price(host: str, pair: str) -> Decimal:
    book = call(host, "GET", f"/api/v1/markets/{pair}/orderbook?depth=1")[1]["data"]
    if book["bids"] and book["asks"]:
        return (Decimal(book["bids"][0][0]) + Decimal(book["asks"][0][0])) / 2
    last = call(host, "GET", f"/api/v1/markets/{pair}/ticker")[1]["data"]["last"]
    return Decimal(last) if last else Decimal(100)


class RestTrader(FastHttpUser):
    """One trader: its own account and API key, its own seeded flow."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        number = next(user_numbers)
        self.rng = random.Random(f"{options.seed}-{number}")
        self.pace = constant_throughput(options.user_rate)
        self.max_open = options.max_open
        # A run tag keeps usernames unique when the same stack sees several runs.
        username = f"load-{int(time.time() * 1000) % 10**10}-{os.getpid()}-{number}"
        trader = admin_call(self.environment, "/api/v1/admin/traders", {"username": username})
        for asset, amount in ((market["quote"], QUOTE_DEPOSIT), (market["base"], BASE_DEPOSIT)):
            admin_call(self.environment, "/api/v1/admin/deposits",
                       {"trader_id": trader["trader_id"], "asset": asset, "amount": amount})
        self.api_key, self.secret = trader["api_key"], trader["api_secret"].encode()
        self.open_orders: dict[int, dict] = {}  # order id -> the order as last seen

    def wait_time(self) -> float:
        return self.pace(self)

    @task
    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.35:
            self.place_or_cancel()
        elif roll < 0.50:
            self.amend() if self.open_orders else self.place_or_cancel()
        elif roll < 0.70:
            self.cancel() if self.open_orders else self.place_or_cancel()
        elif roll < 0.80:
            self.public(f"/api/v1/markets/{market['pair']}/orderbook?depth=20", "/api/v1/markets/{pair}/orderbook")
        elif roll < 0.85:
            self.public(f"/api/v1/markets/{market['pair']}/ticker", "/api/v1/markets/{pair}/ticker")
        elif roll < 0.90:
            self.public(f"/api/v1/markets/{market['pair']}/trades?limit=50", "/api/v1/markets/{pair}/trades")
        elif roll < 0.95:
            self.sync_open_orders()
        else:
            self.signed("GET", "/api/v1/account/balances")

    # ---------------------------------------------------------------- actions

    def place_or_cancel(self) -> None:
        if len(self.open_orders) >= self.max_open:
            return self.cancel()
        rng = self.rng
        side = rng.choice(("buy", "sell"))
        # 70% rest 1-20 ticks behind the reference, 30% cross it by 0-4 ticks.
        offset = -1 - rng.randrange(20) if rng.random() < 0.7 else rng.randrange(5)
        quantity = rng.randint(1, 50) * market["unit"]
        order = self.signed("POST", ORDERS, {"pair": market["pair"], "side": side, "type": "limit",
                                             "price": price(side, offset), "quantity": str(quantity)})
        if order is not None:
            self.remember(order)

    def amend(self) -> None:
        rng = self.rng
        order_id = rng.choice(list(self.open_orders))
        order = self.open_orders[order_id]
        unit = market["unit"]
        open_units = int((Decimal(order["quantity"]) - Decimal(order["filled_quantity"])) / unit)
        if rng.random() < 0.5 and open_units >= 2:
            # A lower total quantity, still above the filled one: keeps the order's priority.
            body = {"quantity": str(Decimal(order["quantity"]) - rng.randint(1, open_units - 1) * unit)}
        else:
            body = {"price": price(order["side"], -1 - rng.randrange(20))}
        amended = self.signed("PATCH", f"{ORDERS}/{order_id}", body, name=f"{ORDERS}/{{order_id}}")
        self.open_orders.pop(order_id, None)
        if amended is not None:
            self.remember(amended)

    def cancel(self) -> None:
        order_id = self.rng.choice(list(self.open_orders))
        self.signed("DELETE", f"{ORDERS}/{order_id}", name=f"{ORDERS}/{{order_id}}")
        self.open_orders.pop(order_id, None)

    def sync_open_orders(self) -> None:
        page = self.signed("GET", f"{ORDERS}?status=open&pair={market['pair']}&limit=1000",
                           name=f"{ORDERS}?status=open")
        if page is not None:
            self.open_orders = {order["order_id"]: order for order in page["items"]}

    def remember(self, order: dict) -> None:
        if order["status"] in ("NEW", "PARTIALLY_FILLED"):
            self.open_orders[order["order_id"]] = order

    # ---------------------------------------------------------------- HTTP

    def public(self, target: str, name: str) -> None:
        with self.client.get(target, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    def signed(self, method: str, target: str, body: dict | None = None, name: str | None = None) -> dict | None:
        """Send a signed request; return the envelope's data on success, None otherwise."""
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        timestamp = str(int(time.time() * 1000))
        signature = hmac.new(self.secret, timestamp.encode() + method.encode() + target.encode() + data,
                             hashlib.sha256).hexdigest()
        headers = {"X-API-Key": self.api_key, "X-Timestamp": timestamp, "X-Signature": signature,
                   "Content-Type": "application/json"}
        with self.client.request(method, target, data=data or None, headers=headers, name=name or target,
                                 catch_response=True) as response:
            if 200 <= response.status_code < 300:
                return response.json()["data"]
            code = error_code(response)
            if code in OK_RACES and method in ("PATCH", "DELETE"):
                response.success()  # the order filled or closed meanwhile: a correct answer
            else:
                response.failure(f"{response.status_code} {code}: {response.text[:200]}")
        return None


def price(side: str, offset: int) -> str:
    """The price `offset` ticks through the reference towards the other side (negative: behind it)."""
    ticks = market["reference_ticks"] + (offset if side == "buy" else -offset)
    return str(ticks * market["tick"])


def error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
