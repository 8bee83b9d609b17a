"""A Binance-style client over the unit-test gateway: signs the way Binance's docs tell API users to."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

from falcon import testing

from tests.unit.gateway.conftest import Gateway, Trader

API = "/api/v3/"
FORM = "application/x-www-form-urlencoded"


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class BinanceClient:
    """Signed and public /api/v3 requests for one trader (or none)."""

    def __init__(self, gateway: Gateway, trader: Trader | None = None) -> None:
        self.gateway = gateway
        self.trader = trader

    def public(self, path: str, query: str = "") -> testing.Result:
        return self.gateway.client.simulate_get(API + path, query_string=query or None)

    def raw(self, method: str, path: str, query: str = "", body: str = "",
            headers: dict[str, str] | None = None) -> testing.Result:
        result = self.gateway.client.simulate_request(method, API + path, query_string=query or None, body=body,
                                                      headers={"Content-Type": FORM, **(headers or {})})
        self.gateway.clock.advance(0.001)  # each request its own millisecond, as a real client's
        return result

    def signed(self, method: str, path: str, params: dict[str, Any] | None = None, *, in_body: bool | None = None,
               timestamp: int | None = None, recv_window: int | str | None = None) -> testing.Result:
        """Sign timestamp, recvWindow and `params`; send them in the query (GET, DELETE) or the body (POST)."""
        items = [(name, value) for name, value in (params or {}).items() if value is not None]
        items.append(("timestamp", self.now_ms() if timestamp is None else timestamp))
        if recv_window is not None:
            items.append(("recvWindow", recv_window))
        payload = urlencode(items)
        payload += "&signature=" + sign(self.trader.api_secret, payload)
        if in_body is None:
            in_body = method == "POST"
        return self.raw(method, path, "" if in_body else payload, payload if in_body else "", self.key_header())

    def key_header(self) -> dict[str, str]:
        return {"X-MBX-APIKEY": self.trader.api_key}

    def now_ms(self) -> int:
        return int(self.gateway.clock.time() * 1000)

    def order(self, in_body: bool | None = None, **params: Any) -> testing.Result:
        """Place an order: a GTC limit buy of 1 BTCUSDT at 100 unless `params` say otherwise."""
        fields = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
                  "price": "100"}
        fields.update(params)
        return self.signed("POST", "order", fields, in_body=in_body)


def error_of(result: testing.Result) -> tuple[int, int, str]:
    """Return (HTTP status, Binance code, message) of an error answer, checking its shape."""
    body = result.json
    assert set(body) == {"code", "msg"}, body
    return result.status_code, body["code"], body["msg"]
