"""What happens to every request around its responder.

`RequestMiddleware` (first in, last out): request id, the body read once under the size
limit, and on the way out the security headers, `X-Request-Id`, metrics and the access
log line. `GuardMiddleware` (after routing): the responder's `Operation` says who may call
it, what it weighs and which query parameters and body it takes; the guard authenticates,
charges the rate limit and validates, so a responder only runs on a valid request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import falcon

from common.types import RejectCode
from gateway.auth import Authenticator
from gateway.envelope import ApiError
from gateway.metrics import Metrics
from gateway.operations import ADMIN, TRADER, operation_of
from gateway.ratelimit import RateLimiter
from gateway.schemas import NO_BODY

access_log = logging.getLogger("zmx.gateway.access")

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"


class RequestMiddleware:
    """Request ids, the body limit, security headers, metrics and the access log."""

    def __init__(self, max_body_bytes: int, metrics: Metrics) -> None:
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        context = req.context
        context.started = time.perf_counter()
        context.trader_id = None
        context.error_code = None
        given = req.get_header("X-Request-Id")
        context.request_id = given if given is not None and REQUEST_ID.fullmatch(given) else os.urandom(8).hex()
        context.raw_body = self._read_body(req)

    def _read_body(self, req: falcon.Request) -> bytes:
        limit = self.max_body_bytes
        length = req.content_length
        if length is not None and length > limit:
            raise ApiError(RejectCode.BODY_TOO_LARGE, f"the body may hold at most {limit} bytes",
                           {"max_body_bytes": limit})
        if length == 0 or (length is None and "TRANSFER-ENCODING" not in req.headers):
            return b""
        body = req.bounded_stream.read(limit + 1)
        if len(body) > limit:
            raise ApiError(RejectCode.BODY_TOO_LARGE, f"the body may hold at most {limit} bytes",
                           {"max_body_bytes": limit})
        return body

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        context = req.context
        headers = [*SECURITY_HEADERS, ("X-Request-Id", context.request_id)]
        if resp.get_header("Content-Security-Policy") is None:
            headers.append(("Content-Security-Policy", API_CONTENT_SECURITY_POLICY))
        if resp.get_header("Cache-Control") is None:
            headers.append(("Cache-Control", "no-store"))
        if req.scheme == "https":
            headers.append(("Strict-Transport-Security", HSTS))
        resp.set_headers(headers)
        route = req.uri_template or "unmatched"
        status = resp.status_code
        elapsed = time.perf_counter() - context.started
        code = getattr(resp.context, "error_code", None)
        self.metrics.request(req.method, route, status, elapsed, code)
        access_log.info("request", extra={
            "request_id": context.request_id, "method": req.method, "route": route, "status": status,
            "duration_ms": round(elapsed * 1000, 3), "trader_id": context.trader_id,
            "remote_addr": req.remote_addr, **({"code": code.name} if code is not None else {}),
        })


class GuardMiddleware:
    """Authenticate, rate-limit and validate according to the responder's Operation."""

    def __init__(self, authenticator: Authenticator, rate_limiter: RateLimiter, metrics: Metrics) -> None:
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.metrics = metrics

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        operation = operation_of(resource, req.method) if resource is not None else None
        if operation is None:
            return  # OPTIONS (CORS preflight) and other responders Falcon provides
        context = req.context
        context.operation = operation
        scope, identity = "ip", req.remote_addr or "unknown"
        if operation.auth == TRADER:
            try:
                context.trader_id = self.authenticator.trader(
                    req.get_header("X-API-Key"), req.get_header("X-Timestamp"), req.get_header("X-Signature"),
                    req.method, request_target(req), context.raw_body)
            except ApiError:
                self._charge(resp, operation, scope, identity, 1)  # failed attempts cost the address
                raise
            scope, identity = "key", req.get_header("X-API-Key")
        elif operation.auth == ADMIN:
            try:
                self.authenticator.admin(req.get_header("Authorization"))
            except ApiError:
                self._charge(resp, operation, scope, identity, 1)
                raise
            scope = None  # the admin is not rate limited
        try:
            context.query = operation.parse_query(req.params)
        except ApiError:
            if scope is not None:
                self._charge(resp, operation, scope, identity, 1)
            raise
        if scope is not None and operation.rate_limited:
            self._charge(resp, operation, scope, identity, operation.weight_for(context.query))
        context.body = (operation.body or NO_BODY).parse(context.raw_body)

    def _charge(self, resp: falcon.Response, operation, scope: str, identity: str, weight: int) -> None:
        if not operation.rate_limited:
            return
        decision = self.rate_limiter.charge(scope, identity, weight)
        headers = decision.headers()
        resp.set_headers(headers)
        if not decision.allowed:
            self.metrics.rate_limited.labels(scope).inc()
            raise ApiError(RejectCode.RATE_LIMITED,
                           f"over the {scope} budget of {decision.limit} per {self.rate_limiter.window_seconds} s;"
                           f" retry in {decision.reset_seconds} s",
                           {"scope": scope, "limit": decision.limit, "retry_after": decision.reset_seconds},
                           headers=headers)


def request_target(req: falcon.Request) -> str:
    """Return the path and query exactly as the client sent them in the request line."""
    query = req.query_string
    # gunicorn's RAW_URI is the request target as received; some servers leave the query out.
    target = req.env.get("RAW_URI") or req.path
    if query and "?" not in target:
        target += "?" + query
    return target

