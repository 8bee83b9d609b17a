"""Every message on zmx's ZeroMQ sockets, defined once: schemas, encoders, decoders.

Frames (orjson, UTF-8 JSON objects; never pickle):

Request, DEALER -> matcher ROUTER, one frame:
    {"id": 17, "op": "place", "account_id": 42, "pair": "BTC-USDT", "side": "buy",
     "type": "limit", "price": "42150.50", "quantity": "0.010"}
    `id` is the caller's request id (integer or string up to 64 chars), echoed back.
    On the bot socket `account_id` is implied by the bot's CURVE key and may be omitted.

Reply, one frame:
    {"id": 17, "ok": true, "data": {...}}
    {"id": 17, "ok": false, "error": {"code": "INSUFFICIENT_BALANCE", "number": 4001,
                                       "message": "...", "details": {...}}}

Public market data, PUB, two frames [topic, body], topic b"md.<PAIR>":
    {"type": "update", "pair": "BTC-USDT", "seq": 1042, "ts": 1700000000000,
     "bids": [["42150.50", "1.200"]], "asks": [], "trades": [{"trade_id": 9, ...}]}
    (level sizes are absolute, "0..." deletes the level; `status` appears when the market
     opens, halts or resumes), and, on an idle market about once a second,
    {"type": "heartbeat", "pair": "BTC-USDT", "seq": 1042, "ts": ...}.

Private account events, PUB (internal) and unsolicited on the bot DEALER, topic
b"acct.<account_id>.":
    {"type": "account", "account_id": 42, "seq": 7, "ts": ..., "orders": [...],
     "fills": [...], "balances": [...]}

Every public update carries its market's gapless `seq`; every account event its account's
`seq`; both also carry `journal_seq`, the journal record that produced them.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import orjson
from zmq.utils import z85

from common.types import (
    CLIENT_ORDER_ID,
    ORDER_TYPE_BY_WIRE,
    SIDE_BY_WIRE,
    STP_BY_WIRE,
    TIME_IN_FORCE_BY_WIRE,
    OrderStatus,
    OrderType,
    RejectCode,
    Side,
    StpMode,
    TimeInForce,
)

MAX_REQUEST_ID_LENGTH = 64
# A request is one flat object. orjson before 3.9.15 recurses once per nesting level with
# no limit (CVE-2024-27454), so a deeply nested frame overflows the C stack and kills the
# process; counting brackets bounds the depth in C, and no valid request comes near this.
MAX_BRACKETS = 256
MAX_ACCOUNT_ID = (1 << 63) - 1
MAX_JOURNAL_READ = 10_000
DEFAULT_JOURNAL_READ = 1_000
PUBLIC_TOPIC_PREFIX = b"md."
PRIVATE_TOPIC_PREFIX = b"acct."


def public_topic(pair: str) -> bytes:
    return PUBLIC_TOPIC_PREFIX + pair.encode()


def private_topic(account_id: int) -> bytes:
    """Return the account's topic; the trailing dot keeps acct.1. from matching acct.12."""
    return b"acct.%d." % account_id


# ---------------------------------------------------------------- field validators
# Each returns the normalised value or raises _FieldError(message).


class _FieldError(Exception):
    pass


def _account_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_ACCOUNT_ID:
        raise _FieldError("must be a positive integer account id")
    return value


