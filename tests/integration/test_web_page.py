"""The market web page in headless Chromium against a whole `zmx up` stack.

Debian's Chromium (/usr/bin/chromium) driven by Playwright, no browser download. Orders
placed over REST show in the page's ladder and trades tape as they happen (through the
WebSocket feed, no reload); an order placed from the page's ticket reaches the matcher's
book, shows in open orders and is canceled from there. Every wait is Playwright's
auto-retrying `expect`, bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.ci import skip_or_fail
from tests.integration.gateway_harness import HttpClient
from tests.integration.up_harness import UpStack
from tests.polling import poll_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 15_000
# The REST API may sit behind a stricter CORS list than "*": the page is same-origin and needs none.
ELSEWHERE = "https://elsewhere.example"

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    stack = UpStack(tmp_path_factory.mktemp("web"), gateway={"workers": 1, "threads": 4, "cors_origins": [ELSEWHERE]},
                    feed={"conflation_ms": 50})
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, stack: UpStack) -> Iterator[Any]:
    """A fresh page; fails the test if the page logged an error or threw.

    API refusals and a feed restart are part of the test, so Chromium's "Failed to load
    resource" lines for /api/v1/ answers and its refused WebSocket connections are not
    errors here; any other resource's are.
    """
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        text, url = message.text, message.location["url"]
        expected = ((text.startswith("Failed to load resource") and "/api/v1/" in url)
                    or (text.startswith("WebSocket connection to") and "ERR_CONNECTION_REFUSED" in text))
        if message.type == "error" and not expected:
            problems.append(f"{message.text} ({message.location['url']})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    context.close()
    assert not problems, problems


def create_market(stack: UpStack, pair: str) -> None:
    status, created = stack.request("POST", "/api/v1/admin/markets",
                                    {"pair": pair, "tick_size": "0.01", "lot_size": "0.001"}, stack.admin)
    assert status == 201, created


def create_trader(stack: UpStack, username: str, assets: tuple[str, ...] = ("BTC", "ETH")) -> dict[str, Any]:
    status, created = stack.request("POST", "/api/v1/admin/traders", {"username": username}, stack.admin)
    assert status == 201, created
    trader = created["data"]
    for asset, amount in (("USDT", "100000"), *((asset, "100") for asset in assets)):
        status, deposited = stack.request("POST", "/api/v1/admin/deposits",
                                          {"trader_id": trader["trader_id"], "asset": asset, "amount": amount},
                                          stack.admin)
        assert status == 201, deposited
    return trader


def place(client: HttpClient, pair: str, side: str, price: str, quantity: str) -> dict[str, Any]:
    placed = client.request("POST", "/api/v1/account/orders", {"pair": pair, "side": side, "type": "limit",
                                                               "price": price, "quantity": quantity})
    assert placed.status == 201, placed
    return placed.json["data"]


def kill_feed(stack: UpStack) -> None:
    """SIGKILL the stack's feed process; `zmx up` starts it again."""
    feeds = [child for child in stack.children() if child.cmdline()[-1:] == ["feed"]]
    assert len(feeds) == 1, feeds
    os.kill(feeds[0].pid, signal.SIGKILL)


def level(page: Any, side: str, price: str) -> Any:
    return page.locator(f'#{side} .level[data-price="{price}"] .size')


