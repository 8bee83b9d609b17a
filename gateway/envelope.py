"""The REST envelope, the one error type, and how every error becomes a response.

Success: `{"success": true, "data": ..., "timestamp": ms}`.
Failure: `{"success": false, "error": {"code", "message", "details"}, "timestamp": ms}`,
with the HTTP status taken from `common.types.HTTP_STATUS`, the only table that maps
reject codes to statuses. Lists are pages: `{"items", "next_cursor", "has_more"}`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import falcon
import orjson

from common.types import HTTP_STATUS, REJECT_BY_NAME, RejectCode

log = logging.getLogger("zmx.gateway")

JSON = "application/json"
_STATUS_LINES = {status: falcon.code_to_http_status(status) for status in set(HTTP_STATUS.values()) | {200, 201}}
# Falcon's own errors (no route, wrong method, ...) expressed in our codes.
_FALCON_STATUS_CODES = {
    400: RejectCode.INVALID_FIELD,
    404: RejectCode.NOT_FOUND,
    405: RejectCode.METHOD_NOT_ALLOWED,
    413: RejectCode.BODY_TOO_LARGE,
}


class ApiError(Exception):
    """A request that fails with a reject code; rendered as the error envelope."""

    def __init__(self, code: RejectCode, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers

    @classmethod
    def from_reply(cls, error: dict[str, Any]) -> "ApiError":
        """Build the error a matcher reject reply describes."""
        code = REJECT_BY_NAME.get(error.get("code"))
        if code is None:
            log.error("matcher sent an unknown reject code", extra={"error": error})
            code = RejectCode.INTERNAL_ERROR
        return cls(code, str(error.get("message", code.name)), error.get("details") or {})

    def __repr__(self) -> str:
        return f"ApiError({self.code.name}, {self.message!r}, {self.details!r})"


def invalid_field(field: str, message: str) -> ApiError:
    """Return INVALID_FIELD naming `field`; every validator reports this way."""
    return ApiError(RejectCode.INVALID_FIELD, message, {"field": field})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ok(resp: falcon.Response, data: Any, status: int = 200) -> None:
    """Answer with the success envelope around `data`."""
    resp.status = _STATUS_LINES[status]
    resp.content_type = JSON
    resp.data = orjson.dumps({"success": True, "data": data, "timestamp": now_ms()})


def page(items: list[Any], next_cursor: str | None = None, has_more: bool = False) -> dict[str, Any]:
    """Return the shape of every list: a page of items and the cursor of the next page."""
    return {"items": items, "next_cursor": next_cursor, "has_more": has_more}


def render_error(resp: falcon.Response, error: ApiError) -> None:
    status = HTTP_STATUS[error.code]
    resp.status = _STATUS_LINES[status]
    resp.content_type = JSON
    resp.data = orjson.dumps({
        "success": False,
        "error": {"code": error.code.name, "message": error.message, "details": error.details},
        "timestamp": now_ms(),
    })
    if error.headers:
        for name, value in error.headers.items():
            resp.set_header(name, value)
    resp.context.error_code = error.code
    resp.context.error = error  # for a dialect that renders errors its own way (gateway/binance)


def handle_api_error(req: falcon.Request, resp: falcon.Response, error: ApiError, params: dict) -> None:
    render_error(resp, error)


def handle_falcon_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError, params: dict) -> None:
    """Render Falcon's own errors (unknown route, method not allowed) in the envelope."""
    code = _FALCON_STATUS_CODES.get(error.status_code, RejectCode.INVALID_FIELD)
    if code is RejectCode.NOT_FOUND:
        message = f"no such resource: {req.path[:200]}"
    elif code is RejectCode.METHOD_NOT_ALLOWED:
        message = f"{req.method} is not allowed on {req.path[:200]}"
    else:
        message = error.title or code.name
    details = {"allowed": error.headers["Allow"]} if error.headers and "Allow" in error.headers else {}
    render_error(resp, ApiError(code, message, details, headers=error.headers))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: dict) -> None:
    """The last resort: log the bug with the request id and answer 500 INTERNAL_ERROR."""
    log.error("unhandled error", exc_info=error,
              extra={"request_id": getattr(req.context, "request_id", None), "path": req.path})
    render_error(resp, ApiError(RejectCode.INTERNAL_ERROR, "internal error; see the gateway log"))
