"""Every request body and query parameter of the REST API, declared once, and the JSON
schemas of what the API answers.

A `Body` names the protocol command it becomes and which of that command's fields the
caller may send; those fields are checked by the protocol's own validators
(`common.protocol.COMMANDS`, through `decode_command`), so a rule exists in one place.
Fields that exist only at the REST edge (`username`, `shard_id`, `base_decimals`, ...) are
declared here with their validators. `Body.command` is the one function that turns a
body into a protocol command. The JSON schemas below feed the OpenAPI document; a unit
test checks that every protocol field a body exposes has one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from common import protocol
from common.types import (
    ASSET_SYMBOL,
    CLIENT_ORDER_ID,
    ORDER_TYPE_BY_WIRE,
    PAIR_SYMBOL,
    SIDE_BY_WIRE,
    STATUS_BY_WIRE,
    STP_BY_WIRE,
    TIME_IN_FORCE_BY_WIRE,
    RejectCode,
)
from gateway.envelope import ApiError, invalid_field
from gateway.operations import Param, choice_param, integer_param, pattern_param
from matcher.engine import DEFAULT_ASSET_DECIMALS, MAX_ASSET_DECIMALS, MAX_FEE_BPS

MAX_ID = (1 << 63) - 1
MAX_SHARD_ID = 1023
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,256}")

# ---------------------------------------------------------------- JSON schemas of fields

DECIMAL_PATTERN = r"^[0-9]{1,24}(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,4})?$"


def _decimal(description: str, example: str) -> dict[str, Any]:
    return {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": 64, "description": description,
            "example": example}


def _enum(table: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(table), "description": description}


def _pattern(pattern: re.Pattern[str], description: str, example: str, max_length: int) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{pattern.pattern}$", "maxLength": max_length,
            "description": description, "example": example}


PAIR_SCHEMA = _pattern(PAIR_SYMBOL, "market, written BASE-QUOTE", "BTC-USDT", 25)
ASSET_SCHEMA = _pattern(ASSET_SYMBOL, "asset symbol", "USDT", 12)
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}

# Protocol command fields as the REST API documents them (the validators are the protocol's).
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "account_id": {**ID_SCHEMA, "description": "trader id"},
    "pair": PAIR_SCHEMA,
    "side": _enum(SIDE_BY_WIRE, "order side"),
    "type": _enum(ORDER_TYPE_BY_WIRE, "order type"),
    "price": _decimal("limit price, a multiple of the tick size; for a market order, the worst price it may "
                      "trade at", "42150.50"),
    "quantity": _decimal("quantity in the base asset, a multiple of the lot size (amend: the new total)",
                         "0.010"),
    "quote_quantity": _decimal("market buys: how much of the quote asset to spend, instead of quantity",
                               "100.00"),
    "time_in_force": _enum(TIME_IN_FORCE_BY_WIRE, "GTC (default for limit), IOC (default for market) or FOK"),
    "post_only": {"type": "boolean", "description": "reject the order (POST_ONLY_WOULD_TAKE) instead of taking"},
    "stp": _enum(STP_BY_WIRE, "self-trade prevention; the taker's mode decides (default expire_maker)"),
    "client_order_id": _pattern(CLIENT_ORDER_ID, "your id for the order, unique among your open orders",
                                "my-order-1", 36),
    "asset": ASSET_SCHEMA,
    "amount": _decimal("amount, a multiple of the asset's precision", "1000"),
    "tick_size": _decimal("price step", "0.01"),
    "lot_size": _decimal("quantity step", "0.001"),
    "min_quantity": _decimal("smallest order quantity (default: one lot)", "0.001"),
    "min_notional": _decimal("smallest price x quantity, in the quote asset (default 0)", "10"),
    "maker_fee_bps": {"type": "integer", "minimum": -MAX_FEE_BPS, "maximum": MAX_FEE_BPS,
                      "description": "maker fee in basis points; negative is a rebate, at most the taker fee"},
    "taker_fee_bps": {"type": "integer", "minimum": 0, "maximum": MAX_FEE_BPS,
                      "description": "taker fee in basis points"},
}


# ---------------------------------------------------------------- request bodies


@dataclass(frozen=True, slots=True)
class LocalField:
    """A body field that exists only at the REST edge."""

    check: Callable[[Any], Any]
    schema: dict[str, Any]
    required: bool = False


def _local_integer(name: str, low: int, high: int, description: str) -> LocalField:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise invalid_field(name, f"{name} must be an integer in {low}..{high}")
        return value

    return LocalField(check, {"type": "integer", "minimum": low, "maximum": high, "description": description})


def _local_pattern(name: str, pattern: re.Pattern[str], max_length: int, description: str, example: str,
                   required: bool = False) -> LocalField:
    def check(value: Any) -> str:
        if type(value) is not str or len(value) > max_length or not pattern.fullmatch(value):
            raise invalid_field(name, f"{name} must match {pattern.pattern}")
        return value

    return LocalField(check, _pattern(pattern, description, example, max_length), required)


class Body:
    """One JSON request body: the fields it may hold and the command it becomes."""

    def __init__(self, name: str, op: str | None = None, *, supplied: tuple[str, ...] = (),
                 renamed: Mapping[str, str] | None = None, local: Mapping[str, LocalField] | None = None,
                 description: str = "") -> None:
        self.name = name
        self.op = op
        self.description = description
        self.renamed = dict(renamed or {})  # REST name -> protocol name
        self.local = dict(local or {})
        self.supplied = supplied
        command_fields = protocol.COMMANDS[op] if op is not None else {}
        rest_names = {wire: rest for rest, wire in self.renamed.items()}
        # REST field -> protocol field, in the protocol's order.
        self.command_fields: dict[str, str] = {
            rest_names.get(wire, wire): wire for wire in command_fields if wire not in supplied
        }
        self._rest_names = rest_names
        self.required = [rest for rest, wire in self.command_fields.items() if command_fields[wire][1]]
        self.required += [name for name, local_field in self.local.items() if local_field.required]

    def parse(self, raw: bytes) -> dict[str, Any]:
        """Return the body as a dict; refuse non-objects, unknown fields and bad REST-only fields."""
        return self.check(parse_json_object(raw))

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        """Refuse unknown fields and bad REST-only fields; return `body`."""
        for name, value in body.items():
            local_field = self.local.get(name)
            if local_field is not None:
                if value is not None or local_field.required:
                    body[name] = local_field.check(value)
            elif name not in self.command_fields:
                raise invalid_field(name[:40], f"unknown field {name[:40]}")
        for name, local_field in self.local.items():
            if local_field.required and name not in body:
                raise invalid_field(name, f"{name} is required")
        return body

    def command(self, body: Mapping[str, Any], **supplied: Any) -> dict[str, Any]:
        """Return the protocol fields of the command this body asks for, checked by the protocol."""
        fields = dict(supplied)
        for rest_name, wire_name in self.command_fields.items():
            value = body.get(rest_name)
            if value is not None:
                fields[wire_name] = value
        try:
            protocol.decode_command(orjson.dumps({"op": self.op, **fields}))
        except protocol.ProtocolError as error:
            details = dict(error.details or {})
            message = error.message
            wire_name = details.get("field")
            rest_name = self._rest_names.get(wire_name)
            if rest_name is not None:
                details["field"] = rest_name
                message = message.replace(wire_name, rest_name, 1)
            raise ApiError(error.code, message, details) from None
        return fields

    def json_schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for rest_name, wire_name in self.command_fields.items():
            schema = dict(FIELD_SCHEMAS[wire_name])
            if rest_name not in self.required:
                schema["nullable"] = True
            properties[rest_name] = schema
        for name, local_field in self.local.items():
            schema = dict(local_field.schema)
            if not local_field.required:
                schema["nullable"] = True
            properties[name] = schema
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if self.required:
            schema["required"] = self.required
        if self.description:
            schema["description"] = self.description
        return schema


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Return a body as a JSON object; an empty body is an empty object."""
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(RejectCode.INVALID_JSON, "the body is not valid JSON") from None
    if type(body) is not dict:
        raise ApiError(RejectCode.INVALID_JSON, "the body must be a JSON object")
    return body


