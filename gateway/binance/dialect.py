"""What every /api/v3 request goes through: Binance's parameters, signatures, weights and errors.

Each responder declares its `Endpoint` with `@endpoint(...)`: the parameters it reads,
whether it is signed (TRADE / USER_DATA) and its rate-limit weight. The native guard
(gateway/middleware.py) ignores these responders; `Guard` does for them what it does for
/api/v1, the Binance way:

1. parse the query string and the form body into `req.context.params` (-1100, -1101);
2. signed endpoints: `X-MBX-APIKEY` (-2014, -2015), then `timestamp` and `recvWindow`
   exactly as Binance checks them (serverTime - timestamp <= recvWindow, and timestamp <
   serverTime + 1000; -1021), then `signature` = hex HMAC-SHA256 keyed with the API secret
   of the query string concatenated with the body, without the signature parameter (-1022).
   The API keys and secrets are the native ones (gateway/keys.py); the receive window is
   at most the gateway's `receive_window_ms`. Signatures of POST and DELETE requests are
   accepted once (the native replay guard): nothing that changes state can be replayed;
3. refuse parameters the endpoint does not read (-1104);
4. charge the weight to the shared rate limiter: the API key's budget for signed
   endpoints, the client address's for the others (the budgets /api/v1 charges), and
   report the window's total in `X-MBX-USED-WEIGHT-<window>` (`-1M` for a 60 s window,
   `-10S` for the default 10 s) (-1003 and 429 over the budget).

Every error of a request under /api/v3, whoever raised it, leaves as Binance's
`{"code", "msg"}` (`process_response`, errors.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon
import orjson

from common.types import RejectCode
from gateway import keys
from gateway.binance.errors import BinanceError, mandatory, render
from gateway.binance.markets import Markets
from gateway.binance.params import Params, check_known, parse
from gateway.envelope import ApiError
from gateway.services import Services

PREFIX = "/api/v3"
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
AHEAD_TOLERANCE_MS = 1000
MAX_TIMESTAMP_DIGITS = 15
_RECV_WINDOW = re.compile(r"([0-9]{1,6})(?:\.([0-9]{1,3}))?")
_INTERVALS = ((86_400, "DAY", "D"), (3_600, "HOUR", "H"), (60, "MINUTE", "M"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a Binance responder reads, whether it is signed, and what it weighs."""

    params: frozenset[str]
    signed: bool
    weight: int | Callable[[Params], int]

    def weight_for(self, params: Params) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


def endpoint(*params: str, signed: bool = False, weight: int | Callable[[Params], int] = 1) -> Callable:
    """Declare a responder's `Endpoint`; signed endpoints also read `timestamp` and `recvWindow`."""
    names = frozenset(params) | ({"timestamp", "recvWindow"} if signed else frozenset())
    declared = Endpoint(names, signed, weight)

    def attach(responder: Callable) -> Callable:
        responder.binance = declared
        return responder

    return attach


def endpoint_of(resource: object, method: str) -> Endpoint | None:
    responder = getattr(resource, "on_" + method.lower(), None)
    return getattr(responder, "binance", None)


class Resource:
    """A Binance route's resource: the gateway's services and the markets by symbol."""

    def __init__(self, services: Services, markets: Markets) -> None:
        self.services = services
        self.markets = markets


def answer(resp: falcon.Response, data: Any) -> None:
    """Answer 200 with `data` as it is: Binance has no envelope."""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(data)


def rate_limit_interval(window_seconds: int) -> tuple[str, int, str]:
    """Return Binance's (interval, intervalNum, intervalLetter) for the limiter's window."""
    for seconds, interval, letter in _INTERVALS:
        if window_seconds % seconds == 0:
            return interval, window_seconds // seconds, letter
    return "SECOND", window_seconds, "S"


