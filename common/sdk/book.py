"""Local order books kept from a snapshot plus sequenced deltas, with no I/O.

`OrderBook` is an L2 replica (price -> size per side, as `Decimal`s) current at `seq`.
`apply(first_seq, seq, bids, asks)` takes a delta covering the sequence numbers
first_seq..seq: the WebSocket feed's diffs carry both, a matcher update on the public PUB
covers exactly its own `seq`. A delta that does not start right after `seq` is a gap: the
book stops being `synced` until a new snapshot is loaded.

`BookSync` is the clone pattern (docs/zmq-protocol.md) for one market's stream from the
matcher's PUB: subscribe, wait until the stream is live (its first message: a heartbeat
comes within a second even on an idle market), buffer, ask for a snapshot tagged with a
seq, drop what the snapshot already holds, apply the rest, and start over on any gap.
The caller does the I/O: it feeds `on_message`, asks for a snapshot when
`snapshot_due`, and hands the answer to `on_snapshot`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sortedcontainers import SortedDict

APPLIED, STALE, GAP = "applied", "stale", "gap"
_ZERO = Decimal(0)
# Updates kept while a snapshot is awaited; beyond this the oldest are dropped (the
# snapshot that answers will be newer than them anyway, or the replay finds the gap).
MAX_BUFFERED = 100_000


class OrderBook:
    """One market's price levels, best first, current at `seq`."""

    __slots__ = ("pair", "seq", "synced", "bids", "asks")

    def __init__(self, pair: str) -> None:
        self.pair = pair
        self.seq: int | None = None
        self.synced = False
        self.bids: SortedDict = SortedDict()  # ascending: the best bid is the last key
        self.asks: SortedDict = SortedDict()  # ascending: the best ask is the first key

    def load(self, snapshot: dict[str, Any]) -> None:
        """Replace the book with a snapshot `{"seq", "bids": [[price, size]...], "asks": [...]}`."""
        self.bids = SortedDict((Decimal(price), Decimal(size)) for price, size in snapshot["bids"])
        self.asks = SortedDict((Decimal(price), Decimal(size)) for price, size in snapshot["asks"])
        self.seq = snapshot["seq"]
        self.synced = True

    def apply(self, first_seq: int, seq: int, bids: list, asks: list) -> str:
        """Apply absolute level sizes covering first_seq..seq; return APPLIED, STALE or GAP."""
        if not self.synced:
            return GAP
        if seq <= self.seq:
            return STALE
        if first_seq != self.seq + 1:
            self.synced = False
            return GAP
        for levels, side in ((bids, self.bids), (asks, self.asks)):
            for price, size in levels:
                size = Decimal(size)
                if size == _ZERO:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = size
        self.seq = seq
        return APPLIED

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self.asks.peekitem(0) if self.asks else None

    def mid(self) -> Decimal | None:
        """Return the midpoint of the best bid and ask, or None when a side is empty."""
        if not self.bids or not self.asks:
            return None
        return (self.bids.peekitem(-1)[0] + self.asks.peekitem(0)[0]) / 2

    def levels(self, depth: int | None = None) -> dict[str, list[tuple[Decimal, Decimal]]]:
        """Return `{"bids": [(price, size)...], "asks": [...]}`, best first, at most `depth` a side."""
        bids = list(reversed(self.bids.items()[-depth:] if depth else self.bids.items()))
        asks = list(self.asks.items()[:depth] if depth else self.asks.items())
        return {"bids": bids, "asks": asks}

    def __repr__(self) -> str:
        return f"OrderBook({self.pair}, seq={self.seq}, synced={self.synced}, bid={self.best_bid()}, " \
               f"ask={self.best_ask()})"


class BookSync:
    """Keep an OrderBook in sync with the matcher's `md.<PAIR>` stream (the clone pattern)."""

    __slots__ = ("book", "snapshot_due", "resyncs", "last_trade", "_buffer", "_live", "_awaiting")

    def __init__(self, pair: str) -> None:
        self.book = OrderBook(pair)
        self.snapshot_due = False  # the caller should request a snapshot now
        self.resyncs = 0  # snapshots loaded after the first one
        self.last_trade: dict[str, Any] | None = None  # the newest trade seen on the stream
        self._buffer: list[dict[str, Any]] = []
        self._live = False
        self._awaiting = False

    def on_message(self, message: dict[str, Any]) -> str | None:
        """Take one PUB message of this market; return what happened to the book (or None)."""
        if not self._live:
            self._live = True  # the subscription is live: a snapshot now misses nothing
            self.snapshot_due = not self._awaiting
        kind = message.get("type")
        if kind == "update":
            for trade in message.get("trades") or ():
                if self.last_trade is None or trade["trade_id"] > self.last_trade["trade_id"]:
                    self.last_trade = trade
            if not self.book.synced:
                self._hold(message)
                return None
            seq = message["seq"]
            outcome = self.book.apply(seq, seq, message["bids"], message["asks"])
            if outcome == GAP:
                self._resync(message)
            return outcome
        if kind == "heartbeat" and self.book.synced and message["seq"] != self.book.seq:
            # Ahead: updates were lost. Behind: the matcher came back with less than we applied.
            self.book.synced = False
            self._resync(None)
            return GAP
        return None

    def snapshot_requested(self) -> None:
        """Note that the caller sent the snapshot request."""
        self.snapshot_due = False
        self._awaiting = True

    def snapshot_failed(self) -> None:
        """The snapshot request got no answer: ask again."""
        self._awaiting = False
        self.snapshot_due = True

    def on_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Load the snapshot, then replay the buffered updates after its seq."""
        self._awaiting = False
        if self.book.seq is not None:
            self.resyncs += 1
        self.book.load(snapshot)
        buffered, self._buffer = self._buffer, []
        for message in buffered:
            seq = message["seq"]
            if self.book.apply(seq, seq, message["bids"], message["asks"]) == GAP:
                self._resync(message)
                return

    def _hold(self, message: dict[str, Any]) -> None:
        self._buffer.append(message)
        if len(self._buffer) > MAX_BUFFERED:
            del self._buffer[: len(self._buffer) - MAX_BUFFERED]

    def _resync(self, message: dict[str, Any] | None) -> None:
        self._buffer = [] if message is None else [message]
        if not self._awaiting:
            self.snapshot_due = True