NO_BODY = Body("Empty")

SHARD_FIELD = _local_integer(
    "shard_id", 0, MAX_SHARD_ID,
    "matcher shard whose ledger holds the funds (several shards only; default: the shard that owns \"*\", "
    "else the first)",
)

PLACE_ORDER = Body("PlaceOrder", "place", supplied=("account_id",),
                   description="limit orders need price and quantity; market orders quantity, or (buys) "
                               "quote_quantity, and an optional protection price")
AMEND_ORDER = Body("AmendOrder", "amend", supplied=("account_id", "order_id", "client_order_id"),
                   description="give quantity (the new total), price, or both")
CANCEL_ALL = Body("CancelAll", "cancel_all", supplied=("account_id",),
                  description="cancel every open order, or only those of `pair`")
WITHDRAW = Body("Withdrawal", "withdraw", supplied=("account_id",), local={"shard_id": SHARD_FIELD})
DEPOSIT = Body(
    "Deposit", "deposit", renamed={"trader_id": "account_id"}, local={"shard_id": SHARD_FIELD},
    description="credit a trader's available balance",
)
CREATE_TRADER = Body("CreateTrader", local={
    "username": _local_pattern("username", USERNAME, 32, "1-32 characters of A-Z a-z 0-9 _ . - starting with "
                               "a letter or digit", "alice", required=True),
})
_DECIMALS_NOTE = (f"used only when the asset does not exist yet; default: {DEFAULT_ASSET_DECIMALS}, or more when "
                  "the lot size (base) or tick size x lot size (quote) needs more")
