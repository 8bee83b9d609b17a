"""Hub: subscriptions, one write per client per tick, ordering, slow consumers."""

from __future__ import annotations

import orjson

from feed import protocol
from feed.fanout import CLOSE_POLICY_VIOLATION, Client, Hub


class Transport:
    """Records writes; its write buffer holds `stuck` bytes until `drain()` (a client not reading)."""

    def __init__(self, reading: bool = True) -> None:
        self.writes: list[bytes] = []
        self.reading = reading
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        if not self.reading:
            self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing

    def frames(self) -> list[dict]:
        """Decode every frame written (unmasked, short text frames as the tests send)."""
        data = b"".join(self.writes)
        messages = []
        while data:
            assert data[0] == 0x81
            length = data[1]
            header = 2
            if length == 126:
                length, header = int.from_bytes(data[2:4], "big"), 4
            messages.append(orjson.loads(data[header:header + length]))
            data = data[header + length:]
        return messages


def make_hub(limit: int = 1000):
    closed = []
    hub = Hub(limit, lambda client, code, reason, channels: closed.append((client, code, reason, channels)))
    return hub, closed


def client(hub: Hub, name: str = "c", reading: bool = True) -> Client:
    new = Client(connection=name, transport=Transport(reading), address="10.0.0.1")
    hub.add(new)
    return new


def frame(channel: str, seq: int) -> bytes:
    return protocol.text_frame(protocol.data(channel, "update", seq, [], 0))


def test_a_tick_is_one_write_per_client_holding_all_its_frames() -> None:
    hub, _ = make_hub()
    first, second = client(hub, "first"), client(hub, "second")
    hub.subscribe(first, "trades.A-B")
    hub.subscribe(first, "ticker.A-B")
    hub.subscribe(second, "trades.A-B")

    trades, ticker = frame("trades.A-B", 1), frame("ticker.A-B", 1)
    hub.publish("trades.A-B", trades)
    hub.publish("ticker.A-B", ticker)
    hub.publish("candles.A-B.1m", frame("candles.A-B.1m", 1))  # nobody listens
    hub.flush()

    assert first.transport.writes == [trades + ticker]
    assert second.transport.writes == [trades]
    assert (hub.frames_sent, hub.writes) == (3, 2)
    hub.flush()
    assert len(first.transport.writes) == 1  # nothing new, nothing written


def test_subscribe_is_idempotent_and_unsubscribe_stops_delivery() -> None:
    hub, _ = make_hub()
    reader = client(hub)

    assert hub.subscribe(reader, "trades.A-B")
    assert not hub.subscribe(reader, "trades.A-B")
    assert hub.unsubscribe(reader, "trades.A-B")
    assert not hub.unsubscribe(reader, "trades.A-B")
    hub.publish("trades.A-B", frame("trades.A-B", 1))
    hub.flush()

    assert reader.transport.writes == []
    assert not hub.has_subscribers("trades.A-B")


def test_a_direct_send_during_an_assembled_tick_keeps_the_order() -> None:
    hub, _ = make_hub()
    reader = client(hub)
    hub.subscribe(reader, "trades.A-B")

    hub.publish("trades.A-B", frame("trades.A-B", 1))
    hub.send(reader, frame("trades.A-B", 2))
    hub.flush()

    assert [message["seq"] for message in reader.transport.frames()] == [1, 2]


def test_a_slow_consumer_is_told_why_removed_everywhere_and_closed_while_others_receive() -> None:
    hub, closed = make_hub(limit=100)
    slow, fast = client(hub, "slow", reading=False), client(hub, "fast")
    for reader in (slow, fast):
        hub.subscribe(reader, "trades.A-B")
        hub.subscribe(reader, "orderbook.A-B")
    hub.authenticate(slow, 7)

    big = protocol.text_frame(protocol.data("trades.A-B", "update", 1, ["x" * 200], 0))
    hub.send(slow, big)  # over the limit at once: not by itself a reason to drop
    assert not slow.dropped
    for seq in range(1, 4):
        hub.publish("trades.A-B", frame("trades.A-B", seq))
        hub.flush()

    assert slow.dropped
    assert closed == [(slow, CLOSE_POLICY_VIOLATION, "slow consumer", ["trades.A-B", "orderbook.A-B"])]
    assert slow.transport.frames()[-1]["code"] == "SLOW_CONSUMER"
    assert slow not in hub.clients and 7 not in hub.traders
    assert list(hub.subscribers["trades.A-B"]) == [fast]
    assert [message["seq"] for message in fast.transport.frames()] == [1, 2, 3]
    assert [message.get("seq") for message in slow.transport.frames()] == [1, None]  # the big one, the error
    assert hub.slow_consumers == 1

    writes = len(slow.transport.writes)
    hub.publish("trades.A-B", frame("trades.A-B", 4))
    hub.flush()
    hub.send(slow, frame("trades.A-B", 5))
    assert len(slow.transport.writes) == writes  # nothing more for a dropped client


def test_closing_transports_are_skipped() -> None:
    hub, _ = make_hub()
    leaving = client(hub)
    hub.subscribe(leaving, "trades.A-B")
    leaving.transport.closing = True

    hub.publish("trades.A-B", frame("trades.A-B", 1))
    hub.flush()
    hub.send(leaving, frame("trades.A-B", 2))

    assert leaving.transport.writes == []


def test_remove_forgets_the_client_and_its_trader() -> None:
    hub, _ = make_hub()
    first, second = client(hub), client(hub)
    hub.authenticate(first, 3)
    hub.authenticate(second, 3)
    hub.subscribe(first, "orders")

    assert hub.remove(first) == ["orders"]

    assert list(hub.traders[3]) == [second]
    assert not hub.has_subscribers("orders")
    hub.remove(second)
    assert hub.traders == {} and hub.clients == {}
