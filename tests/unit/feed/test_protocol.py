"""The feed's WebSocket wire: channel names, client ops, golden server messages and frames."""

from __future__ import annotations

import orjson
import pytest

from feed import protocol
from feed.protocol import ErrorCode, FeedError, decode_op, parse_channel


@pytest.mark.parametrize(
    ("name", "kind", "pair", "depth", "interval"),
    [
        ("orderbook.BTC-USDT", "orderbook", "BTC-USDT", None, None),
        ("orderbook.BTC-USDT.10", "orderbook", "BTC-USDT", 10, None),
        ("orderbook.BTC-USDT.1000", "orderbook", "BTC-USDT", 1000, None),
        ("trades.ETH-USDT", "trades", "ETH-USDT", None, None),
        ("ticker.ETH-USDT", "ticker", "ETH-USDT", None, None),
        ("candles.ETH-USDT.4h", "candles", "ETH-USDT", None, "4h"),
        ("orders", "orders", None, None, None),
        ("fills", "fills", None, None, None),
        ("balances", "balances", None, None, None),
    ],
)
def test_channel_names_parse(name, kind, pair, depth, interval) -> None:
    channel = parse_channel(name)

    assert (channel.name, channel.kind, channel.pair, channel.depth, channel.interval) == (
        name, kind, pair, depth, interval)
    assert channel.private == (pair is None)


@pytest.mark.parametrize(
    "name",
    ["", "orderbook", "orderbook.", "orderbook.btc-usdt", "orderbook.BTC-USDT.7", "orderbook.BTC-USDT.010",
     "orderbook.BTC-USDT.-5", "orderbook.BTC-USDT.10.x", "trades.BTC-USDT.1", "candles.BTC-USDT",
     "candles.BTC-USDT.2m", "ticker", "depth.BTC-USDT", "x" * 65, 5, None, ["orders"], "orders.1"],
)
def test_bad_channel_names_are_unknown_channels(name) -> None:
    with pytest.raises(FeedError) as raised:
        parse_channel(name)

    assert raised.value.code is ErrorCode.UNKNOWN_CHANNEL


def test_ops_decode() -> None:
    assert decode_op('{"op": "ping"}') == ("ping", {})
    assert decode_op(b'{"op": "subscribe", "channels": ["trades.A-B"]}') == ("subscribe", {"channels": ["trades.A-B"]})
    op, fields = decode_op('{"op": "authenticate", "api_key": "zmx_1", "timestamp": 1700000000000, "signature": "ab"}')
    assert (op, fields["timestamp"]) == ("authenticate", "1700000000000")  # signed as text
    _, fields = decode_op('{"op": "authenticate", "api_key": "k", "timestamp": "1700000000000", "signature": "ab"}')
    assert fields["timestamp"] == "1700000000000"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_JSON),
        ('"ping"', ErrorCode.INVALID_JSON),
        ("{}", ErrorCode.UNKNOWN_COMMAND),
        ('{"op": "PING"}', ErrorCode.UNKNOWN_COMMAND),
        ('{"op": 1}', ErrorCode.UNKNOWN_COMMAND),
        ('{"op": "ping", "id": 1}', ErrorCode.INVALID_FIELD),
        ('{"op": "subscribe"}', ErrorCode.INVALID_FIELD),
        ('{"op": "subscribe", "channels": "trades.A-B"}', ErrorCode.INVALID_FIELD),
        ('{"op": "subscribe", "channels": []}', ErrorCode.INVALID_FIELD),
        ('{"op": "subscribe", "channels": [1]}', ErrorCode.INVALID_FIELD),
        ('{"op": "unsubscribe", "channels": ["x"], "extra": 1}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "k", "timestamp": 1}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "k", "timestamp": -1, "signature": "s"}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "k", "timestamp": 1.5, "signature": "s"}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "k", "timestamp": "12a", "signature": "s"}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "", "timestamp": 1, "signature": "s"}', ErrorCode.INVALID_FIELD),
        ('{"op": "authenticate", "api_key": "k", "timestamp": 1, "signature": 5}', ErrorCode.INVALID_FIELD),
    ],
)
def test_malformed_ops_are_refused_with_a_code(frame, code) -> None:
    with pytest.raises(FeedError) as raised:
        decode_op(frame)

    assert raised.value.code is code
    assert raised.value.message


def test_too_many_channels_in_one_request() -> None:
    channels = [f"trades.A-B{index}" for index in range(protocol.MAX_CHANNELS_PER_REQUEST + 1)]
    with pytest.raises(FeedError) as raised:
        decode_op(orjson.dumps({"op": "subscribe", "channels": channels}))
    assert raised.value.code is ErrorCode.INVALID_FIELD


def test_golden_server_messages() -> None:
    assert protocol.subscribed(["trades.A-B"]) == b'{"op":"subscribed","channels":["trades.A-B"]}'
    assert protocol.authenticated(7) == b'{"op":"authenticated","trader_id":7}'
    assert protocol.PONG == b'{"op":"pong"}'
    assert protocol.error(ErrorCode.SLOW_CONSUMER, "read faster") == (
        b'{"op":"error","code":"SLOW_CONSUMER","message":"read faster"}')
    assert protocol.data("trades.A-B", "update", 5, [], 17) == (
        b'{"channel":"trades.A-B","type":"update","seq":5,"data":[],"ts":17}')
    assert protocol.data("orderbook.A-B", "diff", 9, {"bids": [], "asks": []}, 17, first_seq=6) == (
        b'{"channel":"orderbook.A-B","type":"diff","first_seq":6,"seq":9,"data":{"bids":[],"asks":[]},"ts":17}')


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frames_are_unmasked_rfc6455_frames(size) -> None:
    payload = b"x" * size
    frame = protocol.text_frame(payload)

    assert frame[0] == 0x81  # FIN + text
    assert frame[1] & 0x80 == 0  # not masked
    if size < 126:
        header = 2
        assert frame[1] == size
    elif size < 65536:
        header = 4
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        header = 10
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size
    assert frame[header:] == payload
