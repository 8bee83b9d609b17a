"""Binance request parameters: parsed from the query string and the form body, checked one by one.

Binance takes every parameter either in the query string or in an
`application/x-www-form-urlencoded` body, or both (the query string wins when a name is in
both); a name repeated within one of them is refused (-1101). `Params` keeps the decoded
values and, for signed endpoints, what the signature covers: the query string concatenated
with the body, exactly as sent, without the `signature` parameter itself.

The typed readers below (`symbol`, `integer`, `decimal`, ...) turn a value into what the
endpoint needs or raise Binance's error for it, with Binance's messages and legal ranges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

import orjson

from gateway.binance.errors import (
    DECIMAL_RANGE,
    INTEGER_RANGE,
    BinanceError,
    illegal,
    invalid_value,
    mandatory,
)

MAX_PARAMETERS = 64
SIGNATURE = "signature"
SYMBOL_RANGE = "^[A-Z0-9]{1,24}$"
CLIENT_ID_RANGE = "^[a-zA-Z0-9-_]{1,36}$"
_SYMBOL = re.compile(r"[A-Z0-9]{1,24}")
_DECIMAL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_CLIENT_ID = re.compile(r"[a-zA-Z0-9_-]{1,36}")
_MAX_INTEGER_DIGITS = 20


class Params:
    """The decoded parameters of one request and the payload its signature covers."""

    __slots__ = ("values", "signature", "payload")

    def __init__(self, values: dict[str, str], signature: str | None, payload: bytes) -> None:
        self.values = values
        self.signature = signature
        self.payload = payload

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> str | None:
        """Return the value, None when absent; an empty value is an error (Binance's -1105)."""
        value = self.values.get(name)
        if value == "":
            raise BinanceError(-1105, f"Parameter '{name}' was empty.")
        return value

    def require(self, name: str) -> str:
        value = self.values.get(name)
        if not value:
            raise mandatory(name)
        return value


def parse(query: str, body: bytes) -> Params:
    """Decode the query string and the form body; refuse repeats, bad encodings and too many parameters."""
    try:
        body_text = body.decode("ascii")
        query.encode("ascii")
    except UnicodeError:
        raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
    query_values, query_signature, query_rest = _split(query)
    body_values, body_signature, body_rest = _split(body_text)
    if query_signature is not None and body_signature is not None:
        raise BinanceError(-1101, "Duplicate values for a parameter detected.")
    values = {**body_values, **query_values}  # the query string wins
    if len(values) > MAX_PARAMETERS:
        raise BinanceError(-1101, "Too many parameters sent for this endpoint.")
    signature = query_signature if query_signature is not None else body_signature
    return Params(values, signature, (query_rest + body_rest).encode())


def _split(text: str) -> tuple[dict[str, str], str | None, str]:
    """Return (values, signature, the text without its signature parameter) of one query string or body."""
    values: dict[str, str] = {}
    signature = None
    kept = []
    segments = text.split("&") if text else []
    if len(segments) > MAX_PARAMETERS + 1:
        raise BinanceError(-1101, "Too many parameters sent for this endpoint.")
    for segment in segments:
        if not segment:
            kept.append(segment)  # signed as sent: "a=1&&b=2" stays what it was
            continue
        raw_name, _, raw_value = segment.partition("=")
        try:
            name = unquote_plus(raw_name, errors="strict")
            value = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
        if name in values or (name == SIGNATURE and signature is not None):
            raise BinanceError(-1101, "Duplicate values for a parameter detected.")
        if name == SIGNATURE:
            signature = value
            continue
        values[name] = value
        kept.append(segment)
    return values, signature, "&".join(kept)


def check_known(params: Params, known: frozenset[str]) -> None:
    """Refuse parameters the endpoint does not read, as Binance does (-1104)."""
    read = sum(1 for name in params.values if name in known)
    if read != len(params.values):
        raise BinanceError(-1104, f"Not all sent parameters were read; read '{read}' parameter(s) but was sent "
                                  f"'{len(params.values)}'.")


# ---------------------------------------------------------------- typed readers


def symbol_text(params: Params, name: str = "symbol", required: bool = True) -> str | None:
    value = params.require(name) if required else params.get(name)
    if value is not None and not _SYMBOL.fullmatch(value):
        raise illegal(name, SYMBOL_RANGE)
    return value


def symbol_list(params: Params, name: str = "symbols") -> list[str] | None:
    """Return a JSON array of symbols (`["BTCUSDT","ETHUSDT"]`), or None when absent."""
    text = params.get(name)
    if text is None:
        return None
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not value or not all(
            isinstance(item, str) and _SYMBOL.fullmatch(item) for item in value):
        raise illegal(name, r'^\[("[A-Z0-9]{1,24}"(,"[A-Z0-9]{1,24}"){0,}){0,1}\]$')
    if len(set(value)) != len(value):
        raise BinanceError(-1151, "Symbol is present multiple times in the list.")
    return value


def integer(params: Params, name: str, low: int, high: int, default: int | None = None) -> int | None:
    text = params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_INTEGER_DIGITS):
        raise illegal(name, INTEGER_RANGE)
    value = int(text)
    if not low <= value <= high:
        raise invalid_value(name, f"It must be in {low}..{high}.")
    return value


def decimal(params: Params, name: str) -> str | None:
    """Return a decimal string as sent (zmx checks it against the tick or lot exactly), or None."""
    text = params.get(name)
    if text is not None and not _DECIMAL.fullmatch(text):
        raise illegal(name, DECIMAL_RANGE)
    return text


def choice(params: Params, name: str, choices: Iterable[str], error: BinanceError | None = None) -> str | None:
    text = params.get(name)
    if text is None:
        return None
    choices = tuple(choices)
    if text not in choices:
        raise error if error is not None else illegal(name, ", ".join(choices))
    return text


def boolean(params: Params, name: str, default: bool = False) -> bool:
    text = params.get(name)
    if text is None:
        return default
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise illegal(name, "true, false")
    return lowered == "true"


def client_id(params: Params, name: str, empty_code: int) -> str | None:
    """Return a client order id (`newClientOrderId`, `origClientOrderId`), or None when absent."""
    value = params.values.get(name)
    if value is None:
        return None
    if value == "":
        message = "New client order ID was empty." if empty_code == -1118 else "Original client order ID was empty."
        raise BinanceError(empty_code, message)
    if not _CLIENT_ID.fullmatch(value):
        raise illegal(name, CLIENT_ID_RANGE)
    return value