CREATE_MARKET = Body("CreateMarket", "create_market", local={
    "base": _local_pattern("base", ASSET_SYMBOL, 12, "base asset; must match the pair", "BTC"),
    "quote": _local_pattern("quote", ASSET_SYMBOL, 12, "quote asset; must match the pair", "USDT"),
    "base_decimals": _local_integer("base_decimals", 0, MAX_ASSET_DECIMALS,
                                    "decimals of the base asset, " + _DECIMALS_NOTE),
    "quote_decimals": _local_integer("quote_decimals", 0, MAX_ASSET_DECIMALS,
                                     "decimals of the quote asset, " + _DECIMALS_NOTE),
}, description="create a market on the shard that owns the pair, creating its assets when missing")

# ---------------------------------------------------------------- query parameters

DEPTH = integer_param("depth", 1, 5000, 100, "levels per side (weight 1 up to 100, 5 up to 500, 10 beyond)")
LIMIT = integer_param("limit", 1, 1000, 100, "items per page")
CURSOR_PARAM = pattern_param("cursor", CURSOR, 256, "`next_cursor` of the previous page", "WyJvcGVuIiwxMDI0XQ",
                             "must be a next_cursor returned by this endpoint")
PAIR_PARAM = pattern_param("pair", PAIR_SYMBOL, 25, "only this market", "BTC-USDT", "must be a pair like BTC-USDT")
ORDER_STATUS = choice_param("status", ("open", "closed", "all"), "open",
                            "open orders (from the matcher), or closed / all (from the history store)")
QUERY: tuple[Param, ...] = (DEPTH, LIMIT, CURSOR_PARAM, PAIR_PARAM, ORDER_STATUS)


def depth_weight(query: Mapping[str, Any]) -> int:
    depth = query.get("depth") or DEPTH.default
    return 1 if depth <= 100 else 5 if depth <= 500 else 10


# ---------------------------------------------------------------- path parameters


def order_id_from_path(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) <= MAX_ID:
        raise invalid_field("order_id", "order_id must be a positive integer")
    return int(text)


def client_order_id_from_path(text: str) -> str:
    if not CLIENT_ORDER_ID.fullmatch(text):
        raise invalid_field("client_order_id", "client_order_id must be 1-36 characters of A-Z a-z 0-9 _ -")
    return text


def trader_id_from_path(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) <= MAX_ID:
        raise invalid_field("trader_id", "trader_id must be a positive integer")
    return int(text)


def pair_from_path(text: str) -> str:
    if len(text) > 25 or not PAIR_SYMBOL.fullmatch(text):
        raise ApiError(RejectCode.UNKNOWN_MARKET, f"unknown market {text[:40]}", {"pair": text[:40]})
    return text


# ---------------------------------------------------------------- response schemas

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_INTEGER = {"type": "integer"}
_MS = {"type": "integer", "description": "milliseconds since the epoch"}


def _object(properties: dict[str, Any], description: str = "", required: list[str] | None = None) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties,
              "required": list(properties) if required is None else required}
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def list_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": schema}


def page_of(name: str) -> dict[str, Any]:
    return _object({"items": list_of(ref(name)), "next_cursor": _NULLABLE_STRING, "has_more": {"type": "boolean"}},
                   "a page of a list; pass next_cursor as cursor for the next one")


_LEVELS = list_of({"type": "array", "items": _STRING, "minItems": 2, "maxItems": 2,
                   "description": "[price, quantity]"})

