"""The shared order methods (fields, local validation, reconcile), the error hierarchy, bot keys and connection state."""

from __future__ import annotations

import asyncio
import stat
from decimal import Decimal

import orjson
import pytest
import zmq

from common.errors import (
    AuthenticationError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
    ZmxError,
    error_from_wire,
)
from common.sdk.bot import AccountSeq, BotKey, BotKeyError, ConnectionState
from common.sdk.orders import AsyncOrderMethods, OrderMethods


class Recorder(OrderMethods):
    """Answers each op from a script and records what it was asked."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict]] = []

    def _execute(self, op, fields):
        self.calls.append((op, fields))
        answer = self.answers[op]
        if callable(answer):
            return answer(fields)
        return answer


class AsyncRecorder(AsyncOrderMethods):
    def __init__(self, sync: Recorder) -> None:
        self.sync = sync

    async def _execute(self, op, fields):
        return self.sync._execute(op, fields)


def test_order_methods_send_the_wire_fields_and_refuse_bad_arguments_before_sending() -> None:
    client = Recorder({"place": {"order_id": 1}, "amend": {}, "cancel": {}, "get_order": {}, "cancel_all": {},
                       "open_orders": [], "balances": []})
    client.place("BTC-USDT", "buy", price=Decimal("42150.50"), quantity=Decimal("1E-3"), post_only=True,
                 client_order_id="a-1")
    client.place("BTC-USDT", "sell", "market", quantity=2)
    client.amend(7, quantity="0.5")
    client.cancel(client_order_id="a-1")
    client.get_order(9)
    client.cancel_all()
    client.open_orders("BTC-USDT")
    assert client.calls == [
        ("place", {"pair": "BTC-USDT", "side": "buy", "type": "limit", "quantity": "0.001", "price": "42150.50",
                   "post_only": True, "client_order_id": "a-1"}),
        ("place", {"pair": "BTC-USDT", "side": "sell", "type": "market", "quantity": "2"}),
        ("amend", {"order_id": 7, "quantity": "0.5"}),
        ("cancel", {"client_order_id": "a-1"}),
        ("get_order", {"order_id": 9}),
        ("cancel_all", {}),
        ("open_orders", {"pair": "BTC-USDT"}),
    ]
    refused = [
        lambda: client.place("BTC-USDT", "buy", price=100.5, quantity="1"),  # floats are not exact
        lambda: client.place("BTC-USDT", "buy", price=Decimal("NaN"), quantity="1"),
        lambda: client.place("BTC-USDT", "buy", price="1", quantity="1", client_order_id="has space"),
        lambda: client.cancel(),
        lambda: client.cancel(1, client_order_id="x"),
        lambda: client.cancel(-4),
        lambda: client.amend(1),
    ]
    for call in refused:
        with pytest.raises(InvalidRequest) as caught:
            call()
        assert caught.value.code == "INVALID_FIELD" and caught.value.number == 1002 and caught.value.details["field"]
    assert len(client.calls) == 7


def test_reconcile_sorts_orders_into_open_closed_and_others_for_both_kinds_of_client() -> None:
    def get_order(fields):
        if fields["order_id"] == 12:
            return {"order_id": 12, "client_order_id": "b", "status": "FILLED"}
        raise NotFound("ORDER_NOT_FOUND", "no such order")

    open_orders = [{"order_id": 11, "client_order_id": "a", "status": "NEW"},
                   {"order_id": 20, "client_order_id": "old-run-1", "status": "NEW"},
                   {"order_id": 21, "client_order_id": None, "status": "NEW"}]
    balances = [{"asset": "BTC", "available": "1", "locked": "0", "total": "1"}]
    client = Recorder({"open_orders": open_orders, "get_order": get_order, "balances": balances})
    known = {"a": 11, "b": 12, "c": 13, "d": None}

    result = client.reconcile(known, "BTC-USDT")
    assert result.open == {"a": open_orders[0]}
    assert result.closed == {"b": {"order_id": 12, "client_order_id": "b", "status": "FILLED"}, "c": None, "d": None}
    assert result.others == open_orders[1:]
    assert result.balances == balances
    assert [call[0] for call in client.calls] == ["open_orders", "get_order", "get_order", "balances"]

    assert asyncio.run(AsyncRecorder(client).reconcile(known, "BTC-USDT")) == result


def test_errors_carry_code_number_status_and_their_kind() -> None:
    cases = {
        "INVALID_PRICE": (InvalidRequest, 1003, 400),
        "BODY_TOO_LARGE": (InvalidRequest, 5001, 413),
        "INVALID_SIGNATURE": (AuthenticationError, 2003, 401),
        "FORBIDDEN": (Forbidden, 2005, 403),
        "ORDER_NOT_FOUND": (NotFound, 3002, 404),
        "DUPLICATE_CLIENT_ORDER_ID": (Conflict, 3003, 409),
        "INSUFFICIENT_BALANCE": (OrderRejected, 4001, 422),
        "RATE_LIMITED": (RateLimited, 5002, 429),
        "MATCHER_UNAVAILABLE": (Unavailable, 5003, 503),
        "MATCHER_TIMEOUT": (OutcomeUnknown, 5004, 504),
        "INTERNAL_ERROR": (OutcomeUnknown, 5005, 500),
        "SOMETHING_NEW": (ZmxError, None, None),
    }
    for code, (kind, number, status) in cases.items():
        error = error_from_wire({"code": code, "message": "why", "details": {"field": "price"}})
        assert type(error) is kind and (error.code, error.number, error.status) == (code, number, status), code
        assert error.details == {"field": "price"} and str(error) == f"{code}: why"
    limited = error_from_wire({"code": "RATE_LIMITED", "message": "slow down", "details": {"retry_after": 3}})
    assert limited.retry_after == 3.0
    assert error_from_wire("garbage").code == "INVALID_REPLY"
    assert issubclass(ConnectionFailed, Unavailable)


def test_bot_key_files_round_trip_privately_and_bad_ones_are_explained(tmp_path) -> None:
    key = BotKey.generate(42)
    path = tmp_path / "bot.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert BotKey.load(path) == key

    other = BotKey.generate(42)
    bad = {
        "missing.key": None,
        "text.key": b"not json",
        "fields.key": orjson.dumps({"account_id": 42, "public_key": key.public_key}),
        "account.key": orjson.dumps({"account_id": "42", "public_key": key.public_key, "secret_key": key.secret_key}),
        "short.key": orjson.dumps({"account_id": 42, "public_key": "abc", "secret_key": key.secret_key}),
        "mismatch.key": orjson.dumps({"account_id": 42, "public_key": other.public_key,
                                      "secret_key": key.secret_key}),
    }
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(BotKeyError) as caught:
            BotKey.load(tmp_path / name)
        assert name in str(caught.value)


def test_connection_state_turns_monitor_events_into_client_events() -> None:
    state = ConnectionState()
    assert state.on_event(zmq.EVENT_CONNECTED, 0) is None
    assert state.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0) == {"type": "connected", "reconnect": False}
    assert state.on_event(zmq.EVENT_DISCONNECTED, 0) == {"type": "disconnected"}
    assert state.on_event(zmq.EVENT_DISCONNECTED, 0) is None  # once per connection
    assert state.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0) == {"type": "connected", "reconnect": True}
    state.reset()
    assert state.on_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400) == {"type": "refused", "status": 400}
    assert not state.connected and state.refused_error().code == "INVALID_API_KEY"

    seq = AccountSeq()
    assert [seq.check({"seq": value}) for value in (4, 5, 8)] == [
        None, None, {"type": "events_lost", "first_seq": 6, "last_seq": 7}]