def test_the_page_follows_the_book_and_trades_live_and_places_orders_from_its_ticket(stack: UpStack,
                                                                                     page: Any) -> None:
    for pair in ("BTC-USDT", "ETH-USDT"):
        create_market(stack, pair)
    maker, taker, user = (create_trader(stack, name) for name in ("maker", "taker", "webuser"))
    maker_client = HttpClient(stack.http_port, maker["api_key"], maker["api_secret"])
    taker_client = HttpClient(stack.http_port, taker["api_key"], taker["api_secret"])
    place(maker_client, "BTC-USDT", "buy", "99.00", "1.000")
    place(maker_client, "BTC-USDT", "sell", "101.00", "2.000")
    place(maker_client, "ETH-USDT", "sell", "20.50", "3.000")

    # The page `zmx up` names loads with the book as it stands.
    assert f"market page http://127.0.0.1:{stack.http_port}/\n" in stack.log_text()
    page.goto(f"http://127.0.0.1:{stack.http_port}/#BTC-USDT")
    expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#market-select")).to_have_value("BTC-USDT")
    expect(level(page, "bids", "99.00")).to_have_text("1.000")
    expect(level(page, "asks", "101.00")).to_have_text("2.000")

    # Orders placed over REST reach the ladder live...
    place(maker_client, "BTC-USDT", "buy", "99.50", "0.300")
    expect(level(page, "bids", "99.50")).to_have_text("0.300")
    # ...and a cross shows in the trades tape and in the ladder.
    place(taker_client, "BTC-USDT", "buy", "101.00", "0.500")
    newest_trade = page.locator("#trades .trade").first
    expect(newest_trade.locator(".price")).to_have_text("101.00")
    expect(newest_trade.locator(".quantity")).to_have_text("0.500")
    expect(newest_trade).to_have_class(re.compile(r"\bbuy\b"))
    expect(level(page, "asks", "101.00")).to_have_text("1.500")

    # Sign in with an API key; the secret stays in this tab.
    page.fill("#api-key", user["api_key"])
    page.fill("#api-secret", user["api_secret"])
    page.click("#key-submit")
    expect(page.locator("#whoami")).to_contain_text("webuser")
    expect(page.locator("#balances")).to_contain_text("USDT 100000")

    # An order from the ticket is in the matcher's book, the ladder and open orders.
    page.click("#ticket .side.sell")
    page.fill("#order-price", "102.50")
    page.fill("#order-quantity", "0.250")
    page.click("#place-order")
    expect(page.locator("#order-message")).to_contain_text("NEW")
    expect(level(page, "asks", "102.50")).to_have_text("0.250")
    open_row = page.locator("#open-orders tr", has_text="102.50")
    expect(open_row).to_contain_text("sell")
    status, book = stack.request("GET", "/api/v1/markets/BTC-USDT/orderbook")
    assert ["102.50", "0.250"] in book["data"]["asks"]

    # Cancel it from open orders: gone from the page and from the book.
    open_row.get_by_role("button", name="Cancel").click()
    expect(page.locator("#open-orders tr")).to_have_count(0)
    expect(level(page, "asks", "102.50")).to_have_count(0)
    status, book = stack.request("GET", "/api/v1/markets/BTC-USDT/orderbook")
    assert ["102.50", "0.250"] not in book["data"]["asks"]

    # The API's refusals are shown from its error envelope, and nothing is placed.
    page.fill("#order-quantity", "0.0005")
    page.click("#place-order")
    expect(page.locator("#order-message")).to_contain_text("INVALID_QUANTITY")
    expect(page.locator("#order-message")).to_have_class(re.compile(r"\berror\b"))

    # A ticket order that takes: a fill for the user, a trade in the tape.
    page.click("#ticket .side.buy")
    page.fill("#order-price", "101.00")
    page.fill("#order-quantity", "0.100")
    page.click("#place-order")
    expect(page.locator("#order-message")).to_contain_text("FILLED")
    expect(page.locator("#fills tr").first).to_contain_text("taker")
    expect(page.locator("#fills tr").first).to_contain_text("0.100")
    expect(newest_trade.locator(".quantity")).to_have_text("0.100")
    expect(level(page, "asks", "101.00")).to_have_text("1.400")

    # The user's own orders and fills arrive on the feed's private channels, also after the
    # feed restarts (the page reconnects, subscribes and signs in again).
    user_client = HttpClient(stack.http_port, user["api_key"], user["api_secret"])
    place(user_client, "BTC-USDT", "sell", "100.50", "0.200")  # the best ask
    expect(page.locator("#open-orders tr", has_text="100.50")).to_contain_text("NEW")
    with page.expect_websocket():
        kill_feed(stack)
    expect(page.locator("#feed-status")).to_have_attribute("data-state", "live")
    place(taker_client, "BTC-USDT", "buy", "100.50", "0.200")
    expect(page.locator("#open-orders tr", has_text="100.50")).to_have_count(0)
    expect(page.locator("#fills tr").first).to_contain_text("maker")
    expect(page.locator("#fills tr").first).to_contain_text("0.200")
    expect(level(page, "asks", "100.50")).to_have_count(0)
    expect(newest_trade.locator(".price")).to_have_text("100.50")

    # A click on a level prices the ticket.
    page.click('#bids .level[data-price="99.50"]')
    expect(page.locator("#order-price")).to_have_value("99.50")

    # The interval switch asks REST for other candles and follows that interval's channel.
    with page.expect_response(lambda response: "/candles?interval=5m" in response.url) as candles:
        page.click('#intervals button[data-interval="5m"]')
    assert candles.value.status == 200
    expect(page.locator('#intervals button[data-interval="5m"]')).to_have_attribute("aria-pressed", "true")

    # The key is kept for the tab: a reload signs in again; "Forget key" drops it.
    page.reload()
    expect(page.locator("#whoami")).to_contain_text("webuser")
    expect(page.locator("#open-orders tr")).to_have_count(0)
    page.click("#forget-key")
    expect(page.locator("#key-form")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0

    # The market selector switches the whole page to another book.
    page.select_option("#market-select", "ETH-USDT")
    expect(level(page, "asks", "20.50")).to_have_text("3.000")
    expect(page.locator("#asks .level")).to_have_count(1)
    expect(page.locator("#trades .trade")).to_have_count(0)
    assert page.evaluate("location.hash") == "#ETH-USDT"

    for client in (maker_client, taker_client, user_client):
        client.close()


def test_book_gaps_and_feed_overrides_in_the_page_modules(stack: UpStack, page: Any) -> None:
    """The page's own logic: a diff that does not chain is a gap; ?ws= may not leave the page's hosts."""
    page.goto(f"http://127.0.0.1:{stack.http_port}/")
    results = page.evaluate("""async () => {
        const { Book } = await import("/static/book.js");
        const { feedUrl } = await import("/static/feed.js");
        const book = new Book();
        const snapshot = {type: "snapshot", seq: 10, data: {bids: [["9.50", "1.000"]], asks: [["10.00", "2.000"]]}};
        const applied = [book.apply(snapshot)];
        applied.push(book.apply({type: "diff", first_seq: 11, seq: 12,
                                 data: {bids: [["9.75", "0.500"]], asks: [["10.00", "0.000"]]}}));
        applied.push(book.apply({type: "diff", first_seq: 14, seq: 14, data: {bids: [], asks: []}}));
        const page = {protocol: "http:", hostname: "127.0.0.1", href: "http://127.0.0.1:8000/"};
        return {
            applied, seq: book.seq, bids: book.levels("bids"), asks: book.levels("asks"),
            plain: feedUrl(page, "", "8001", null),
            proxied: feedUrl({protocol: "https:", hostname: "ex.example", href: "https://ex.example/"}, "/ws", "8001", null),
            sameHost: feedUrl(page, "", "8001", "ws://127.0.0.1:9999/ws"),
            foreign: feedUrl(page, "", "8001", "wss://evil.example/ws"),
        };
    }""")
    assert results["applied"] == ["snapshot", "diff", "gap"]
    assert results["seq"] == 12
    assert results["bids"] == [["9.75", "0.500"], ["9.50", "1.000"]]
    assert results["asks"] == []
    assert results["plain"] == {"url": "ws://127.0.0.1:8001/ws", "warning": None}
    assert results["proxied"] == {"url": "wss://ex.example/ws", "warning": None}
    assert results["sameHost"] == {"url": "ws://127.0.0.1:9999/ws", "warning": None}
    assert results["foreign"]["url"] == "ws://127.0.0.1:8001/ws"
    assert "ignored ?ws=wss://evil.example/ws" in results["foreign"]["warning"]


def test_a_missed_book_diff_makes_the_page_resubscribe_for_a_fresh_snapshot(stack: UpStack, page: Any) -> None:
    """Between the feed and the page, one diff is dropped: the next one does not chain, so the
    page asks for a new snapshot (unsubscribe, subscribe) and ends with the matcher's book."""
    create_market(stack, "GAP-USDT")
    maker = create_trader(stack, "gapmaker", ("GAP",))
    client = HttpClient(stack.http_port, maker["api_key"], maker["api_secret"])
    channel = "orderbook.GAP-USDT.100"
    relay: dict[str, Any] = {"drop": False, "dropped": [], "sent": []}

    def route(socket: Any) -> None:
        server = socket.connect_to_server()

        def from_server(frame: str) -> None:
            message = json.loads(frame)
            if relay["drop"] and message.get("channel") == channel and message.get("type") == "diff":
                relay["drop"] = False
                relay["dropped"].append(message)
                return
            socket.send(frame)

        def from_page(frame: str) -> None:
            relay["sent"].append(json.loads(frame))
            server.send(frame)

        server.on_message(from_server)
        socket.on_message(from_page)

    page.route_web_socket(re.compile(r".*/ws$"), route)
    place(client, "GAP-USDT", "buy", "10.00", "1.000")
    page.goto(f"http://127.0.0.1:{stack.http_port}/#GAP-USDT")
    expect(level(page, "bids", "10.00")).to_have_text("1.000")

    relay["drop"] = True
    place(client, "GAP-USDT", "buy", "10.10", "1.000")
    # Route handlers run while Playwright is called: a cheap call per poll lets them.
    poll_until(lambda: page.evaluate("true") and relay["dropped"], WAIT_MS / 1000, "the relay to drop a diff")
    expect(level(page, "bids", "10.10")).to_have_count(0)
    place(client, "GAP-USDT", "buy", "10.20", "0.500")

    expect(level(page, "bids", "10.20")).to_have_text("0.500")
    expect(level(page, "bids", "10.10")).to_have_text("1.000")
    expect(level(page, "bids", "10.00")).to_have_text("1.000")
    requests = [message for message in relay["sent"] if channel in message.get("channels", ())]
    assert [message["op"] for message in requests] == ["subscribe", "unsubscribe", "subscribe"], requests
    client.close()