COMPONENTS: dict[str, dict[str, Any]] = {
    "Fill": _object({
        "trade_id": _INTEGER, "order_id": _INTEGER, "pair": _STRING, "side": _enum(SIDE_BY_WIRE, ""),
        "price": _STRING, "quantity": _STRING,
        "fee": {"type": "string", "description": "negative for a maker rebate"},
        "fee_asset": _STRING, "liquidity": {"type": "string", "enum": ["maker", "taker"]},
    }, "one fill of an order"),
    "Order": _object({
        "order_id": _INTEGER, "client_order_id": _NULLABLE_STRING, "pair": _STRING,
        "side": _enum(SIDE_BY_WIRE, ""), "type": _enum(ORDER_TYPE_BY_WIRE, ""),
        "price": _NULLABLE_STRING,
        "quantity": {"type": "string", "nullable": True,
                     "description": "null for a market buy by quote_quantity until it closes"},
        "quote_quantity": _NULLABLE_STRING, "filled_quantity": _STRING, "remaining_quantity": _STRING,
        "filled_quote_quantity": {"type": "string", "description": "quote asset traded by the fills so far "
                                                                   "(price x quantity summed, fees apart)"},
        "average_price": {"type": "string", "nullable": True,
                          "description": "tick decimals plus 8, truncated; null before the first fill"},
        "status": _enum(STATUS_BY_WIRE, ""), "time_in_force": _enum(TIME_IN_FORCE_BY_WIRE, ""),
        "post_only": {"type": "boolean"}, "stp": _enum(STP_BY_WIRE, ""), "created_at": _MS, "updated_at": _MS,
        "fills": {**list_of(ref("Fill")), "description": "the fills this request produced"},
    }, "an order; fills lists the fills produced by the request that returned it"),
    "CanceledOrders": _object({"canceled": list_of(ref("Order"))}),
    "Balance": _object({"asset": _STRING, "available": _STRING, "locked": _STRING, "total": _STRING}),
    "Funds": _object({"trader_id": _INTEGER, "shard_id": _INTEGER, "asset": _STRING, "available": _STRING,
                      "locked": _STRING, "total": _STRING}, "the balance of one asset after a deposit or withdrawal"),
    "Market": _object({
        "pair": _STRING, "base": _STRING, "quote": _STRING, "tick_size": _STRING, "lot_size": _STRING,
        "min_quantity": _STRING, "min_notional": _STRING, "maker_fee_bps": _INTEGER, "taker_fee_bps": _INTEGER,
        "status": {"type": "string", "enum": ["trading", "halted"]}, "seq": _INTEGER, "shard_id": _INTEGER,
    }),
    "Asset": _object({"asset": _STRING, "decimals": _INTEGER}),
    "OrderBook": _object({"pair": _STRING, "seq": _INTEGER, "bids": _LEVELS, "asks": _LEVELS, "ts": _MS,
                          "status": {"type": "string", "enum": ["trading", "halted"]}},
                         "levels best price first, tagged with the market's sequence number"),
    "Trader": _object({"trader_id": _INTEGER, "username": _STRING, "created_at": _MS}),
    "Profile": _object({"trader_id": _INTEGER, "username": _STRING, "created_at": _MS,
                        "api_key_prefix": _NULLABLE_STRING}),
    "NewTrader": _object({"trader_id": _INTEGER, "username": _STRING, "created_at": _MS, "api_key": _STRING,
                          "api_secret": _STRING}, "the secret is shown only here"),
    "NewKey": _object({"trader_id": _INTEGER, "api_key": _STRING, "api_secret": _STRING},
                      "the old key stops working; the secret is shown only here"),
    "RevokedKeys": _object({"trader_id": _INTEGER, "revoked": _INTEGER}),
    "Time": _object({"server_time": _MS}),
    "ExchangeInfo": _object({
        "server_time": _MS, "markets": list_of(ref("Market")), "assets": list_of(ref("Asset")),
        "order_types": list_of(_STRING), "time_in_force": list_of(_STRING), "stp_modes": list_of(_STRING),
        "order_statuses": list_of(_STRING), "candle_intervals": list_of(_STRING),
        "receive_window_ms": _INTEGER,
        "rate_limits": _object({
            "window_seconds": _INTEGER, "key_weight": _INTEGER, "ip_weight": _INTEGER,
            "weights": {"type": "object", "additionalProperties": _STRING,
                        "description": "weight of each route (\"METHOD /path\")"},
        }),
    }),
    "Health": _object({
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "shards": list_of(_object({"shard_id": _INTEGER,
                                   "status": {"type": "string", "enum": ["ok", "unavailable", "timeout"]},
                                   "round_trip_ms": {"type": "number", "nullable": True}})),
        "pid": _INTEGER, "ts": _MS,
    }),
    "Error": _object({
        "success": {"type": "boolean", "enum": [False]},
        "error": _object({"code": {"type": "string", "enum": [code.name for code in RejectCode]},
                          "message": _STRING, "details": {"type": "object"}}),
        "timestamp": _MS,
    }),
}

for _name in ("Market", "Asset", "Balance", "Order", "Trader"):
    COMPONENTS[f"{_name}Page"] = page_of(_name)

CANDLE_INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
