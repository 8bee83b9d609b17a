"""Co-located bots on the CURVE ROUTER: registration, own-account trading, execution reports, revocation."""

from __future__ import annotations

import orjson
import pytest
import zmq

from common.matcher_client import MatcherClient, MatcherError, MatcherTimeout
from tests.integration.harness import MatcherProcess

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
BOT_ACCOUNT, OTHER = 5, 6
REFUSED_WAIT = 1.0  # long enough for many CURVE handshake attempts on loopback


@pytest.fixture
def admin(matcher) -> MatcherClient:
    admin = matcher.client()
    admin.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001")
    for account_id in (BOT_ACCOUNT, OTHER):
        admin.request("deposit", account_id=account_id, asset="USDT", amount="100000")
        admin.request("deposit", account_id=account_id, asset="BTC", amount="100")
    return admin


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    return zmq.curve_keypair()


def registered_bot(matcher: MatcherProcess, admin: MatcherClient, keys) -> MatcherClient:
    public, _ = keys
    reply = admin.request("register_bot_key", account_id=BOT_ACCOUNT, public_key=public.decode())
    assert reply == {"account_id": BOT_ACCOUNT, "public_key": public.decode()}
    return matcher.client(curve=keys)


def code_of(client: MatcherClient, op: str, **fields) -> str:
    with pytest.raises(MatcherError) as caught:
        client.request(op, **fields)
    return caught.value.code


def test_an_unregistered_key_gets_no_answer(matcher, admin, keys):
    stranger = matcher.client(curve=keys)
    stranger.send("ping")
    with pytest.raises(MatcherTimeout):
        stranger.receive(timeout=REFUSED_WAIT)
    # A wrong server key fails the CURVE handshake the same way.
    other_server = zmq.curve_keypair()[0]
    wrong = MatcherClient(matcher.endpoints["bot_endpoint"], context=matcher.cluster.context,
                          curve=(other_server, *keys))
    try:
        wrong.send("ping")
        with pytest.raises(MatcherTimeout):
            wrong.receive(timeout=REFUSED_WAIT)
    finally:
        wrong.close()
    # A plain (non-CURVE) DEALER is refused too.
    plain = matcher.client(bot=True)
    plain.send("ping")
    with pytest.raises(MatcherTimeout):
        plain.receive(timeout=REFUSED_WAIT)
    assert admin.request("ping")["shard_id"] == 0


def test_a_registered_bot_trades_its_own_account_only(matcher, admin, keys):
    bot = registered_bot(matcher, admin, keys)
    assert bot.request("ping")["shard_id"] == 0
    order = bot.request("place", pair=PAIR, side="buy", type="limit", price="99.00", quantity="1.000")
    assert order["account_id"] == BOT_ACCOUNT and order["status"] == "NEW"
    # Naming its own account is allowed; naming another one is not.
    own = bot.request("place", account_id=BOT_ACCOUNT, pair=PAIR, side="sell", type="limit", price="120.00",
                      quantity="0.100")
    assert own["account_id"] == BOT_ACCOUNT
    assert code_of(bot, "place", account_id=OTHER, pair=PAIR, side="buy", type="limit", price="99.00",
                   quantity="1.000") == "FORBIDDEN"
    assert code_of(bot, "balances", account_id=OTHER) == "FORBIDDEN"
    assert code_of(bot, "cancel_all", account_id=OTHER) == "FORBIDDEN"

    others = admin.request("place", account_id=OTHER, pair=PAIR, side="sell", type="limit", price="130.00",
                           quantity="1.000")
    assert code_of(bot, "cancel", order_id=others["order_id"]) == "ORDER_NOT_FOUND"
    assert code_of(bot, "amend", order_id=others["order_id"], quantity="0.5") == "ORDER_NOT_FOUND"
    assert code_of(bot, "get_order", order_id=others["order_id"]) == "ORDER_NOT_FOUND"
    assert admin.request("get_order", account_id=OTHER, order_id=others["order_id"])["status"] == "NEW"

    for op, fields in (("deposit", {"asset": "USDT", "amount": "1"}),
                       ("withdraw", {"asset": "USDT", "amount": "1"}),
                       ("create_market", {"pair": "ETH-USDT", "tick_size": "0.01", "lot_size": "0.01"}),
                       ("create_asset", {"asset": "DOGE", "decimals": 8}),
                       ("halt", {"pair": PAIR}),
                       ("register_bot_key", {"public_key": "x" * 40}),
                       ("revoke_bot_key", {"public_key": keys[0].decode()})):
        assert code_of(bot, op, **fields) == "FORBIDDEN", op

    amended = bot.request("amend", order_id=order["order_id"], quantity="0.500")
    assert amended["quantity"] == "0.500"
    assert [o["order_id"] for o in bot.request("open_orders")] == [order["order_id"], own["order_id"]]
    balances = {b["asset"]: b for b in bot.request("balances")}
    assert balances["USDT"]["locked"] == "49.50000000"
    canceled = bot.request("cancel", order_id=order["order_id"])
    assert canceled["status"] == "CANCELED"
    assert bot.request("cancel_all")["canceled"][0]["order_id"] == own["order_id"]
    assert bot.request("snapshot", pair=PAIR)["asks"] == [["130.00", "1.000"]]

    # A malformed frame on the bot socket gets an error reply too.
    bot.send_raw(b"not json")
    reply = bot.receive()
    while "id" not in reply:
        reply = bot.receive()
    assert reply["error"]["code"] == "INVALID_JSON"


