"""The bot clients across a stalled and a restarted matcher: unknown outcomes, reconnect events, reconcile.

A stalled matcher (SIGSTOP) makes a request time out: its outcome is unknown, and
reconciling by client_order_id finds it once the matcher runs again. A matcher killed
while stalled never ran what was waiting for it: after the restart the client reconnects
by itself, reports it, and reconciling says the order is not there, so it may be placed
again. Nothing sent while the matcher is away is queued for later.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from common.errors import ConnectionFailed, OutcomeUnknown
from common.sdk import AsyncBotClient, BotClient, BotKey
from tests.integration.harness import MatcherProcess
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
BOT, OTHER = 5, 6


@pytest.fixture
def key(matcher: MatcherProcess) -> BotKey:
    admin = matcher.client()
    admin.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account_id in (BOT, OTHER):
        admin.request("deposit", account_id=account_id, asset="USDT", amount="100000")
        admin.request("deposit", account_id=account_id, asset="BTC", amount="100")
    key = BotKey.generate(BOT)
    admin.request("register_bot_key", account_id=BOT, public_key=key.public_key)
    return key


def bot_client(matcher: MatcherProcess, key: BotKey, kind=BotClient, **options):
    return kind(matcher.endpoints["bot_endpoint"], matcher.bot_public_key, key,
                public_endpoint=matcher.endpoints["public_endpoint"], context=None, **options)


def order(client, client_order_id: str, price: str, **options) -> dict:
    return client.place(PAIR, "buy", price=price, quantity="0.100", client_order_id=client_order_id, **options)


def test_reconcile_after_a_timeout_and_after_the_matcher_restarts(matcher: MatcherProcess, key: BotKey) -> None:
    bot = bot_client(matcher, key, timeout=5.0, connect_timeout=2.0)
    bot.connect()
    first = order(bot, "a", "90.00")
    book = bot.wait_for_book(PAIR)

    os.kill(matcher.pid, signal.SIGSTOP)
    try:
        with pytest.raises(OutcomeUnknown) as caught:
            bot.request("place", timeout=0.5, pair=PAIR, side="buy", type="limit", price="91.00",
                        quantity="0.100", client_order_id="b")
        assert caught.value.code == "TIMEOUT"
    finally:
        os.kill(matcher.pid, signal.SIGCONT)
    known = {"a": first["order_id"], "b": None}
    result = bot.reconcile(known, PAIR)
    assert set(result.open) == {"a", "b"} and result.closed == {} and result.others == []
    assert bot.late_replies == 1  # "b"'s reply came while reconciling, and was dropped

    seen: list[dict] = []

    def wait_for_event(event: dict, timeout: float) -> None:
        poll_until(lambda: seen.extend(bot.poll(0.2)) or event in seen, timeout, str(event))

    os.kill(matcher.pid, signal.SIGSTOP)
    bot.transport.send("place", pair=PAIR, side="buy", type="limit", price="92.00", quantity="0.100",
                       client_order_id="c")
    matcher.kill()  # it never read "c"
    wait_for_event({"type": "disconnected"}, 5)
    with pytest.raises(ConnectionFailed):  # not sent, and not kept to be sent later
        order(bot, "d", "93.00")
    matcher.start()
    wait_for_event({"type": "connected", "reconnect": True}, 20)

    result = bot.reconcile({**known, "c": None, "d": None}, PAIR)
    assert set(result.open) == {"a", "b"} and result.closed == {"c": None, "d": None}
    again = order(bot, "c", "92.00")  # safe: the first "c" never ran
    assert [o["client_order_id"] for o in bot.open_orders(PAIR)] == ["a", "b", "c"]
    assert again["status"] == "NEW"

    # Events flow again (the reconcile's requests told the matcher about the new connection),
    # and the book followed the restart without a gap: the matcher's seq is durable.
    matcher.client().request("place", account_id=OTHER, pair=PAIR, side="sell", type="limit", price="92.00",
                             quantity="0.050")
    fills = poll_until(lambda: [event for event in bot.poll(0.2) if event["type"] == "account" and event["fills"]],
                       10, "the fill of c")
    assert fills[0]["fills"][0]["order_id"] == again["order_id"]
    seq = matcher.client().request("snapshot", pair=PAIR)["seq"]
    poll_until(lambda: bot.poll(0.1) is not None and book.seq == seq, 10, "the book at the matcher's seq")
    assert book.best_bid()[0] == 92 and book.synced
    bot.close()


def test_the_async_client_fails_fast_when_the_connection_drops_and_comes_back(matcher: MatcherProcess,
                                                                              key: BotKey) -> None:
    async def scenario() -> None:
        async with bot_client(matcher, key, AsyncBotClient, timeout=10.0) as bot:
            assert (await bot.next_event(5)) == {"type": "connected", "reconnect": False}
            await order(bot, "a", "90.00")
            assert (await bot.next_event(5))["type"] == "account"
            os.kill(matcher.pid, signal.SIGSTOP)
            pending = asyncio.ensure_future(order(bot, "b", "91.00"))
            await asyncio.sleep(0)  # one turn of the loop: the task sends its request and waits
            started = time.monotonic()
            matcher.kill()
            with pytest.raises(OutcomeUnknown) as caught:
                await pending
            assert caught.value.code == "DISCONNECTED" and time.monotonic() - started < 5  # not the 10 s timeout
            assert await bot.next_event(5) == {"type": "disconnected"}
            await asyncio.get_running_loop().run_in_executor(None, matcher.start)
            assert await bot.next_event(20) == {"type": "connected", "reconnect": True}
            result = await bot.reconcile({"a": None, "b": None})
            assert set(result.open) == {"a"} and result.closed == {"b": None}

    asyncio.run(scenario())
