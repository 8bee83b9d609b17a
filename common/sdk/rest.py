"""A synchronous client of the REST API (docs/rest-api.md): signed requests, typed errors, safe retries.

One `RestClient` holds one keep-alive HTTP/1.1 connection (the standard library's
`http.client`), so use one per thread. Trader requests are signed as the gateway checks
them: hex HMAC-SHA256 keyed with the API secret of `timestamp + METHOD + path-with-query +
body`. The gateway accepts each signature once; two identical requests in the same
millisecond would share one, so the client moves the second one's timestamp on by a
millisecond.

Errors raise the `common.errors` class for their code (with `status`, the HTTP status).

Retries: what the gateway guarantees decides what may be sent again.
- Any request is retried when it certainly did not run: the connection could not be
  opened (nothing was sent), 429 `RATE_LIMITED` (after `Retry-After`, if it is short),
  503 `MATCHER_UNAVAILABLE` (the gateway never passed it on) or `STORE_UNAVAILABLE`
  (refused while authenticating).
- `GET`s, and cancels by order id (`DELETE /account/orders/{order_id}`), are also retried
  when the outcome is unknown: a dropped connection after sending, no answer in time, 500,
  504 `MATCHER_TIMEOUT`. Reading twice changes nothing, and cancelling twice cancels once:
  when the retry answers `ORDER_NOT_OPEN`, the client looks the order up and returns it if
  it is CANCELED (the first attempt did it).
- Everything else (placing, amending, cancel-all, cancels by client_order_id,
  withdrawals) is never resent after it may have run: `OutcomeUnknown` is raised, and the
  caller reconciles by client_order_id (`reconcile`).
A connection idle longer than `idle_seconds` (below gunicorn's 5 s keep-alive) is
replaced before a request, so a request is not written to a connection the server is
closing.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from common.errors import (
    ConnectionFailed,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
    ZmxError,
    error_from_wire,
)
from common.sdk.orders import OrderMethods

API = "/api/v1"
PAGE_LIMIT = 1000
MAX_RETRY_AFTER = 10.0


class RestClient(OrderMethods):
    """The REST API for one trader (or public data only, without a key)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 api_secret: str | None = None, *, timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.2, idle_seconds: float = 2.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url
        self.api_key = api_key
        self.api_secret = api_secret.encode() if api_secret is not None else None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.idle_seconds = idle_seconds
        self._prefix = parts.path.rstrip("/")
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host, self._port = parts.hostname, parts.port
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._signed_ms = 0
        self._signed_now: set[tuple[str, str, bytes]] = set()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None, *,
                signed: bool = True, retry_unknown: bool | None = None) -> Any:
        """Send one request (retried as the module docstring says) and return the envelope's `data`.

        `path` is below the API root (`/account/orders`); `query` values that are None are
        left out. `retry_unknown` says whether the request may be sent again when its outcome
        is unknown (default: for GET only).
        """
        target = self._prefix + API + path
        if query:
            target += "?" + urlencode({name: value for name, value in query.items() if value is not None})
        data = b"" if body is None else orjson.dumps(body)
        if retry_unknown is None:
            retry_unknown = method == "GET"
        attempt = 0
        while True:
            try:
                return self._send(method, target, data, signed)
            except ZmxError as error:
                attempt += 1
                delay = self._retry_delay(error, attempt, retry_unknown)
                if delay is None:
                    raise
                time.sleep(delay)

    def _retry_delay(self, error: ZmxError, attempt: int, retry_unknown: bool) -> float | None:
        """Return how long to wait before trying again, or None when this error must not be retried."""
        if attempt > self.retries:
            return None
        if isinstance(error, RateLimited):
            if error.retry_after is None or error.retry_after > MAX_RETRY_AFTER:
                return None
            return error.retry_after
        if isinstance(error, Unavailable) or (retry_unknown and isinstance(error, OutcomeUnknown)):
            return self.backoff * attempt
        return None

    def _send(self, method: str, target: str, data: bytes, signed: bool) -> Any:
        headers = {"Content-Type": "application/json"}
        if signed:
            headers.update(self._signature_headers(method, target, data))
        connection = self._connect()
        try:
            connection.request(method, target, body=data or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError:
            self.close()
            raise OutcomeUnknown("TIMEOUT", f"{method} {target}: no answer within {self.timeout} s; it may or may "
                                 "not have run") from None
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise OutcomeUnknown("DISCONNECTED", f"{method} {target}: the connection dropped "
                                 f"({error.__class__.__name__}: {error}); it may or may not have run") from None
        self._last_used = time.monotonic()
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            envelope = orjson.loads(payload)
        except orjson.JSONDecodeError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            # Not the gateway's answer (a proxy's?): after a 5xx nobody can say whether it ran.
            kind = OutcomeUnknown if response.status >= 500 else ZmxError
            raise kind("INVALID_REPLY", f"{method} {target}: HTTP {response.status} with no JSON envelope: "
                       f"{payload[:200]!r}", status=response.status)
        if envelope["success"]:
            return envelope["data"]
        retry_after = response.getheader("Retry-After")
        raise error_from_wire(envelope.get("error"), response.status,
                              float(retry_after) if retry_after and retry_after.isdigit() else None)

    def _connect(self) -> http.client.HTTPConnection:
        """Return a connected keep-alive connection; raise ConnectionFailed (nothing sent) if none can be made."""
        if self._connection is not None and time.monotonic() - self._last_used > self.idle_seconds:
            self.close()
        if self._connection is None:
            connection = self._connection_class(self._host, self._port, timeout=self.timeout)
            try:
                connection.connect()
            except OSError as error:
                connection.close()
                raise ConnectionFailed("CONNECTION_FAILED", f"cannot connect to {self.base_url}: {error}") from None
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
        return self._connection

    def _signature_headers(self, method: str, target: str, data: bytes) -> dict[str, str]:
        if self.api_key is None or self.api_secret is None:
            raise ValueError("this call needs an API key and secret (RestClient(url, api_key, api_secret))")
        timestamp = max(int(time.time() * 1000), self._signed_ms)
        request = (method, target, data)
        if timestamp != self._signed_ms or request in self._signed_now:
            if timestamp == self._signed_ms:
                timestamp += 1  # the same request again within a millisecond: it needs its own signature
            self._signed_ms = timestamp
            self._signed_now.clear()
        self._signed_now.add(request)
        message = b"%d%s%s%s" % (timestamp, method.encode(), target.encode(), data)
        signature = hmac.new(self.api_secret, message, hashlib.sha256).hexdigest()
        return {"X-API-Key": self.api_key, "X-Timestamp": str(timestamp), "X-Signature": signature}

    def _pages(self, path: str, query: dict[str, Any], signed: bool = True) -> Iterator[dict[str, Any]]:
        query = {**query, "limit": PAGE_LIMIT}
        while True:
            page = self.request("GET", path, query, signed=signed)
            yield from page["items"]
            if not page["has_more"]:
                return
            query["cursor"] = page["next_cursor"]

    # ------------------------------------------------------------ the order methods

    def _execute(self, op: str, fields: dict[str, Any]) -> Any:
        if op == "place":
            return self.request("POST", "/account/orders", body=fields)
        if op == "open_orders":
            return list(self._pages("/account/orders", {"status": "open", "pair": fields.get("pair")}))
        if op == "balances":
            return self.request("GET", "/account/balances")["items"]
        if op == "cancel_all":
            return self.request("POST", "/account/orders/cancel-all", body=fields)
        path = _order_path(fields)
        if op == "get_order":
            return self.request("GET", path)
        if op == "amend":
            body = {name: fields[name] for name in ("quantity", "price") if name in fields}
            return self.request("PATCH", path, body=body)
        if op == "cancel":
            return self._cancel(path, "order_id" in fields)
        raise ValueError(f"unknown op {op}")

    def _cancel(self, path: str, by_order_id: bool) -> dict[str, Any]:
        if not by_order_id:
            return self.request("DELETE", path)
        try:
            return self.request("DELETE", path, retry_unknown=True)
        except OrderRejected as error:
            if error.code != "ORDER_NOT_OPEN":
                raise
            order = self.request("GET", path)  # an earlier attempt that got no answer may have canceled it
            if order["status"] != "CANCELED":
                raise
            return order

    # ------------------------------------------------------------ the rest of the API

    def server_time(self) -> int:
        return self.request("GET", "/time", signed=False)["server_time"]

    def exchange_info(self) -> dict[str, Any]:
        return self.request("GET", "/exchange-info", signed=False)

    def markets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/markets", signed=False)["items"]

    def orderbook(self, pair: str, depth: int | None = None) -> dict[str, Any]:
        return self.request("GET", f"/markets/{quote(pair)}/orderbook", {"depth": depth}, signed=False)

    def trades(self, pair: str, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Return a page of the market's trades, newest first."""
        return self.request("GET", f"/markets/{quote(pair)}/trades", {"limit": limit, "cursor": cursor}, signed=False)

    def ticker(self, pair: str) -> dict[str, Any]:
        return self.request("GET", f"/markets/{quote(pair)}/ticker", signed=False)

    def candles(self, pair: str, interval: str = "1m", start: int | None = None, end: int | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        return self.request("GET", f"/markets/{quote(pair)}/candles",
                            {"interval": interval, "start": start, "end": end, "limit": limit}, signed=False)

    def account(self) -> dict[str, Any]:
        return self.request("GET", "/account")

    def orders(self, status: str = "open", pair: str | None = None, limit: int | None = None,
               cursor: str | None = None) -> dict[str, Any]:
        """Return a page of the account's orders (`status` open, closed or all)."""
        return self.request("GET", "/account/orders", {"status": status, "pair": pair, "limit": limit,
                                                       "cursor": cursor})

    def fills(self, pair: str | None = None, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Return a page of the account's fills, newest first."""
        return self.request("GET", "/account/trades", {"pair": pair, "limit": limit, "cursor": cursor})

    def withdraw(self, asset: str, amount: str, shard_id: int | None = None) -> dict[str, Any]:
        body = {"asset": asset, "amount": amount}
        if shard_id is not None:
            body["shard_id"] = shard_id
        return self.request("POST", "/account/withdrawals", body=body)


def _order_path(fields: dict[str, Any]) -> str:
    if "order_id" in fields:
        return f"/account/orders/{fields['order_id']}"
    return f"/account/orders/by-client-id/{fields['client_order_id']}"  # checked: URL-safe