def test_a_bot_receives_its_own_execution_reports_unsolicited(matcher, admin, keys):
    bot = registered_bot(matcher, admin, keys)
    resting = bot.request("place", pair=PAIR, side="sell", type="limit", price="100.00", quantity="1.000")
    own_events = [bot.events.popleft() for _ in range(len(bot.events))]
    while not own_events:
        own_events.append(bot.receive())
    assert own_events[0]["orders"][0]["order_id"] == resting["order_id"]

    # Other accounts trading among themselves is none of the bot's business...
    admin.request("deposit", account_id=7, asset="BTC", amount="1")
    admin.request("place", account_id=7, pair=PAIR, side="sell", type="limit", price="90.00", quantity="0.200")
    admin.request("place", account_id=OTHER, pair=PAIR, side="buy", type="limit", price="90.00", quantity="0.200")
    # ...but someone else's taker order filling the bot's resting order is.
    taker = admin.request("place", account_id=OTHER, pair=PAIR, side="buy", type="limit", price="100.00",
                          quantity="0.300")
    assert taker["status"] == "FILLED"
    report = bot.receive(timeout=5.0)
    assert "id" not in report
    assert report["type"] == "account" and report["account_id"] == BOT_ACCOUNT
    assert report["seq"] == own_events[-1]["seq"] + 1
    assert [(o["order_id"], o["status"], o["filled_quantity"]) for o in report["orders"]] == [
        (resting["order_id"], "PARTIALLY_FILLED", "0.300")]
    assert [(f["order_id"], f["quantity"], f["liquidity"]) for f in report["fills"]] == [
        (resting["order_id"], "0.300", "maker")]
    assert {b["asset"] for b in report["balances"]} == {"BTC", "USDT"}
    assert bot.socket.poll(0) == 0


def test_a_revoked_key_cannot_connect_again(matcher, admin, keys):
    bot = registered_bot(matcher, admin, keys)
    assert bot.request("ping")["shard_id"] == 0
    assert admin.request("revoke_bot_key", public_key=keys[0].decode()) == {"public_key": keys[0].decode()}
    with pytest.raises(MatcherError) as caught:
        admin.request("revoke_bot_key", public_key=keys[0].decode())
    assert caught.value.code == "NOT_FOUND"
    again = matcher.client(curve=keys)
    again.send("ping")
    with pytest.raises(MatcherTimeout):
        again.receive(timeout=REFUSED_WAIT)
    # Registered again, the same key works on a new connection.
    admin.request("register_bot_key", account_id=BOT_ACCOUNT, public_key=keys[0].decode())
    assert matcher.client(curve=keys).request("ping")["shard_id"] == 0


def test_revoking_a_key_also_stops_its_live_connection(matcher, admin, keys):
    """Revocation is for a bot that must stop now: its open connection is refused and told nothing more."""
    bot = registered_bot(matcher, admin, keys)
    resting = bot.request("place", pair=PAIR, side="sell", type="limit", price="100.00", quantity="1.000")
    bot.events.clear()
    admin.request("revoke_bot_key", public_key=keys[0].decode())
    assert code_of(bot, "place", pair=PAIR, side="buy", type="limit", price="1.00", quantity="0.001") == "FORBIDDEN"
    assert code_of(bot, "cancel", order_id=resting["order_id"]) == "FORBIDDEN"
    # Its resting order still trades (the account is not frozen), but the report goes no longer to the bot.
    admin.request("place", account_id=OTHER, pair=PAIR, side="buy", type="limit", price="100.00", quantity="0.100")
    assert code_of(bot, "balances") == "FORBIDDEN"  # a round trip after the fill was published
    assert list(bot.events) == []
    assert admin.request("get_order", account_id=BOT_ACCOUNT, order_id=resting["order_id"])["filled_quantity"] == \
        "0.100"


def test_bot_keys_survive_a_restart(matcher, admin, keys):
    registered_bot(matcher, admin, keys)
    matcher.restart()
    bot = matcher.client(curve=keys)
    assert bot.request("place", pair=PAIR, side="buy", type="limit", price="1.00", quantity="0.001")["account_id"] \
        == BOT_ACCOUNT


def test_register_bot_key_is_an_admin_operation(matcher, admin, keys):
    public = keys[0].decode()
    admin.request("register_bot_key", account_id=BOT_ACCOUNT, public_key=public)
    with pytest.raises(MatcherError) as caught:
        admin.request("register_bot_key", account_id=OTHER, public_key=public)
    assert caught.value.code == "ALREADY_EXISTS"
    admin.send_raw(orjson.dumps({"id": 1, "op": "register_bot_key", "account_id": OTHER, "public_key": "short"}))
    assert admin.receive()["error"]["code"] == "INVALID_FIELD"
