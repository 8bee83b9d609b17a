"""Every message on the feed's WebSocket, defined once: client ops, channels, server messages.

No I/O. docs/websocket-api.md is the written reference; this module is the code.

Client -> server (one JSON object per text or binary frame):
    {"op": "subscribe", "channels": ["orderbook.BTC-USDT.10", "trades.BTC-USDT"]}
    {"op": "unsubscribe", "channels": ["trades.BTC-USDT"]}
    {"op": "authenticate", "api_key": "zmx_...", "timestamp": 1700000000000, "signature": "<hex>"}
    {"op": "ping"}

Server -> client (one JSON object per text frame):
    {"op": "subscribed", "channels": [every channel the connection now holds]}
    {"op": "authenticated", "trader_id": 42}
    {"op": "pong"}
    {"op": "error", "code": "UNKNOWN_CHANNEL", "message": "..."}
    {"channel": "orderbook.BTC-USDT", "type": "snapshot" | "diff" | "update",
     "seq": 105, "data": {...}, "ts": 1700000000000}      (diffs also carry "first_seq")

Outgoing data messages are encoded once and framed once (`text_frame`): a server's frames
are not masked, so the same bytes go to every subscriber of a channel.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
from websockets.frames import Frame, Opcode

from common.store.aggregates import INTERVALS
from common.types import PAIR_SYMBOL

# Depths a depth-limited order-book channel may ask for: each distinct depth costs the
# feed one view per market, so the set is fixed (Binance offers 5/10/20, Kraken
# 10/25/100/500/1000).
BOOK_DEPTHS = (1, 5, 10, 20, 25, 50, 100, 500, 1000)
# The history store's intervals, so WebSocket and REST candles are the same buckets.
CANDLE_INTERVALS = INTERVALS
PRIVATE_CHANNELS = ("orders", "fills", "balances")
MAX_CHANNEL_LENGTH = 64
MAX_CHANNELS_PER_REQUEST = 100
MAX_API_KEY_LENGTH = 64
MAX_SIGNATURE_LENGTH = 128
MAX_TIMESTAMP_DIGITS = 15


class ErrorCode(enum.Enum):
    """Every `code` of an `{"op": "error"}` message (docs/websocket-api.md#errors)."""

    INVALID_JSON = "INVALID_JSON"
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
    INVALID_FIELD = "INVALID_FIELD"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    UNKNOWN_MARKET = "UNKNOWN_MARKET"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    MISSING_AUTHENTICATION = "MISSING_AUTHENTICATION"
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
    INVALID_API_KEY = "INVALID_API_KEY"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    TIMESTAMP_OUT_OF_WINDOW = "TIMESTAMP_OUT_OF_WINDOW"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    MATCHER_UNAVAILABLE = "MATCHER_UNAVAILABLE"
    EVENTS_LOST = "EVENTS_LOST"
    SLOW_CONSUMER = "SLOW_CONSUMER"


class FeedError(Exception):
    """A client request the feed refuses; answered with an error message, the connection stays."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- channels


class Channel:
    """A parsed channel name: its kind, its market (public channels) and its depth or interval."""

    __slots__ = ("name", "kind", "pair", "depth", "interval")

    def __init__(self, name: str, kind: str, pair: str | None = None, depth: int | None = None,
                 interval: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.pair = pair
        self.depth = depth
        self.interval = interval

    @property
    def private(self) -> bool:
        return self.pair is None

    def __repr__(self) -> str:
        return f"Channel({self.name})"


def parse_channel(name: Any) -> Channel:
    """Return the Channel a name denotes; raise FeedError(UNKNOWN_CHANNEL) for anything else."""
    if type(name) is not str or not 0 < len(name) <= MAX_CHANNEL_LENGTH:
        raise FeedError(ErrorCode.UNKNOWN_CHANNEL, "a channel is a string such as orderbook.BTC-USDT")
    if name in PRIVATE_CHANNELS:
        return Channel(name, name)
    kind, _, rest = name.partition(".")
    pair, _, parameter = rest.partition(".")
    if kind not in ("orderbook", "trades", "ticker", "candles") or not PAIR_SYMBOL.fullmatch(pair):
        raise FeedError(ErrorCode.UNKNOWN_CHANNEL,
                        f"unknown channel {name!r}: expected orderbook.PAIR[.DEPTH], trades.PAIR, ticker.PAIR,"
                        f" candles.PAIR.INTERVAL, orders, fills or balances")
    if kind == "orderbook":
        if not parameter:
            return Channel(name, kind, pair)
        depth = int(parameter) if parameter.isascii() and parameter.isdigit() and len(parameter) <= 4 else None
        if depth not in BOOK_DEPTHS or str(depth) != parameter:
            raise FeedError(ErrorCode.UNKNOWN_CHANNEL,
                            f"{name!r}: depth must be one of {', '.join(map(str, BOOK_DEPTHS))}")
        return Channel(name, kind, pair, depth=depth)
    if kind == "candles":
        if parameter not in CANDLE_INTERVALS:
            raise FeedError(ErrorCode.UNKNOWN_CHANNEL,
                            f"{name!r}: interval must be one of {', '.join(CANDLE_INTERVALS)}")
        return Channel(name, kind, pair, interval=parameter)
    if parameter:
        raise FeedError(ErrorCode.UNKNOWN_CHANNEL, f"unknown channel {name!r}: {kind} takes no parameter")
    return Channel(name, kind, pair)


# ---------------------------------------------------------------- client ops

_FIELDS = {
    "subscribe": ("channels",),
    "unsubscribe": ("channels",),
    "authenticate": ("api_key", "timestamp", "signature"),
    "ping": (),
}


def decode_op(frame: str | bytes) -> tuple[str, dict[str, Any]]:
    """Decode one client frame into (op, fields), checked; raise FeedError on anything malformed."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise FeedError(ErrorCode.INVALID_JSON, "a frame must hold one JSON object") from None
    if type(message) is not dict:
        raise FeedError(ErrorCode.INVALID_JSON, "a frame must hold one JSON object")
    op = message.pop("op", None)
    fields = _FIELDS.get(op) if type(op) is str else None
    if fields is None:
        raise FeedError(ErrorCode.UNKNOWN_COMMAND,
                        f"op must be one of {', '.join(_FIELDS)}; got {str(op)[:40]!r}")
    for name in message:
        if name not in fields:
            raise FeedError(ErrorCode.INVALID_FIELD, f"{op} takes no field {name[:40]!r}")
    for name in fields:
        if name not in message:
            raise FeedError(ErrorCode.INVALID_FIELD, f"{op} needs {name!r}")
    if op in ("subscribe", "unsubscribe"):
        channels = message["channels"]
        if (type(channels) is not list or not 0 < len(channels) <= MAX_CHANNELS_PER_REQUEST
                or not all(type(channel) is str for channel in channels)):
            raise FeedError(ErrorCode.INVALID_FIELD,
                            f"channels must be a list of 1 to {MAX_CHANNELS_PER_REQUEST} channel names")
    elif op == "authenticate":
        api_key, timestamp, signature = message["api_key"], message["timestamp"], message["signature"]
        if type(api_key) is not str or not 0 < len(api_key) <= MAX_API_KEY_LENGTH:
            raise FeedError(ErrorCode.INVALID_FIELD, "api_key must be a string")
        if type(timestamp) is str and timestamp.isascii() and timestamp.isdigit() \
                and len(timestamp) <= MAX_TIMESTAMP_DIGITS:
            pass
        elif type(timestamp) is int and 0 <= timestamp < 10**MAX_TIMESTAMP_DIGITS:
            message["timestamp"] = str(timestamp)
        else:
            raise FeedError(ErrorCode.INVALID_FIELD, "timestamp must be integer milliseconds since the epoch")
        if type(signature) is not str or not 0 < len(signature) <= MAX_SIGNATURE_LENGTH:
            raise FeedError(ErrorCode.INVALID_FIELD, "signature must be a hex string")
    return op, message


# ---------------------------------------------------------------- server messages


def text_frame(payload: bytes) -> bytes:
    """Return one unmasked, uncompressed WebSocket text frame carrying `payload` (UTF-8 JSON)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def subscribed(channels: list[str]) -> bytes:
    return orjson.dumps({"op": "subscribed", "channels": channels})


def authenticated(trader_id: int) -> bytes:
    return orjson.dumps({"op": "authenticated", "trader_id": trader_id})


PONG = orjson.dumps({"op": "pong"})


def error(code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"op": "error", "code": code.value, "message": message})


def data(channel: str, kind: str, seq: int | None, payload: Any, ts: int, first_seq: int | None = None) -> bytes:
    """Encode a data message; `first_seq` is set on order-book diffs only."""
    if first_seq is None:
        return orjson.dumps({"channel": channel, "type": kind, "seq": seq, "data": payload, "ts": ts})
    return orjson.dumps({"channel": channel, "type": kind, "first_seq": first_seq, "seq": seq, "data": payload,
                         "ts": ts})