def _order_id(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_ACCOUNT_ID:
        raise _FieldError("must be a positive integer order id")
    return value


def _decimal_text(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= 64:
        raise _FieldError("must be a decimal string")
    return value


def _pair(value: Any) -> str:
    if type(value) is not str or not 3 <= len(value) <= 25:
        raise _FieldError("must be a pair like BTC-USDT")
    return value


def _asset(value: Any) -> str:
    if type(value) is not str or not 1 <= len(value) <= 12:
        raise _FieldError("must be an asset symbol")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _FieldError("must be true or false")
    return value


def _client_order_id(value: Any) -> str:
    if type(value) is not str or not CLIENT_ORDER_ID.fullmatch(value):
        raise _FieldError("must be 1-36 characters of A-Z a-z 0-9 _ -")
    return value


def _small_int(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise _FieldError(f"must be an integer in {low}..{high}")
        return value

    return check


# Enum type -> {member: member.wire}, for every enum a `_choice` field decodes to, so that
# `Command.to_json` turns members back into wire strings without a property call each.
_WIRE_NAMES: dict[type, dict[Any, str]] = {}


def _choice(table: dict[str, Any]) -> Callable[[Any], Any]:
    names = ", ".join(table)
    for member in table.values():
        _WIRE_NAMES.setdefault(type(member), {})[member] = member.wire

    def check(value: Any) -> Any:
        member = table.get(value) if type(value) is str else None
        if member is None:
            raise _FieldError(f"must be one of {names}")
        return member

    return check


def _public_key(value: Any) -> str:
    if type(value) is not str or len(value) != 40:
        raise _FieldError("must be a 40-character Z85 CURVE public key")
    try:
        z85.decode(value)
    except (KeyError, ValueError, struct.error):  # a character outside Z85, or a group over 2**32
        raise _FieldError("must be a 40-character Z85 CURVE public key") from None
    return value


# ---------------------------------------------------------------- command schemas

REQUIRED, OPTIONAL = True, False

# op -> {field: (validator, required)}; `account_id` is dropped from the schema on the
# bot socket, where the CURVE key decides the account.
COMMANDS: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "place": {
        "account_id": (_account_id, REQUIRED),
        "pair": (_pair, REQUIRED),
        "side": (_choice(SIDE_BY_WIRE), REQUIRED),
        "type": (_choice(ORDER_TYPE_BY_WIRE), REQUIRED),
        "price": (_decimal_text, OPTIONAL),
        "quantity": (_decimal_text, OPTIONAL),
        "quote_quantity": (_decimal_text, OPTIONAL),
        "time_in_force": (_choice(TIME_IN_FORCE_BY_WIRE), OPTIONAL),
        "post_only": (_boolean, OPTIONAL),
        "stp": (_choice(STP_BY_WIRE), OPTIONAL),
        "client_order_id": (_client_order_id, OPTIONAL),
    },
    "amend": {
        "account_id": (_account_id, REQUIRED),
        "order_id": (_order_id, OPTIONAL),
        "client_order_id": (_client_order_id, OPTIONAL),
        "quantity": (_decimal_text, OPTIONAL),
        "price": (_decimal_text, OPTIONAL),
    },
    "cancel": {
        "account_id": (_account_id, REQUIRED),
        "order_id": (_order_id, OPTIONAL),
        "client_order_id": (_client_order_id, OPTIONAL),
    },
    "cancel_all": {"account_id": (_account_id, REQUIRED), "pair": (_pair, OPTIONAL)},
    "get_order": {
        "account_id": (_account_id, REQUIRED),
        "order_id": (_order_id, OPTIONAL),
        "client_order_id": (_client_order_id, OPTIONAL),
    },
    "open_orders": {"account_id": (_account_id, REQUIRED), "pair": (_pair, OPTIONAL)},
    "balances": {"account_id": (_account_id, REQUIRED)},
    "snapshot": {"pair": (_pair, REQUIRED), "depth": (_small_int(1, 100_000), OPTIONAL)},
    "markets": {},
    "ping": {},
    "deposit": {"account_id": (_account_id, REQUIRED), "asset": (_asset, REQUIRED), "amount": (_decimal_text, REQUIRED)},
    "withdraw": {"account_id": (_account_id, REQUIRED), "asset": (_asset, REQUIRED), "amount": (_decimal_text, REQUIRED)},
    "create_asset": {"asset": (_asset, REQUIRED), "decimals": (_small_int(0, 18), REQUIRED)},
    "create_market": {
        "pair": (_pair, REQUIRED),
        "tick_size": (_decimal_text, REQUIRED),
        "lot_size": (_decimal_text, REQUIRED),
        "min_quantity": (_decimal_text, OPTIONAL),
        "min_notional": (_decimal_text, OPTIONAL),
        "maker_fee_bps": (_small_int(-10_000, 10_000), OPTIONAL),
        "taker_fee_bps": (_small_int(-10_000, 10_000), OPTIONAL),
    },
    "halt": {"pair": (_pair, REQUIRED)},
    "resume": {"pair": (_pair, REQUIRED)},
    "register_bot_key": {"account_id": (_account_id, REQUIRED), "public_key": (_public_key, REQUIRED)},
    "revoke_bot_key": {"public_key": (_public_key, REQUIRED)},
    "ledger": {},
    # Served by the matcher's loop, not the engine: the committed journal and snapshots,
    # for replicas such as the recorder.
    "journal": {"after": (_small_int(0, MAX_ACCOUNT_ID), REQUIRED), "limit": (_small_int(1, MAX_JOURNAL_READ), OPTIONAL)},
    "engine_snapshot": {"at_most": (_small_int(0, MAX_ACCOUNT_ID), OPTIONAL)},
}
SERVER_OPS = frozenset({"journal", "engine_snapshot"})

# Commands that change state: journaled when accepted, never served from a replica.
MUTATING = frozenset(
    {"place", "amend", "cancel", "cancel_all", "deposit", "withdraw", "create_asset", "create_market",
     "halt", "resume", "register_bot_key", "revoke_bot_key"}
)
# What a bot may send over its CURVE socket: its own trading and its own queries.
BOT_COMMANDS = frozenset({"place", "amend", "cancel", "cancel_all", "get_order", "open_orders", "balances",
                          "snapshot", "markets", "ping"})
_BOT_SCHEMAS = {
    op: {field: rule for field, rule in schema.items() if field != "account_id"}
    for op, schema in COMMANDS.items()
    if op in BOT_COMMANDS
}


class Command:
    """A decoded, type-checked request: `op`, its request `id`, and its fields."""

    __slots__ = ("request_id", "op", "fields")

    def __init__(self, request_id: int | str | None, op: str, fields: dict[str, Any]) -> None:
        self.request_id = request_id
        self.op = op
        self.fields = fields

    def to_json(self) -> dict[str, Any]:
        """Return the command as a wire object (the journal stores exactly this)."""
        wire = {"op": self.op}
        for name, value in self.fields.items():
            names = _WIRE_NAMES.get(type(value))
            wire[name] = value if names is None else names[value]
        return wire

    def __repr__(self) -> str:
        return f"Command({self.op}, {self.fields})"


class ProtocolError(Exception):
    """A request that could not be decoded; carries the reply's code and the request id if known."""

    def __init__(self, code: RejectCode, message: str, details: dict | None = None, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id


def _request_id(value: Any) -> int | str | None:
    if value is None or (type(value) is int and -MAX_ACCOUNT_ID <= value <= MAX_ACCOUNT_ID):
        return value
    if type(value) is str and len(value) <= MAX_REQUEST_ID_LENGTH:
        return value
    raise ProtocolError(RejectCode.INVALID_FIELD, "id must be an integer or a string of at most 64 characters",
                        {"field": "id"})


def decode_command(frame: bytes, bot: bool = False) -> Command:
    """Decode and type-check one request frame; raise ProtocolError on anything malformed."""
    if frame.count(b"[") + frame.count(b"{") > MAX_BRACKETS:
        raise ProtocolError(RejectCode.INVALID_JSON, f"frame holds more than {MAX_BRACKETS} brackets: not a request")
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ProtocolError(RejectCode.INVALID_JSON, "frame is not valid JSON") from None
    if type(message) is not dict:
        raise ProtocolError(RejectCode.INVALID_JSON, "frame must be a JSON object")
    request_id = _request_id(message.pop("id", None))
    op = message.pop("op", None)
    schemas = _BOT_SCHEMAS if bot else COMMANDS
    schema = schemas.get(op) if type(op) is str else None
    if schema is None:
        if bot and op in COMMANDS:
            raise ProtocolError(RejectCode.FORBIDDEN, f"{op} is not allowed on the bot socket", request_id=request_id)
        raise ProtocolError(RejectCode.UNKNOWN_COMMAND, "unknown op", {"op": str(op)[:40]}, request_id)
    fields: dict[str, Any] = {}
    for name, value in message.items():
        rule = schema.get(name)
        if rule is None:
            if bot and name == "account_id":
                fields[name] = value  # checked against the key's account by the server
                continue
            raise ProtocolError(RejectCode.INVALID_FIELD, f"unknown field {name[:40]}", {"field": name[:40]}, request_id)
        if value is None and not rule[1]:
            continue
        try:
            fields[name] = rule[0](value)
        except _FieldError as error:
            raise ProtocolError(RejectCode.INVALID_FIELD, f"{name} {error}", {"field": name}, request_id) from None
    for name, (_, required) in schema.items():
        if required and name not in fields:
            raise ProtocolError(RejectCode.INVALID_FIELD, f"{name} is required", {"field": name}, request_id)
    return Command(request_id, op, fields)


def command_from_json(wire: dict[str, Any]) -> Command:
    """Rebuild a Command from its journaled wire object."""
    return decode_command(orjson.dumps(wire))


def encode_request(request_id: int | str | None, op: str, **fields: Any) -> bytes:
    """Build a request frame (clients and tests use this; the matcher never sends requests)."""
    message = {"id": request_id, "op": op}
    for name, value in fields.items():
        if value is not None:
            message[name] = getattr(value, "wire", value)
    return orjson.dumps(message)


def encode_ok(request_id: Any, data: Any) -> bytes:
    return orjson.dumps({"id": request_id, "ok": True, "data": data})


def encode_error(request_id: Any, code: RejectCode, message: str, details: dict | None = None) -> bytes:
    error = {"code": code.name, "number": int(code), "message": message}
    if details:
        error["details"] = details
    return orjson.dumps({"id": request_id, "ok": False, "error": error})


def decode_reply(frame: bytes) -> dict[str, Any]:
    """Decode a reply or an unsolicited event frame into a dict."""
    return orjson.loads(frame)


# ---------------------------------------------------------------- engine objects -> wire
# These read engine objects by attribute (Order, Fill, Market, updates) and format every
# integer with its market's or asset's exact Step.

_SIDE_NAME = {Side.BUY: "buy", Side.SELL: "sell"}
_TYPE_NAME = {OrderType.LIMIT: "limit", OrderType.MARKET: "market"}
_TIF_NAME = {tif: tif.name for tif in TimeInForce}
_STP_NAME = {mode: mode.name.lower() for mode in StpMode}
_STATUS_NAME = {status: status.name for status in OrderStatus}
_LIQUIDITY_NAME = ("maker", "taker")


_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED


def _ms(ts_ns: int) -> int:
    return ts_ns // 1_000_000


def order_message(order, market, assets, fills=()) -> dict[str, Any]:
    """Render an Order as SPEC section 4's order shape (plus `account_id`)."""
    tick, lot = market.tick, market.lot
    filled, remaining, price = order.filled, order.remaining, order.price
    quote_quantity = order.quote_quantity
    quantity = None if quote_quantity is not None and order.status <= _PARTIALLY_FILLED else order.quantity
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "account_id": order.account_id,
        "pair": order.market,
        "side": _SIDE_NAME[order.side],
        "type": _TYPE_NAME[order.order_type],
        "price": tick.format_cached(price) if price else None,
        "quantity": lot.format_cached(quantity) if quantity is not None else None,
        "quote_quantity": assets[market.quote].format(quote_quantity) if quote_quantity is not None else None,
        "filled_quantity": lot.format_cached(filled),
        "remaining_quantity": lot.format_cached(remaining),
        # What the fills so far traded in the quote asset (price x quantity summed, fees apart).
        "filled_quote_quantity": assets[market.quote].format(order.filled_quote),
        # Exact average price in quote per base, rendered with the tick's decimals plus 8.
        "average_price": _average_price(order.filled_quote, filled, market) if filled else None,
        "status": _STATUS_NAME[order.status],
        "time_in_force": _TIF_NAME[order.time_in_force],
        "post_only": order.post_only,
        "stp": _STP_NAME[order.stp],
        "created_at": order.created_ns // 1_000_000,
        "updated_at": order.updated_ns // 1_000_000,
        "fills": [fill_message(fill, market, assets) for fill in fills] if fills else [],
    }


def _average_price(filled_quote: int, filled_lots: int, market) -> str:
    """Return filled quote / filled base as a decimal string, truncated to tick decimals + 8."""
    tick = market.tick
    decimals = tick.decimals + 8
    # filled_quote is in quote units: price_ticks * lots * quote_per_tick_lot summed.
    # average ticks = filled_quote / (filled_lots * quote_per_tick_lot); scale to `decimals`.
    numerator = filled_quote * tick.multiplier * 10**8
    denominator = filled_lots * market.quote_per_tick_lot
    value = numerator // denominator
    text = str(value).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}" if decimals else text


def fill_message(fill, market, assets) -> dict[str, Any]:
    price, quantity = fill.price, fill.quantity
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order.order_id,
        "pair": market.symbol,
        "side": _SIDE_NAME[fill.order.side],
        "price": market.tick.format_cached(price),
        "quantity": market.lot.format_cached(quantity),
        "fee": assets[fill.fee_asset].format(fill.fee),
        "fee_asset": fill.fee_asset,
        "liquidity": _LIQUIDITY_NAME[fill.liquidity],
    }


