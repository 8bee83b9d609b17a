"""FeedClient against a scripted WebSocket server: books, gap -> resync, unsolicited errors, reconnect."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from decimal import Decimal as D

import orjson
import pytest
from websockets.asyncio.server import serve

from common.errors import ZmxError
from common.sdk.ws import FeedClient

BOOK = "orderbook.BTC-USDT"
TRADES = "trades.BTC-USDT"


def snapshot(seq: int, bid: str) -> dict:
    return {"channel": BOOK, "type": "snapshot", "seq": seq, "ts": 0,
            "data": {"pair": "BTC-USDT", "seq": seq, "bids": [[bid, "1.000"]], "asks": [["101.00", "2.000"]], "ts": 0}}


def diff(first_seq: int, seq: int, bids=(), asks=()) -> dict:
    return {"channel": BOOK, "type": "diff", "first_seq": first_seq, "seq": seq, "ts": 0,
            "data": {"bids": [list(level) for level in bids], "asks": [list(level) for level in asks]}}


class FakeFeed:
    """Each connection: answer authenticate and (un)subscribe; the test pushes data through `send`."""

    def __init__(self) -> None:
        self.connections: list = []
        self.received: list[list[dict]] = []
        self.snapshot_seq = 10

    async def handler(self, websocket) -> None:
        self.connections.append(websocket)
        received: list[dict] = []
        self.received.append(received)
        held: list[str] = []
        async for frame in websocket:
            message = orjson.loads(frame)
            received.append(message)
            if message["op"] == "authenticate":
                expected = hmac.new(b"secret", f"{message['timestamp']}GET/ws".encode(), hashlib.sha256).hexdigest()
                reply = {"op": "authenticated", "trader_id": 42} if message["signature"] == expected else \
                    {"op": "error", "code": "INVALID_SIGNATURE", "message": "no"}
                await websocket.send(orjson.dumps(reply).decode())
            elif message["op"] == "unsubscribe":
                held = [channel for channel in held if channel not in message["channels"]]
                await websocket.send(orjson.dumps({"op": "subscribed", "channels": held}).decode())
            elif message["op"] == "subscribe":
                if any(channel.startswith("nope") for channel in message["channels"]):
                    await websocket.send(orjson.dumps({"op": "error", "code": "UNKNOWN_CHANNEL",
                                                       "message": "no such channel"}).decode())
                    continue
                held += [channel for channel in message["channels"] if channel not in held]
                await websocket.send(orjson.dumps({"op": "subscribed", "channels": held}).decode())
                if BOOK in message["channels"]:
                    await websocket.send(orjson.dumps(snapshot(self.snapshot_seq, "99.00")).decode())

    async def send(self, message: dict) -> None:
        await self.connections[-1].send(orjson.dumps(message).decode())


async def next_matching(client: FeedClient, predicate, timeout: float = 5.0) -> dict:
    while True:
        message = await client.next_message(timeout)
        assert message is not None, "no message in time"
        if predicate(message):
            return message


def test_the_feed_client_keeps_books_resyncs_on_a_gap_and_restores_everything_after_a_reconnect() -> None:
    async def scenario() -> None:
        feed = FakeFeed()
        async with serve(feed.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = FeedClient(f"ws://127.0.0.1:{port}/ws", "zmx_key", "secret", reconnect_delay=0.01, timeout=5)
            await client.connect()
            assert client.trader_id == 42
            assert await client.subscribe(BOOK, TRADES) == [BOOK, TRADES]
            first = await client.next_message(5)
            assert first["type"] == "snapshot" and client.books[BOOK].seq == 10

            await feed.send(diff(11, 12, bids=[("99.00", "0"), ("99.50", "3.000")]))
            applied = await client.next_message(5)
            assert applied["seq"] == 12
            book = client.books[BOOK]
            assert book.best_bid() == (D("99.50"), D("3.000")) and book.synced

            feed.snapshot_seq = 20
            await feed.send(diff(14, 15, bids=[("1.00", "1.000")]))  # 13 never came
            assert await client.next_message(5) == {"op": "resync", "channel": BOOK}
            resynced = await next_matching(client, lambda message: message.get("type") == "snapshot")
            assert resynced["seq"] == 20 and book.synced and book.best_bid() == (D("99.00"), D("1.000"))
            assert [message["op"] for message in feed.received[0][-2:]] == ["unsubscribe", "subscribe"]
            assert client.resyncs == 1

            await feed.send({"op": "error", "code": "EVENTS_LOST", "message": "account events 5-6 were lost"})
            assert (await client.next_message(5))["code"] == "EVENTS_LOST"
            with pytest.raises(ZmxError) as caught:
                await client.subscribe("orderbook.BTC-USDT.5", "nope.BTC-USDT")
            assert caught.value.code == "UNKNOWN_CHANNEL"
            assert list(client.books) == [BOOK]  # nothing kept for the refused request

            feed.snapshot_seq = 30
            await feed.connections[0].close()
            assert (await client.next_message(5))["op"] == "disconnected"
            assert not book.synced
            events = [await client.next_message(5) for _ in range(2)]
            assert {message.get("op") or message["type"] for message in events} == {"reconnected", "snapshot"}
            assert [message["op"] for message in feed.received[1]] == ["authenticate", "subscribe"]
            assert sorted(feed.received[1][1]["channels"]) == [BOOK, TRADES]
            assert book.synced and book.seq == 30
            await client.close()
            assert await client.next_message(1) is None

    asyncio.run(scenario())
