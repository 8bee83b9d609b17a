"""Binance's error dialect: `{"code": -1121, "msg": "Invalid symbol."}` with Binance's HTTP statuses.

Errors raised by the Binance layer itself are `BinanceError`s: they carry Binance's code and
message, and the zmx reject code closest to them (for metrics and the access log). Errors
raised by code the two APIs share (the matcher's rejects, the engine client's 503/504, the
store, Falcon's 404/405, the body limit) are plain `ApiError`s; `translate` maps them with
`REJECTS`, the one table from zmx reject codes to Binance codes (docs/binance-compat.md
prints it). Messages are Binance's own wherever Binance has one, since clients match on them
(ccxt maps "Account has insufficient balance for requested action." to InsufficientFunds).
"""

from __future__ import annotations

import falcon
import orjson

from common.types import RejectCode
from gateway.envelope import ApiError

UNKNOWN_ORDER = "Unknown order sent."
NO_SUCH_ORDER = "Order does not exist."
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_RANGE = "^[0-9]{1,20}$"


class BinanceError(ApiError):
    """A request refused with a Binance error code and message."""

    def __init__(self, code: int, msg: str, reject: RejectCode = RejectCode.INVALID_FIELD, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reject, msg, headers=headers)
        self.binance_code = code
        self.status = status


# zmx reject code -> (Binance code, message, HTTP status). Rate limiting has its own message.
REJECTS: dict[RejectCode, tuple[int, str, int]] = {
    RejectCode.INVALID_JSON: (-1100, "Illegal characters found in a parameter.", 400),
    RejectCode.INVALID_FIELD: (-1102, "A mandatory parameter was not sent, was empty/null, or malformed.", 400),
    RejectCode.INVALID_PRICE: (-1013, "Filter failure: PRICE_FILTER", 400),
    RejectCode.INVALID_QUANTITY: (-1013, "Filter failure: LOT_SIZE", 400),
    RejectCode.UNKNOWN_MARKET: (-1121, "Invalid symbol.", 400),
    RejectCode.UNKNOWN_COMMAND: (-1020, "This operation is not supported.", 400),
    RejectCode.MALFORMED_FRAME: (-1000, "An unknown error occurred while processing the request.", 400),
    RejectCode.UNKNOWN_ASSET: (-1100, "Illegal characters found in a parameter.", 400),
    RejectCode.INVALID_AMOUNT: (-1100, "Illegal characters found in a parameter.", 400),
    RejectCode.MISSING_AUTHENTICATION: (-2014, "API-key format invalid.", 401),
    RejectCode.INVALID_API_KEY: (-2015, "Invalid API-key, IP, or permissions for action.", 401),
    RejectCode.INVALID_SIGNATURE: (-1022, "Signature for this request is not valid.", 400),
    RejectCode.TIMESTAMP_OUT_OF_WINDOW: (-1021, "Timestamp for this request is outside of the recvWindow.", 400),
    RejectCode.FORBIDDEN: (-2010, "This action is disabled on this account.", 400),
    RejectCode.NOT_FOUND: (-1020, "This operation is not supported.", 404),
    RejectCode.ORDER_NOT_FOUND: (-2013, NO_SUCH_ORDER, 400),
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: (-2010, "Duplicate order sent.", 400),
    RejectCode.ALREADY_EXISTS: (-2010, "Duplicate order sent.", 400),
    RejectCode.METHOD_NOT_ALLOWED: (-1020, "This operation is not supported.", 405),
    RejectCode.INSUFFICIENT_BALANCE: (-2010, "Account has insufficient balance for requested action.", 400),
    RejectCode.POST_ONLY_WOULD_TAKE: (-2010, "Order would immediately match and take.", 400),
    RejectCode.MARKET_HALTED: (-2010, "Market is closed.", 400),
    RejectCode.BELOW_MIN_QUANTITY: (-1013, "Filter failure: LOT_SIZE", 400),
    RejectCode.BELOW_MIN_NOTIONAL: (-1013, "Filter failure: NOTIONAL", 400),
    RejectCode.AMEND_REJECTED: (-2010, "Unsupported order combination", 400),
    RejectCode.ORDER_NOT_OPEN: (-2011, UNKNOWN_ORDER, 400),
    RejectCode.TOO_MANY_OPEN_ORDERS: (-1013, "Filter failure: EXCHANGE_MAX_NUM_ORDERS", 400),
    RejectCode.BODY_TOO_LARGE: (-1101, "Too many parameters sent for this endpoint.", 413),
    RejectCode.RATE_LIMITED: (-1003, "Too many requests queued.", 429),
    RejectCode.MATCHER_UNAVAILABLE: (-1001, "Internal error; unable to process your request. Please try again.", 503),
    RejectCode.MATCHER_TIMEOUT: (-1007, "Timeout waiting for response from backend server. Send status unknown;"
                                        " execution status unknown.", 503),
    RejectCode.INTERNAL_ERROR: (-1000, "An unknown error occurred while processing the request.", 500),
    RejectCode.STORE_UNAVAILABLE: (-1001, "Internal error; unable to process your request. Please try again.", 503),
}


def translate(error: ApiError) -> tuple[int, str, int]:
    """Return (Binance code, message, HTTP status) for any error the gateway raised."""
    if isinstance(error, BinanceError):
        return error.binance_code, error.message, error.status
    code, msg, status = REJECTS[error.code]
    if error.code is RejectCode.RATE_LIMITED:
        msg = error.message  # the limiter's own account of the budget
    elif error.code in (RejectCode.NOT_FOUND, RejectCode.METHOD_NOT_ALLOWED):
        msg = f"{msg} ({error.message}; docs/binance-compat.md lists the /api/v3 subset zmx serves)"
    return code, msg, status


def render(resp: falcon.Response, error: ApiError) -> None:
    """Replace an error response with Binance's shape, status and code."""
    code, msg, status = translate(error)
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps({"code": code, "msg": msg})


# ---------------------------------------------------------------- the -11xx family


def illegal(name: str, legal: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def one_of(first: str, second: str) -> BinanceError:
    return BinanceError(-1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!")


def not_required(name: str, why: str = "") -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.{' ' + why if why else ''}")


def invalid_value(name: str, why: str = "") -> BinanceError:
    return BinanceError(-1130, f"Data sent for parameter '{name}' is not valid.{' ' + why if why else ''}")


def bad_combination(why: str) -> BinanceError:
    return BinanceError(-1128, f"Combination of optional parameters invalid. {why}")