def balance_message(asset: str, available: int, locked: int, step) -> dict[str, str]:
    format_count = step.format
    return {
        "asset": asset,
        "available": format_count(available),
        "locked": format_count(locked),
        "total": format_count(available + locked),
    }


def market_message(market, assets) -> dict[str, Any]:
    return {
        "pair": market.symbol,
        "base": market.base,
        "quote": market.quote,
        "tick_size": market.tick.text,
        "lot_size": market.lot.text,
        "min_quantity": market.lot.format(market.min_quantity),
        "min_notional": assets[market.quote].format(market.min_notional),
        "maker_fee_bps": market.maker_fee_bps,
        "taker_fee_bps": market.taker_fee_bps,
        "status": "halted" if market.halted else "trading",
        "seq": market.seq,
    }


def public_update_message(update, market, journal_seq: int) -> bytes:
    """Encode one PublicUpdate as the body of a `md.<PAIR>` PUB message."""
    tick, lot = market.tick, market.lot
    message = {
        "type": "update",
        "pair": update.market,
        "seq": update.seq,
        "ts": _ms(update.ts_ns),
        "journal_seq": journal_seq,
        "bids": [[tick.format_cached(price), lot.format_cached(size)]
                 for price, size in update.bids],
        "asks": [[tick.format_cached(price), lot.format_cached(size)]
                 for price, size in update.asks],
        "trades": [
            {
                "trade_id": trade_id,
                "pair": update.market,
                "price": tick.format_cached(price),
                "quantity": lot.format_cached(quantity),
                "taker_side": _SIDE_NAME[taker_side],
                "ts": _ms(ts_ns),
            }
            for trade_id, price, quantity, taker_side, ts_ns in update.trades
        ],
    }
    if update.halted is not None:
        message["status"] = "halted" if update.halted else "trading"
    return orjson.dumps(message)


