"""Malformed frames on the command ROUTER: each gets an error reply and the matcher keeps serving."""

from __future__ import annotations

import orjson
import pytest

from common.matcher_client import MatcherClient, MatcherTimeout
from tests.integration.harness import account_state, book_state

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
ORDER = {"account_id": 1, "pair": PAIR, "side": "buy", "type": "limit", "price": "100.00", "quantity": "1.000"}


def frame(**message) -> bytes:
    return orjson.dumps(message)


def place_with(**changes) -> bytes:
    message = {"id": 41, "op": "place", **ORDER}
    for name, value in changes.items():
        if value is ...:
            message.pop(name)
        else:
            message[name] = value
    return orjson.dumps(message)


# (name, frames, expected code, expected id, expected details.field or None)
HOSTILE = [
    ("not JSON", [b"hello, matcher"], "INVALID_JSON", None, None),
    ("invalid UTF-8", [b'{"id": 1, "op": "\xff\xfe"}'], "INVALID_JSON", None, None),
    ("truncated JSON", [b'{"id": 1, "op": "pi'], "INVALID_JSON", None, None),
    ("a JSON array", [b'[{"id": 1, "op": "ping"}]'], "INVALID_JSON", None, None),
    ("a JSON string", [b'"ping"'], "INVALID_JSON", None, None),
    ("JSON null", [b"null"], "INVALID_JSON", None, None),
    ("an empty frame", [b""], "INVALID_JSON", None, None),
    ("NaN", [b'{"id": 1, "op": "ping", "x": NaN}'], "INVALID_JSON", None, None),
    ("unknown op", [frame(id=2, op="explode")], "UNKNOWN_COMMAND", 2, None),
    ("no op", [frame(id=3)], "UNKNOWN_COMMAND", 3, None),
    ("op not a string", [frame(id=4, op=["place"])], "UNKNOWN_COMMAND", 4, None),
    ("unknown field", [frame(id=5, op="ping", admin=True)], "INVALID_FIELD", 5, "admin"),
    ("id a list", [frame(id=[1], op="ping")], "INVALID_FIELD", None, "id"),
    ("id too long", [frame(id="x" * 65, op="ping")], "INVALID_FIELD", None, "id"),
    ("id a float", [b'{"id": 1.5, "op": "ping"}'], "INVALID_FIELD", None, "id"),
    ("id beyond 64 bits", [b'{"id": 18446744073709551616, "op": "ping"}'], "INVALID_FIELD", None, "id"),
    ("price as a number", [place_with(price=100.0)], "INVALID_FIELD", 41, "price"),
    ("price as an integer", [place_with(price=100)], "INVALID_FIELD", 41, "price"),
    ("side as null", [place_with(side=None)], "INVALID_FIELD", 41, "side"),
    ("account_id as a string", [place_with(account_id="1")], "INVALID_FIELD", 41, "account_id"),
    ("account_id as true", [place_with(account_id=True)], "INVALID_FIELD", 41, "account_id"),
    ("account_id zero", [place_with(account_id=0)], "INVALID_FIELD", 41, "account_id"),
    ("account_id negative", [place_with(account_id=-1)], "INVALID_FIELD", 41, "account_id"),
    ("account_id a float", [place_with(account_id=1.0)], "INVALID_FIELD", 41, "account_id"),
    ("post_only as 1", [place_with(post_only=1)], "INVALID_FIELD", 41, "post_only"),
    ("side as an integer", [place_with(side=0)], "INVALID_FIELD", 41, "side"),
    ("pair as an object", [place_with(pair={"base": "BTC"})], "INVALID_FIELD", 41, "pair"),
    ("missing side", [place_with(side=...)], "INVALID_FIELD", 41, "side"),
    ("missing account_id", [place_with(account_id=...)], "INVALID_FIELD", 41, "account_id"),
    ("missing pair on snapshot", [frame(id=6, op="snapshot")], "INVALID_FIELD", 6, "pair"),
    ("depth out of range", [frame(id=7, op="snapshot", pair=PAIR, depth=10**9)], "INVALID_FIELD", 7, "depth"),
    ("decimals as a bool", [frame(id=8, op="create_asset", asset="X", decimals=True)], "INVALID_FIELD", 8,
     "decimals"),
    ("a 100 KiB frame", [frame(id=9, op="ping", pad="x" * 100 * 1024)], "MALFORMED_FRAME", None, None),
    ("three frames", [frame(id=10, op="ping")] * 3, "MALFORMED_FRAME", None, None),
    ("two frames, one empty", [b"", frame(id=11, op="ping")], "MALFORMED_FRAME", None, None),
    ("deeply nested arrays", [b"[" * 30_000 + b"]" * 30_000], "INVALID_JSON", None, None),
    ("deeply nested field", [b'{"id": 12, "op": "ping", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"],
     "INVALID_JSON", None, None),
    ("deeply nested objects", [b"{\"a\":" * 10_000 + b"1" + b"}" * 10_000], "INVALID_JSON", None, None),
    ("unclosed nesting", [b"[" * 60_000], "INVALID_JSON", None, None),
]


@pytest.fixture
def client(matcher) -> MatcherClient:
    client = matcher.client()
    client.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    client.request("deposit", account_id=1, asset="USDT", amount="100000")
    client.request("deposit", account_id=2, asset="BTC", amount="10")
    client.request("place", account_id=2, pair=PAIR, side="sell", type="limit", price="101.00", quantity="1.000")
    return client


def state(client: MatcherClient) -> tuple:
    return book_state(client, [PAIR]), account_state(client, [1, 2]), client.request("markets")


@pytest.mark.parametrize(("frames", "code", "request_id", "field"),
                         [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_malformed_frame_gets_an_error_reply(client, frames, code, request_id, field):
    before = state(client)
    malformed = client.request("ping")["counters"]["malformed"]
    client.send_raw(*frames)
    reply = client.receive()
    assert reply["ok"] is False, reply
    assert reply["id"] == request_id
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["number"], int) and reply["error"]["message"]
    if field is not None:
        assert reply["error"]["details"]["field"] == field
    assert client.request("ping")["counters"]["malformed"] == malformed + 1
    assert state(client) == before


def test_a_burst_of_every_malformed_frame_changes_nothing(matcher, client):
    before = state(client)
    malformed = client.request("ping")["counters"]["malformed"]
    for _, frames, *_ in HOSTILE:
        client.send_raw(*frames)
    replies = [client.receive() for _ in HOSTILE]
    assert [reply["error"]["code"] for reply in replies] == [case[2] for case in HOSTILE]
    assert client.request("ping")["counters"]["malformed"] == malformed + len(HOSTILE)
    assert state(client) == before
    # The matcher still trades normally, on the same connection and on a new one.
    order = client.request("place", **ORDER)
    assert order["status"] == "NEW"
    assert matcher.client().request("get_order", account_id=1, order_id=order["order_id"])["status"] == "NEW"


def test_a_huge_frame_gets_an_error_reply(matcher, client):
    """A 2 MiB frame is read (under the 16 MiB transport cap) and refused as over max_frame_bytes."""
    before = state(client)
    client.send_raw(frame(id=12, op="ping", pad="x" * (2 << 20)))
    reply = client.receive(timeout=5.0)
    assert reply["id"] is None
    assert reply["error"]["code"] == "MALFORMED_FRAME"
    assert state(client) == before


def test_a_frame_beyond_the_transport_limit_drops_the_connection_not_the_matcher(matcher, client):
    """libzmq drops a message over MAXMSGSIZE (16 MiB) with its connection: no reply, and the DEALER reconnects."""
    before = state(client)
    client.send_raw(frame(id=13, op="ping", pad="x" * (17 << 20)))
    with pytest.raises(MatcherTimeout):
        client.receive(timeout=1.0)
    assert matcher.running
    assert matcher.client().request("ping")["shard_id"] == 0
    # The same DEALER reconnects by itself; a request sent after the drop is answered.
    assert client.request("ping", timeout=10.0)["shard_id"] == 0
    assert state(client) == before


def test_deep_nesting_is_refused_even_with_a_large_frame_limit(make_cluster):
    """orjson before 3.9.15 recurses without a limit (CVE-2024-27454): ~60k nested objects crash the process."""
    matcher = make_cluster(matcher={"max_frame_bytes": 1_000_000}).start()
    client = matcher.client()
    client.send_raw(b'{"a":' * 150_000 + b"1" + b"}" * 150_000)
    reply = client.receive(timeout=10.0)
    assert reply["error"]["code"] == "INVALID_JSON"
    assert client.request("ping")["shard_id"] == 0
