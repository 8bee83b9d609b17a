"""The SDK against the real stack: a matcher, gunicorn gateway and WebSocket feed, shared by this module.

The REST client (trader alice) and the bot client (trader bob, CURVE key registered to his
account) run the same calls and must get the same answers; a bot acts only on its own
orders, and a key the matcher does not know cannot connect. The books the WebSocket client
and both bot clients keep must equal the matcher's snapshot at the same seq after a flow
of orders.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from common.errors import AuthenticationError, Conflict, Forbidden, InvalidRequest, NotFound, OrderRejected
from common.matcher_client import MatcherClient
from common.sdk import AsyncBotClient, BotClient, BotKey, FeedClient, RestClient
from tests.integration.feed_harness import FeedProcess
from tests.integration.gateway_harness import GatewayProcess
from tests.integration.harness import MatcherCluster, MatcherProcess
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
FUNDS = {"USDT": "100000", "BTC": "100"}
# Fields that differ between two accounts placing the same order.
VARYING = {"order_id", "account_id", "created_at", "updated_at"}


class Stack:
    def __init__(self, matcher: MatcherProcess, gateway: GatewayProcess, feed: FeedProcess) -> None:
        self.matcher, self.gateway, self.feed = matcher, gateway, feed
        self.admin: MatcherClient = matcher.client()
        self.users = 0
        self.clients: list[RestClient | BotClient] = []

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def rest_trader(self) -> tuple[int, RestClient]:
        self.users += 1
        trader = self.gateway.create_trader(f"rest{self.users}", FUNDS)
        client = RestClient(f"http://127.0.0.1:{self.gateway.port}", trader["api_key"], trader["api_secret"])
        self.clients.append(client)
        return trader["trader_id"], client

    def bot(self, key: BotKey | None = None, **options) -> tuple[BotKey, BotClient]:
        if key is None:
            self.users += 1
            trader_id = self.gateway.create_trader(f"bot{self.users}", FUNDS)["trader_id"]
            key = BotKey.generate(trader_id)
            self.admin.request("register_bot_key", account_id=trader_id, public_key=key.public_key)
        client = BotClient(self.matcher.endpoints["bot_endpoint"], self.matcher.bot_public_key, key,
                           public_endpoint=self.matcher.endpoints["public_endpoint"], **options)
        self.clients.append(client)
        return key, client


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cluster = MatcherCluster(tmp_path_factory.mktemp("sdk"))
    gateway = feed = stack = None
    try:
        matcher = cluster.start(0)
        gateway = GatewayProcess(cluster, workers=1, threads=4)
        gateway.start()
        created = gateway.client().admin("POST", "/api/v1/admin/markets", {
            "pair": PAIR, "tick_size": "0.01", "lot_size": "0.001", "maker_fee_bps": -1, "taker_fee_bps": 5})
        assert created.status == 201, created
        feed = FeedProcess(cluster).start()
        stack = Stack(matcher, gateway, feed)
        yield stack
    finally:
        if stack is not None:
            stack.close()
        if feed is not None and feed.popen is not None:
            feed.stop()
        if gateway is not None:
            gateway.stop()
        cluster.close()


def comparable(order: dict) -> dict:
    return {name: value for name, value in order.items() if name not in VARYING}


def rejection(call) -> tuple[type, str, int]:
    with pytest.raises(Exception) as caught:
        call()
    return type(caught.value), caught.value.code, caught.value.number


def test_rest_and_bot_clients_answer_the_same_calls_alike(stack: Stack) -> None:
    _, rest = stack.rest_trader()
    _, bot = stack.bot()
    outcomes = []
    for client in (rest, bot):
        placed = client.place(PAIR, "buy", price="99.00", quantity=Decimal("1.000"), client_order_id="same-1")
        amended = client.amend(placed["order_id"], quantity="0.500")
        found = client.get_order(client_order_id="same-1")
        listed = client.open_orders(PAIR)
        balances = client.balances()
        errors = [
            rejection(lambda: client.place(PAIR, "buy", price="99.00", quantity="1000000.000")),
            rejection(lambda: client.place(PAIR, "buy", price="98.00", quantity="0.100", client_order_id="same-1")),
            rejection(lambda: client.place(PAIR, "buy", price="98.001", quantity="0.100")),
            rejection(lambda: client.cancel(987_654_321 << 10)),
            rejection(lambda: client.amend(placed["order_id"], quantity="0")),
        ]
        second = client.place(PAIR, "sell", price="120.00", quantity="0.100", client_order_id="same-2")
        canceled = client.cancel(placed["order_id"])
        all_canceled = client.cancel_all(PAIR)
        outcomes.append({
            "placed": comparable(placed), "amended": comparable(amended), "found": comparable(found),
            "listed": [comparable(order) for order in listed], "balances": balances, "errors": errors,
            "canceled": comparable(canceled),
            "all_canceled": [comparable(order) for order in all_canceled["canceled"]],
            "second_was_canceled": [order["order_id"] for order in all_canceled["canceled"]] == [second["order_id"]],
            "open_after": client.open_orders(),
        })
    assert outcomes[0] == outcomes[1]
    outcome = outcomes[0]
    assert outcome["placed"]["status"] == "NEW" and outcome["amended"]["quantity"] == "0.500"
    assert outcome["found"] == outcome["amended"] and outcome["listed"] == [outcome["amended"]]
    assert {b["asset"]: b["locked"] for b in outcome["balances"]}["USDT"] == "49.52475000"  # 49.5 + the 5 bps fee
    assert outcome["errors"] == [
        (OrderRejected, "INSUFFICIENT_BALANCE", 4001), (Conflict, "DUPLICATE_CLIENT_ORDER_ID", 3003),
        (InvalidRequest, "INVALID_PRICE", 1003), (NotFound, "ORDER_NOT_FOUND", 3002),
        (InvalidRequest, "INVALID_QUANTITY", 1004)]
    assert outcome["canceled"]["status"] == "CANCELED" and outcome["second_was_canceled"]
    assert outcome["open_after"] == []


def test_fills_reach_the_taker_in_its_answer_and_the_maker_bot_as_an_event(stack: Stack) -> None:
    _, rest = stack.rest_trader()
    key, bot = stack.bot()
    bot.connect()
    resting = bot.place(PAIR, "sell", price="100.00", quantity="1.000", client_order_id="maker-1")
    taken = rest.place(PAIR, "buy", price="100.00", quantity="0.400", time_in_force="IOC")
    assert taken["status"] == "FILLED"
    assert [(fill["price"], fill["quantity"], fill["liquidity"]) for fill in taken["fills"]] == [
        ("100.00", "0.400", "taker")]

    def fill_event() -> dict | None:
        return next((event for event in bot.poll(0.2) if event["type"] == "account" and event["fills"]), None)

    event = poll_until(fill_event, 10, "the maker's fill event")
    assert event["account_id"] == key.account_id
    assert [(order["order_id"], order["status"], order["filled_quantity"]) for order in event["orders"]] == [
        (resting["order_id"], "PARTIALLY_FILLED", "0.400")]
    assert [(fill["liquidity"], fill["fee"]) for fill in event["fills"]] == [("maker", "-0.00400000")]  # rebate
    assert bot.get_order(resting["order_id"])["filled_quantity"] == "0.400"
    assert bot.cancel_all()["canceled"][0]["client_order_id"] == "maker-1"


def test_a_bot_cannot_act_on_another_traders_orders(stack: Stack) -> None:
    alice_id, alice = stack.rest_trader()
    _, bot = stack.bot()
    theirs = alice.place(PAIR, "sell", price="130.00", quantity="1.000", client_order_id="alices")
    for call in (lambda: bot.cancel(theirs["order_id"]),
                 lambda: bot.amend(theirs["order_id"], price="131.00"),
                 lambda: bot.get_order(theirs["order_id"]),
                 lambda: bot.cancel(client_order_id="alices")):
        assert rejection(call) == (NotFound, "ORDER_NOT_FOUND", 3002)
    for op, fields in (("cancel_all", {}), ("open_orders", {}), ("balances", {}),
                       ("cancel", {"order_id": theirs["order_id"]})):
        assert rejection(lambda: bot.request(op, account_id=alice_id, **fields)) == (Forbidden, "FORBIDDEN", 2005)
    assert rejection(lambda: bot.request("deposit", asset="USDT", amount="1")) == (Forbidden, "FORBIDDEN", 2005)
    assert bot.cancel_all()["canceled"] == []
    assert alice.get_order(theirs["order_id"])["status"] == "NEW"
    alice.cancel(theirs["order_id"])


def test_an_unregistered_or_revoked_key_cannot_connect(stack: Stack) -> None:
    stranger = BotKey.generate(999)
    _, bot = stack.bot(stranger, connect_timeout=10.0)
    started = time.monotonic()
    assert rejection(bot.connect) == (AuthenticationError, "INVALID_API_KEY", 2002)
    assert time.monotonic() - started < 5.0  # refused at the handshake, not after a timeout
    assert rejection(lambda: bot.place(PAIR, "buy", price="1.00", quantity="0.010")) == (
        AuthenticationError, "INVALID_API_KEY", 2002)
    assert stack.admin.request("open_orders", account_id=999) == []

    key, bot = stack.bot()
    assert bot.connect()["shard_id"] == 0
    stack.admin.request("revoke_bot_key", public_key=key.public_key)
    assert rejection(bot.ping) == (Forbidden, "FORBIDDEN", 2005)  # the open connection is cut off
    _, again = stack.bot(key)
    assert rejection(again.connect)[1] == "INVALID_API_KEY"
    stack.admin.request("register_bot_key", account_id=key.account_id, public_key=key.public_key)
    again.reconnect()  # libzmq gives up on a refused key; a new connection tries again
    assert again.connect()["shard_id"] == 0


def run_flow(endpoint: str, accounts: list[int], count: int, seed: int) -> None:
    """Send `count` random limit orders around 100.00 (about a quarter of them crossing) and some cancels."""
    with MatcherClient(endpoint) as admin:
        send_orders(admin, accounts, count, random.Random(seed))


def send_orders(admin: MatcherClient, accounts: list[int], count: int, rng: random.Random) -> None:
    open_orders: list[tuple[int, int]] = []
    for _ in range(count):
        account = rng.choice(accounts)
        if open_orders and rng.random() < 0.25:
            account, order_id = open_orders.pop(rng.randrange(len(open_orders)))
            try:
                admin.request("cancel", account_id=account, order_id=order_id)
            except (NotFound, OrderRejected):
                pass  # filled meanwhile
            continue
        side = rng.choice(("buy", "sell"))
        offset = rng.randint(-3, 12)
        price = Decimal(100) + (Decimal(-offset) if side == "buy" else Decimal(offset)) / 10
        order = admin.request("place", account_id=account, pair=PAIR, side=side, type="limit",
                              price=f"{price:.2f}", quantity=f"{rng.randint(1, 20) / 100:.3f}")
        if order["status"] in ("NEW", "PARTIALLY_FILLED"):
            open_orders.append((account, order["order_id"]))


def book_levels(book) -> dict:
    return {side: [[str(price), str(size)] for price, size in levels] for side, levels in book.levels().items()}


def test_books_over_websocket_and_raw_zeromq_equal_the_matchers(stack: Stack) -> None:
    accounts = [stack.rest_trader()[0] for _ in range(2)]
    key, bot = stack.bot()
    sync_book = bot.wait_for_book(PAIR)

    async def scenario() -> dict:
        async with FeedClient(stack.feed.url) as feed, AsyncBotClient(
                stack.matcher.endpoints["bot_endpoint"], stack.matcher.bot_public_key, key,
                public_endpoint=stack.matcher.endpoints["public_endpoint"]) as async_bot:
            await feed.subscribe(f"orderbook.{PAIR}")
            async_book = await async_bot.wait_for_book(PAIR)
            await asyncio.get_running_loop().run_in_executor(None, run_flow, stack.matcher.endpoints[
                "command_endpoint"], accounts, 300, 7)
            target = stack.admin.request("snapshot", pair=PAIR)
            ws_book = feed.books[f"orderbook.{PAIR}"]
            deadline = time.monotonic() + 10
            while (ws_book.seq, async_book.seq) != (target["seq"], target["seq"]):
                assert time.monotonic() < deadline, (ws_book, async_book, target["seq"])
                await feed.next_message(0.1)
            placed = await async_bot.place(PAIR, "buy", price="50.00", quantity="0.100", client_order_id="async-1")
            event = await async_bot.next_event(5)
            while event is not None and event["type"] != "account":
                event = await async_bot.next_event(5)
            assert event["orders"][0]["order_id"] == placed["order_id"]
            assert (await async_bot.cancel(client_order_id="async-1"))["status"] == "CANCELED"
            return {"target": target, "ws": book_levels(ws_book), "async": book_levels(async_book)}

    seen = asyncio.run(scenario())
    target = seen["target"]
    expected = {"bids": target["bids"], "asks": target["asks"]}
    assert target["seq"] > 250 and target["bids"] and target["asks"]
    assert seen["ws"] == expected and seen["async"] == expected

    def sync_book_at(seq: int) -> bool:
        bot.poll(0.1)
        return sync_book.seq == seq

    # Two updates later: the async bot's order, placed and canceled, left the levels as they were.
    poll_until(lambda: sync_book_at(target["seq"] + 2), 10, "the sync bot's book")
    assert book_levels(sync_book) == expected
    assert bot.last_trade(PAIR) is not None
