"""Fan-out: channel subscriptions and bounded per-client output, each message encoded once.

A data message is encoded and framed once per channel (`feed.protocol.text_frame`); the
same bytes are queued for every subscriber, and at the end of each conflation tick every
client with something queued gets one `transport.write` holding all of its frames. A
server's WebSocket frames are not masked, so the bytes are valid on every connection;
the library's protocol object is bypassed only for data frames, which never interleave
with its own writes (pings, pongs, close) because each write holds whole frames.

This is the websockets documentation's `broadcast()` design (write without waiting, no
per-client task) with two changes: one write per client per tick instead of one per
message, and back-pressure: a client's queue is its transport's write buffer (what the
kernel's socket buffer could not take). When data is due for a client whose queue still
holds more than `max_queue_bytes`, the client is sent `{"op": "error", "code":
"SLOW_CONSUMER", ...}`, removed from every channel at once and closed with code 1008;
nobody else waits for it. The check comes before a write, not after, so one message
larger than the limit (a deep book's snapshot) does not by itself condemn a client that
reads it promptly; a queue holds at most `max_queue_bytes` plus one tick's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from feed import protocol
from feed.protocol import ErrorCode

log = logging.getLogger("zmx.feed")

CLOSE_POLICY_VIOLATION = 1008


class Client:
    """One WebSocket connection: its channels, its trader (once authenticated) and its output."""

    __slots__ = ("connection", "transport", "address", "channels", "trader_id", "out", "dropped",
                 "tokens", "tokens_at")

    def __init__(self, connection: Any, transport: Any, address: str) -> None:
        self.connection = connection  # websockets ServerConnection (or a stand-in in tests)
        self.transport = transport
        self.address = address
        self.channels: dict[str, None] = {}  # ordered set
        self.trader_id: int | None = None
        self.out: list[bytes] = []
        self.dropped = False
        self.tokens = 0.0
        self.tokens_at = 0.0

    def __repr__(self) -> str:
        return f"Client({self.address}, trader={self.trader_id}, channels={len(self.channels)})"


class Hub:
    """Every client and channel of one feed process."""

    def __init__(self, max_queue_bytes: int, close: Callable[[Client, int, str, list[str]], None]) -> None:
        self.max_queue_bytes = max_queue_bytes
        self._close = close
        self.subscribers: dict[str, dict[Client, None]] = {}
        self.traders: dict[int, dict[Client, None]] = {}
        self.clients: dict[Client, None] = {}
        self._dirty: list[Client] = []
        self.slow_consumers = 0
        self.frames_sent = 0
        self.writes = 0

    # ---------------------------------------------------------------- membership

    def add(self, client: Client) -> None:
        self.clients[client] = None

    def remove(self, client: Client) -> list[str]:
        """Forget a client everywhere (it disconnected or was dropped); return the channels it held."""
        self.clients.pop(client, None)
        channels = list(client.channels)
        for channel in client.channels:
            subscribers = self.subscribers.get(channel)
            if subscribers is not None:
                subscribers.pop(client, None)
                if not subscribers:
                    del self.subscribers[channel]
        client.channels.clear()
        if client.trader_id is not None:
            clients = self.traders.get(client.trader_id)
            if clients is not None:
                clients.pop(client, None)
                if not clients:
                    del self.traders[client.trader_id]
        client.out.clear()
        return channels

    def subscribe(self, client: Client, channel: str) -> bool:
        """Add the channel to the client; return False if it held it already."""
        if channel in client.channels:
            return False
        client.channels[channel] = None
        self.subscribers.setdefault(channel, {})[client] = None
        return True

    def unsubscribe(self, client: Client, channel: str) -> bool:
        if channel not in client.channels:
            return False
        del client.channels[channel]
        subscribers = self.subscribers.get(channel)
        if subscribers is not None:
            subscribers.pop(client, None)
            if not subscribers:
                del self.subscribers[channel]
        return True

    def authenticate(self, client: Client, trader_id: int) -> None:
        client.trader_id = trader_id
        self.traders.setdefault(trader_id, {})[client] = None

    def has_subscribers(self, channel: str) -> bool:
        return channel in self.subscribers

    # ---------------------------------------------------------------- output

    def publish(self, channel: str, frame: bytes) -> None:
        """Queue one frame for every subscriber of the channel; `flush()` writes it."""
        subscribers = self.subscribers.get(channel)
        if not subscribers:
            return
        dirty = self._dirty
        for client in subscribers:
            out = client.out
            if not out:
                dirty.append(client)
            out.append(frame)

    def flush(self) -> None:
        """Write what each client has queued, one write per client, and drop the ones that overflow."""
        dirty, self._dirty = self._dirty, []
        limit = self.max_queue_bytes
        frames = 0
        for client in dirty:
            out = client.out
            if client.dropped or not out:
                out.clear()
                continue
            transport = client.transport
            if transport.is_closing():
                out.clear()
                continue
            if transport.get_write_buffer_size() > limit:
                out.clear()
                self._slow(client)
                continue
            frames += len(out)
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        self.frames_sent += frames
        self.writes += len(dirty)

    def send(self, client: Client, frame: bytes) -> None:
        """Write one frame to one client now (replies, snapshots, private events)."""
        if client.dropped:
            return
        transport = client.transport
        if transport.is_closing():
            return
        if client.out:
            # A tick is being assembled for this client: keep the order of its frames.
            client.out.append(frame)
            return
        if transport.get_write_buffer_size() > self.max_queue_bytes:
            self._slow(client)
            return
        transport.write(frame)
        self.frames_sent += 1
        self.writes += 1

    def send_many(self, clients: Iterable[Client], frame: bytes) -> None:
        for client in list(clients):
            self.send(client, frame)

    def _slow(self, client: Client) -> None:
        self.drop(client, ErrorCode.SLOW_CONSUMER,
                  f"more than {self.max_queue_bytes} bytes were still waiting to be sent when more came:"
                  " read faster or subscribe to less")

    def drop(self, client: Client, code: ErrorCode, message: str) -> None:
        """Tell the client why, stop sending it anything, and close it (policy violation)."""
        if client.dropped:
            return
        client.dropped = True
        if code is ErrorCode.SLOW_CONSUMER:
            self.slow_consumers += 1
        log.warning("dropping client", extra={"address": client.address, "code": code.value,
                                              "channels": len(client.channels)})
        channels = self.remove(client)
        if not client.transport.is_closing():
            client.transport.write(protocol.text_frame(protocol.error(code, message)))
        self._close(client, CLOSE_POLICY_VIOLATION, code.value.lower().replace("_", " "), channels)