def heartbeat_message(pair: str, seq: int, ts_ns: int) -> bytes:
    return orjson.dumps({"type": "heartbeat", "pair": pair, "seq": seq, "ts": _ms(ts_ns)})


def private_update_message(update, markets, assets, journal_seq: int, rendered: dict | None = None) -> bytes:
    """Encode one PrivateUpdate as the body of an `acct.<id>.` message.

    `rendered` may be an order message (with its fills) that the same command already
    produced for its reply; that order is then copied from it instead of rendered again.
    """
    rendered_id = rendered["order_id"] if rendered is not None else None
    orders = []
    for order in update.orders:
        if order.order_id == rendered_id:
            message = rendered.copy()
            message["fills"] = []
        else:
            message = order_message(order, markets[order.market], assets)
        orders.append(message)
    return orjson.dumps(
        {
            "type": "account",
            "account_id": update.account_id,
            "seq": update.seq,
            "ts": _ms(update.ts_ns),
            "journal_seq": journal_seq,
            "orders": orders,
            "fills": [fill_message(fill, markets[fill.order.market], assets) for fill in update.fills],
            "balances": [
                balance_message(asset, available, locked, assets[asset])
                for asset, available, locked in update.balances
            ],
        }
    )


def book_snapshot_message(market, depth: int | None, ts_ns: int) -> dict[str, Any]:
    """Render a market's book as SPEC's order-book shape, tagged with the market's seq."""
    bids, asks = market.book.depth(depth)
    tick_format, lot_format = market.tick.format, market.lot.format
    return {
        "pair": market.symbol,
        "seq": market.seq,
        "bids": [[tick_format(price), lot_format(size)] for price, size in bids],
        "asks": [[tick_format(price), lot_format(size)] for price, size in asks],
        "ts": _ms(ts_ns),
        "status": "halted" if market.halted else "trading",
    }