class Guard:
    """Falcon middleware for the /api/v3 responders, and the Binance errors of every /api/v3 request."""

    def __init__(self, services: Services) -> None:
        settings = services.config.gateway
        self.authenticator = services.authenticator
        self.rate_limiter = services.rate_limiter
        self.metrics = services.metrics
        self.receive_window_ms = settings.receive_window_ms
        interval, count, letter = rate_limit_interval(settings.rate_limit_window_seconds)
        self.weight_header = f"X-MBX-USED-WEIGHT-{count}{letter}"
        self.window_text = f"{count} {interval}"

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        declared = endpoint_of(resource, req.method) if resource is not None else None
        if declared is None:
            return
        context = req.context
        scope, identity = "ip", req.remote_addr or "unknown"
        try:
            parsed = parse(req.query_string, context.raw_body)
            if declared.signed:
                context.trader_id, identity = self._authenticate(req, parsed)
                scope = "key"
            check_known(parsed, declared.params)
        except ApiError:
            self._charge(resp, scope, identity, 1)  # a refused request still costs its sender
            raise
        self._charge(resp, scope, identity, declared.weight_for(parsed))
        context.params = parsed

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        error = getattr(resp.context, "error", None)
        if error is not None and (req.path == PREFIX or req.path.startswith(PREFIX + "/")):
            render(resp, error)

    def _authenticate(self, req: falcon.Request, params: Params) -> tuple[int, str]:
        """Return (trader id, API key) of a signed request; raise Binance's error otherwise."""
        authenticator = self.authenticator
        api_key = req.get_header("X-MBX-APIKEY")
        if not api_key or not keys.API_KEY.fullmatch(api_key):
            raise BinanceError(-2014, "API-key format invalid.", RejectCode.MISSING_AUTHENTICATION, 401)
        trader_id, secret = authenticator.lookup(api_key)
        if trader_id is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", RejectCode.INVALID_API_KEY,
                               401)
        if authenticator.allow_key_only and params.signature is None and "timestamp" not in params:
            return trader_id, api_key
        text = params.values.get("timestamp", "")
        if not (text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS):
            raise mandatory("timestamp")
        timestamp = int(text)
        window_us = min(self._recv_window_us(params), self.receive_window_ms * 1000)
        server_time = int(authenticator.clock() * 1000)
        if timestamp >= server_time + AHEAD_TOLERANCE_MS:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.",
                               RejectCode.TIMESTAMP_OUT_OF_WINDOW)
        if (server_time - timestamp) * 1000 > window_us:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.",
                               RejectCode.TIMESTAMP_OUT_OF_WINDOW)
        signature = params.signature
        if not signature:
            raise mandatory("signature")
        expected = hmac.new(secret, params.payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower() if signature.isascii() else ""):
            raise BinanceError(-1022, "Signature for this request is not valid.", RejectCode.INVALID_SIGNATURE)
        replay_guard = authenticator.replay_guard
        if req.method != "GET" and replay_guard is not None and not replay_guard.first_use(expected, timestamp):
            raise BinanceError(-1022, "Signature for this request is not valid: it was used already; sign each "
                                      "request with a fresh timestamp.", RejectCode.INVALID_SIGNATURE)
        return trader_id, api_key

    @staticmethod
    def _recv_window_us(params: Params) -> int:
        text = params.get("recvWindow")
        if text is None:
            return DEFAULT_RECV_WINDOW_MS * 1000
        match = _RECV_WINDOW.fullmatch(text)
        if match is None:
            raise mandatory("recvWindow")
        whole, fraction = match.groups()
        window_us = int(whole) * 1000 + int((fraction or "").ljust(3, "0"))
        if window_us > MAX_RECV_WINDOW_MS * 1000:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        return window_us

    def _charge(self, resp: falcon.Response, scope: str, identity: str, weight: int) -> None:
        decision = self.rate_limiter.charge(scope, identity, weight)
        headers = decision.headers()
        headers[self.weight_header] = str(decision.used)
        resp.set_headers(headers)
        if not decision.allowed:
            self.metrics.rate_limited.labels(scope).inc()
            raise BinanceError(
                -1003, f"Too much request weight used; current limit is {decision.limit} request weight per"
                       f" {self.window_text}. Please use WebSocket Streams for live updates to avoid polling the API.",
                RejectCode.RATE_LIMITED, 429, headers=headers)
