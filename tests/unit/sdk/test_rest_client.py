"""RestClient against a scripted HTTP server: signing, typed errors, and which failures are retried."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from common.errors import ConnectionFailed, OrderRejected, OutcomeUnknown, RateLimited
from common.sdk.rest import RestClient
from tests.integration.harness import free_ports

SECRET = "s3cret"
DROP = "drop"  # close the connection without answering


class Script:
    """The answers the server gives, in order, and the requests it saw."""

    def __init__(self) -> None:
        self.answers: deque = deque()
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def answer(self, status: int, data=None, error: tuple[str, str] | None = None, headers=None) -> None:
        if error is not None:
            body = {"success": False, "error": {"code": error[0], "message": error[1]}, "timestamp": 0}
        else:
            body = {"success": True, "data": data, "timestamp": 0}
        self.answers.append((status, orjson.dumps(body), headers or {}))

    def drop(self) -> None:
        self.answers.append(DROP)


def handler_for(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            script.seen.append((self.command, self.path, dict(self.headers), body))
            answer = script.answers.popleft()
            if answer == DROP:
                self.close_connection = True
                return
            status, payload, headers = answer
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[Script, RestClient]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client = RestClient(f"http://127.0.0.1:{httpd.server_address[1]}", "zmx_key", SECRET, backoff=0.001,
                        timeout=5.0)
    yield script, client
    client.close()
    httpd.shutdown()
    httpd.server_close()


def signature_ok(method: str, target: str, headers: dict[str, str], body: bytes) -> bool:
    message = headers["X-Timestamp"].encode() + method.encode() + target.encode() + body
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    return headers["X-API-Key"] == "zmx_key" and hmac.compare_digest(expected, headers["X-Signature"])


ORDER = {"order_id": 7, "client_order_id": "c-1", "status": "NEW"}


def test_requests_are_signed_and_routed_like_the_rest_api(server) -> None:
    script, client = server
    script.answer(201, ORDER)
    script.answer(200, {**ORDER, "price": "101.00"})
    script.answer(200, {"items": [ORDER], "next_cursor": "next", "has_more": True})
    script.answer(200, {"items": [], "next_cursor": None, "has_more": False})
    script.answer(200, {"items": [{"asset": "BTC", "available": "1", "locked": "0", "total": "1"}],
                        "next_cursor": None, "has_more": False})
    assert client.place("BTC-USDT", "buy", price="100.00", quantity="1.000", client_order_id="c-1") == ORDER
    assert client.amend(client_order_id="c_1-x", price="101.00")["price"] == "101.00"
    assert client.open_orders("BTC-USDT") == [ORDER]
    assert client.balances()[0]["asset"] == "BTC"
    assert [(method, path) for method, path, _, _ in script.seen] == [
        ("POST", "/api/v1/account/orders"),
        ("PATCH", "/api/v1/account/orders/by-client-id/c_1-x"),
        ("GET", "/api/v1/account/orders?status=open&pair=BTC-USDT&limit=1000"),
        ("GET", "/api/v1/account/orders?status=open&pair=BTC-USDT&limit=1000&cursor=next"),
        ("GET", "/api/v1/account/balances"),
    ]
    assert orjson.loads(script.seen[0][3]) == {"pair": "BTC-USDT", "side": "buy", "type": "limit",
                                               "quantity": "1.000", "price": "100.00", "client_order_id": "c-1"}
    assert all(signature_ok(method, path, headers, body) for method, path, headers, body in script.seen)


def test_the_same_request_twice_in_one_millisecond_gets_two_signatures(server, monkeypatch) -> None:
    script, client = server
    monkeypatch.setattr("common.sdk.rest.time.time", lambda: 1_800_000_000.0)
    for _ in range(3):
        script.answer(200, ORDER)
        client.get_order(7)
    timestamps = [headers["X-Timestamp"] for _, _, headers, _ in script.seen]
    assert timestamps == ["1800000000000", "1800000000001", "1800000000002"]


def test_an_order_is_never_resent_when_it_may_have_run(server) -> None:
    script, client = server
    script.answer(504, error=("MATCHER_TIMEOUT", "no answer"))
    with pytest.raises(OutcomeUnknown) as caught:
        client.place("BTC-USDT", "buy", price="1.00", quantity="1.000")
    assert (caught.value.code, caught.value.number, caught.value.status) == ("MATCHER_TIMEOUT", 5004, 504)
    script.drop()
    with pytest.raises(OutcomeUnknown) as caught:
        client.amend(7, quantity="2")
    assert caught.value.code == "DISCONNECTED"
    assert [method for method, *_ in script.seen] == ["POST", "PATCH"]


def test_requests_that_certainly_did_not_run_are_retried_whatever_their_method(server) -> None:
    script, client = server
    script.answer(503, error=("MATCHER_UNAVAILABLE", "not connected"))
    script.answer(429, error=("RATE_LIMITED", "slow down"), headers={"Retry-After": "0"})
    script.answer(201, ORDER)
    assert client.place("BTC-USDT", "buy", price="1.00", quantity="1.000") == ORDER
    assert len(script.seen) == 3
    script.answer(429, error=("RATE_LIMITED", "slow down"), headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as caught:  # too long to wait inside a call
        client.cancel_all()
    assert caught.value.retry_after == 60.0
    script.answer(422, error=("INSUFFICIENT_BALANCE", "no"))
    with pytest.raises(OrderRejected):
        client.place("BTC-USDT", "buy", price="1.00", quantity="1.000")
    assert len(script.seen) == 5


def test_reads_and_cancels_by_id_are_retried_and_a_repeated_cancel_returns_the_canceled_order(server) -> None:
    script, client = server
    script.answer(504, error=("MATCHER_TIMEOUT", "no answer"))
    script.answer(200, ORDER)
    assert client.get_order(7) == ORDER
    del script.seen[:]
    script.drop()  # the first DELETE may have canceled it...
    script.answer(422, error=("ORDER_NOT_OPEN", "already canceled"))  # ...and it had
    script.answer(200, {**ORDER, "status": "CANCELED"})
    assert client.cancel(7)["status"] == "CANCELED"
    assert [(method, path) for method, path, *_ in script.seen] == [
        ("DELETE", "/api/v1/account/orders/7"), ("DELETE", "/api/v1/account/orders/7"),
        ("GET", "/api/v1/account/orders/7")]
    del script.seen[:]
    script.answer(422, error=("ORDER_NOT_OPEN", "filled"))
    script.answer(200, {**ORDER, "status": "FILLED"})
    with pytest.raises(OrderRejected) as caught:
        client.cancel(7)
    assert caught.value.code == "ORDER_NOT_OPEN"


def test_no_server_is_a_connection_failure_with_nothing_sent() -> None:
    port = free_ports(1)[0]
    client = RestClient(f"http://127.0.0.1:{port}", "zmx_key", SECRET, retries=1, backoff=0.001)
    with pytest.raises(ConnectionFailed) as caught:
        client.place("BTC-USDT", "buy", price="1.00", quantity="1.000")
    assert caught.value.code == "CONNECTION_FAILED" and caught.value.number is None
    with pytest.raises(ValueError):
        RestClient("ftp://example.com")
