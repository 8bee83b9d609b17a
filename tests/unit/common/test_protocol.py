"""The wire protocol: golden frames, round trips and every kind of malformed request."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import protocol
from common.protocol import ProtocolError, decode_command
from common.types import OrderType, RejectCode, Side, StpMode, TimeInForce
from matcher.engine import Engine

PLACE = {
    "id": 17,
    "op": "place",
    "account_id": 42,
    "pair": "BTC-USDT",
    "side": "buy",
    "type": "limit",
    "price": "42150.50",
    "quantity": "0.010",
    "time_in_force": "IOC",
    "post_only": False,
    "stp": "expire_both",
    "client_order_id": "bot-1_a",
}


def test_place_decodes_to_typed_fields():
    command = decode_command(orjson.dumps(PLACE))
    assert command.request_id == 17
    assert command.op == "place"
    assert command.fields["side"] is Side.BUY
    assert command.fields["type"] is OrderType.LIMIT
    assert command.fields["time_in_force"] is TimeInForce.IOC
    assert command.fields["stp"] is StpMode.EXPIRE_BOTH
    assert command.fields["price"] == "42150.50"


def test_command_json_round_trips_exactly():
    command = decode_command(orjson.dumps(PLACE))
    wire = command.to_json()
    assert wire == {key: value for key, value in PLACE.items() if key != "id"}
    again = protocol.command_from_json(wire)
    assert again.op == command.op and again.fields == command.fields


def test_encode_request_golden_frame():
    frame = protocol.encode_request(5, "cancel", account_id=3, order_id=1024, client_order_id=None)
    assert frame == b'{"id":5,"op":"cancel","account_id":3,"order_id":1024}'
    assert decode_command(frame).fields == {"account_id": 3, "order_id": 1024}


def test_reply_golden_frames():
    assert protocol.encode_ok("abc", {"x": 1}) == b'{"id":"abc","ok":true,"data":{"x":1}}'
    assert protocol.encode_error(9, RejectCode.INSUFFICIENT_BALANCE, "need more", {"asset": "USDT"}) == (
        b'{"id":9,"ok":false,"error":{"code":"INSUFFICIENT_BALANCE","number":4001,'
        b'"message":"need more","details":{"asset":"USDT"}}}'
    )
    assert protocol.encode_error(None, RejectCode.INVALID_JSON, "bad") == (
        b'{"id":null,"ok":false,"error":{"code":"INVALID_JSON","number":1001,"message":"bad"}}'
    )


def test_topics_do_not_prefix_each_other():
    assert protocol.public_topic("BTC-USDT") == b"md.BTC-USDT"
    assert protocol.private_topic(1) == b"acct.1."
    assert not protocol.private_topic(12).startswith(protocol.private_topic(1))


def _traded_engine():
    engine = Engine()
    engine.create_market("BTC-USDT", "0.01", "0.001", "0", "0", -1, 5, 1_000_000)
    usdt, btc = engine.assets["USDT"], engine.assets["BTC"]
    engine.deposit(1, "USDT", usdt.parse("1000"), 1_000_000)
    engine.deposit(2, "BTC", btc.parse("1"), 1_000_000)
    market = engine.markets["BTC-USDT"]
    engine.place(2, "BTC-USDT", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, market.tick.parse("100.00"),
                 market.lot.parse("0.5"), None, False, StpMode.EXPIRE_MAKER, None, 2_000_000)
    taker = engine.place(1, "BTC-USDT", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, market.tick.parse("101.00"),
                         market.lot.parse("0.8"), None, False, StpMode.EXPIRE_MAKER, "t1", 3_000_000)
    return engine, market, taker


def test_public_update_golden_frame():
    engine, market, _ = _traded_engine()
    (update,) = engine.public
    assert protocol.public_update_message(update, market, 7) == (
        b'{"type":"update","pair":"BTC-USDT","seq":3,"ts":3,"journal_seq":7,'
        b'"bids":[["101.00","0.300"]],"asks":[["100.00","0.000"]],'
        b'"trades":[{"trade_id":1024,"pair":"BTC-USDT","price":"100.00","quantity":"0.500",'
        b'"taker_side":"buy","ts":3}]}'
    )


def test_heartbeat_golden_frame():
    assert protocol.heartbeat_message("BTC-USDT", 12, 5_000_000) == (
        b'{"type":"heartbeat","pair":"BTC-USDT","seq":12,"ts":5}'
    )


def test_private_update_shows_order_fill_and_balances():
    engine, market, taker = _traded_engine()
    update = next(update for update in engine.private if update.account_id == 1)
    message = orjson.loads(protocol.private_update_message(update, engine.markets, engine.assets, 7))
    assert message["type"] == "account"
    assert message["seq"] == 2
    (order,) = message["orders"]
    assert order["order_id"] == taker.order_id
    assert order["status"] == "PARTIALLY_FILLED"
    assert order["filled_quantity"] == "0.500"
    assert order["remaining_quantity"] == "0.300"
    assert order["average_price"] == "100.0000000000"
    assert message["fills"] == [
        {"trade_id": 1024, "order_id": taker.order_id, "pair": "BTC-USDT", "side": "buy", "price": "100.00",
         "quantity": "0.500", "fee": "0.00025000", "fee_asset": "BTC", "liquidity": "taker"}
    ]
    balances = {balance["asset"]: balance for balance in message["balances"]}
    # 1000 - 50 spent - (30.30 + 5 bps headroom 0.01515) still locked for the resting 0.3 @ 101
    assert balances["USDT"] == {"asset": "USDT", "available": "919.68485000", "locked": "30.31515000",
                                "total": "950.00000000"}
    assert balances["BTC"]["available"] == "0.49975000"


def test_maker_rebate_is_a_negative_fee():
    engine, market, _ = _traded_engine()
    update = next(update for update in engine.private if update.account_id == 2)
    message = orjson.loads(protocol.private_update_message(update, engine.markets, engine.assets, 7))
    assert message["fills"][0]["fee"] == "-0.00500000"
    assert message["fills"][0]["liquidity"] == "maker"
    assert message["orders"][0]["status"] == "FILLED"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json", RejectCode.INVALID_JSON),
        (b"", RejectCode.INVALID_JSON),
        (b"[1,2]", RejectCode.INVALID_JSON),
        (b'"place"', RejectCode.INVALID_JSON),
        (b'{"op":"explode"}', RejectCode.UNKNOWN_COMMAND),
        (b'{"op":7}', RejectCode.UNKNOWN_COMMAND),
        (b'{"id":1}', RejectCode.UNKNOWN_COMMAND),
        (b'{"op":"balances","account_id":1,"extra":1}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances","account_id":"1"}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances","account_id":true}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances","account_id":0}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances","account_id":1.0}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances","account_id":99999999999999999999999}', RejectCode.INVALID_FIELD),
        (b'{"op":"balances"}', RejectCode.INVALID_FIELD),
        (b'{"op":"place","account_id":1,"pair":"BTC-USDT","side":"buy","type":"limit","price":42150.5,'
         b'"quantity":"1"}', RejectCode.INVALID_FIELD),
        (b'{"op":"place","account_id":1,"pair":"BTC-USDT","side":"BUY","type":"limit"}', RejectCode.INVALID_FIELD),
        (b'{"op":"place","account_id":1,"pair":"BTC-USDT","side":"buy","type":"limit","post_only":1}',
         RejectCode.INVALID_FIELD),
        (b'{"op":"place","account_id":1,"pair":"BTC-USDT","side":"buy","type":"limit","client_order_id":"a b"}',
         RejectCode.INVALID_FIELD),
        (b'{"op":"ping","id":{"nested":[1]}}', RejectCode.INVALID_FIELD),
        (b'{"op":"ping","id":"' + b"x" * 65 + b'"}', RejectCode.INVALID_FIELD),
        (b"[" * 5000 + b"]" * 5000, RejectCode.INVALID_JSON),
    ],
)
def test_malformed_requests_are_refused_with_a_code(frame, code):
    with pytest.raises(ProtocolError) as raised:
        decode_command(frame)
    assert raised.value.code == code


def test_error_keeps_the_request_id_when_it_was_readable():
    with pytest.raises(ProtocolError) as raised:
        decode_command(b'{"id":"r-1","op":"balances","account_id":"x"}')
    assert raised.value.request_id == "r-1"
    assert raised.value.details == {"field": "account_id"}


def test_bot_socket_refuses_admin_ops_and_allows_own_trading():
    with pytest.raises(ProtocolError) as raised:
        decode_command(b'{"op":"deposit","account_id":1,"asset":"BTC","amount":"1"}', bot=True)
    assert raised.value.code == RejectCode.FORBIDDEN
    command = decode_command(b'{"op":"cancel","order_id":1024}', bot=True)
    assert command.fields == {"order_id": 1024}


def test_null_optional_fields_are_absent():
    command = decode_command(b'{"op":"open_orders","account_id":4,"pair":null}')
    assert command.fields == {"account_id": 4}


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_errors(frame):
    try:
        decode_command(frame)
    except ProtocolError:
        pass


@given(st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
                       max_size=8))
def test_arbitrary_objects_are_decoded_or_refused(message):
    message["op"] = "place"
    try:
        command = decode_command(orjson.dumps(message))
    except ProtocolError as error:
        assert error.code in (RejectCode.INVALID_FIELD, RejectCode.UNKNOWN_COMMAND)
    else:
        assert command.op == "place"
