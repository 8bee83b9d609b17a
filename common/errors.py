"""The exceptions a zmx client raises: one hierarchy for REST, WebSocket and ZeroMQ.

Every refusal the servers send carries a code from `common.types.RejectCode`
(docs/errors.md); `error_from_wire` turns it into the subclass for its kind, so callers
catch what they can act on:

    ZmxError                         code, number, message, details, status
    +-- InvalidRequest               1xxx and 5001: fix the request (bad field, price, market...)
    +-- AuthenticationError          2001-2004, and a bot key the matcher refuses
    +-- Forbidden                    2005
    +-- NotFound                     3001, 3002, 3005
    +-- Conflict                     3003, 3004 (a duplicate client_order_id, ...)
    +-- OrderRejected                4xxx: a business rule refused it; nothing changed
    +-- RateLimited                  5002; `retry_after` seconds
    +-- Unavailable                  5003, 5006: the request did not run; try again later
    |   +-- ConnectionFailed         client side: could not connect or send; it did not run
    +-- OutcomeUnknown               5004, 5005, and client-side timeouts and dropped
                                     connections: the request may have run; reconcile by
                                     client_order_id

Client-side errors use codes outside the table (`CONNECTION_FAILED`, `TIMEOUT`,
`DISCONNECTED`) and have `number` None.
"""

from __future__ import annotations

from typing import Any

from common.types import HTTP_STATUS, REJECT_BY_NAME, RejectCode


class ZmxError(Exception):
    """A request that zmx refused or that failed on the way; `code` is the reject code's name."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, *,
                 status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        reject = REJECT_BY_NAME.get(code)
        self.number = int(reject) if reject is not None else None
        self.message = message
        self.details = details or {}
        self.status = status if status is not None else (HTTP_STATUS.get(reject) if reject is not None else None)


class InvalidRequest(ZmxError):
    """The request is malformed or names something that does not exist (1xxx)."""


class AuthenticationError(ZmxError):
    """The credentials are missing, unknown, revoked, or the signature or timestamp is wrong."""


class Forbidden(ZmxError):
    """The caller may not do this (another trader's account, an admin operation)."""


class NotFound(ZmxError):
    """No such order or resource for this caller."""


class Conflict(ZmxError):
    """Something with this identity exists already (a client_order_id among open orders)."""


class OrderRejected(ZmxError):
    """A business rule refused the command; the account and the book are unchanged."""


class RateLimited(ZmxError):
    """Too many requests; `retry_after` is how many seconds to wait (when the server said)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, *,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(code, message, details, status=status)
        if retry_after is None and isinstance(self.details.get("retry_after"), (int, float)):
            retry_after = float(self.details["retry_after"])
        self.retry_after = retry_after


class Unavailable(ZmxError):
    """The service could not take the request; it did not run and may be sent again."""


class ConnectionFailed(Unavailable):
    """The client could not connect or send; the request never left and may be sent again."""


class OutcomeUnknown(ZmxError):
    """No answer arrived: the request may or may not have run. Never resend an order blindly:
    look it up by client_order_id (see `reconcile` in common.sdk)."""


_CLASS_BY_RANGE = {1: InvalidRequest, 3: NotFound, 4: OrderRejected, 5: Unavailable}
_CLASS_BY_CODE = {
    RejectCode.MISSING_AUTHENTICATION: AuthenticationError,
    RejectCode.INVALID_API_KEY: AuthenticationError,
    RejectCode.INVALID_SIGNATURE: AuthenticationError,
    RejectCode.TIMESTAMP_OUT_OF_WINDOW: AuthenticationError,
    RejectCode.FORBIDDEN: Forbidden,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: Conflict,
    RejectCode.ALREADY_EXISTS: Conflict,
    RejectCode.RATE_LIMITED: RateLimited,
    RejectCode.BODY_TOO_LARGE: InvalidRequest,
    RejectCode.MATCHER_TIMEOUT: OutcomeUnknown,
    RejectCode.INTERNAL_ERROR: OutcomeUnknown,
}


def error_class(code: str) -> type[ZmxError]:
    """Return the exception class for a reject code's name (ZmxError for an unknown one)."""
    reject = REJECT_BY_NAME.get(code)
    if reject is None:
        return ZmxError
    return _CLASS_BY_CODE.get(reject) or _CLASS_BY_RANGE.get(int(reject) // 1000, ZmxError)


def error_from_wire(error: Any, status: int | None = None, retry_after: float | None = None) -> ZmxError:
    """Build the exception for a wire error object `{"code", "message", "details"?}`."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return ZmxError("INVALID_REPLY", f"not an error object: {str(error)[:200]}", status=status)
    code, message = error["code"], str(error.get("message", ""))
    details = error.get("details") if isinstance(error.get("details"), dict) else None
    cls = error_class(code)
    if cls is RateLimited:
        return RateLimited(code, message, details, status=status, retry_after=retry_after)
    return cls(code, message, details, status=status)
