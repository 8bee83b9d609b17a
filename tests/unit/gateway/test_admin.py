"""Admin routes: traders, keys, deposits, markets; and the shard rules for several matchers."""

from __future__ import annotations

import re

import pytest

from common.config import ShardConfig
from common.types import RejectCode
from gateway.envelope import ApiError

TRADERS = "/api/v1/admin/traders"
MARKETS = "/api/v1/admin/markets"
DEPOSITS = "/api/v1/admin/deposits"


def code_of(result) -> tuple[int, str]:
    return result.status_code, result.json["error"]["code"]


def shard(shard_id: int, markets: tuple[str, ...]) -> ShardConfig:
    base = 20000 + 10 * shard_id
    return ShardConfig(shard_id, markets, *(f"tcp://127.0.0.1:{base + port}" for port in range(1, 5)))


def test_create_trader_shows_key_and_secret_once(gateway) -> None:
    result = gateway.admin("POST", TRADERS, {"username": "carol"})

    assert result.status_code == 201
    data = result.json["data"]
    assert data["username"] == "carol" and data["trader_id"] >= 1
    assert re.fullmatch(r"zmx_[0-9a-f]{32}", data["api_key"])
    assert re.fullmatch(r"[0-9a-f]{64}", data["api_secret"])
    listed = gateway.admin("GET", TRADERS).json["data"]["items"]
    assert "api_secret" not in listed[0] and "api_key" not in listed[0]


@pytest.mark.parametrize(("body", "field"), [({}, "username"), ({"username": ""}, "username"),
                                             ({"username": "x" * 33}, "username"),
                                             ({"username": "bad name"}, "username"),
                                             ({"username": 5}, "username"),
                                             ({"username": "dave", "is_admin": True}, "is_admin")])
def test_create_trader_validates_the_username(gateway, body, field) -> None:
    result = gateway.admin("POST", TRADERS, body)
    assert code_of(result) == (400, "INVALID_FIELD")
    assert result.json["error"]["details"]["field"] == field


def test_a_taken_username_is_409(gateway) -> None:
    gateway.admin("POST", TRADERS, {"username": "carol"})
    assert code_of(gateway.admin("POST", TRADERS, {"username": "carol"})) == (409, "ALREADY_EXISTS")


def test_traders_are_listed_oldest_first_in_pages(gateway) -> None:
    for name in ("t1", "t2", "t3"):
        gateway.admin("POST", TRADERS, {"username": name})

    first = gateway.admin("GET", TRADERS, query_string="limit=2").json["data"]
    second = gateway.admin("GET", TRADERS, query_string=f"limit=2&cursor={first['next_cursor']}").json["data"]

    assert [trader["username"] for trader in first["items"] + second["items"]] == ["t1", "t2", "t3"]
    assert (first["has_more"], second["has_more"]) == (True, False)
    assert code_of(gateway.admin("GET", TRADERS, query_string="cursor=AAAA")) == (400, "INVALID_FIELD")


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_keys_of_an_unknown_trader_are_404(gateway, method) -> None:
    assert code_of(gateway.admin(method, f"{TRADERS}/999/keys")) == (404, "NOT_FOUND")
    assert code_of(gateway.admin(method, f"{TRADERS}/abc/keys")) == (400, "INVALID_FIELD")


def test_a_deposit_credits_the_trader(gateway, market) -> None:
    trader = gateway.trader("carol")

    result = gateway.admin("POST", DEPOSITS, {"trader_id": trader.trader_id, "asset": "USDT", "amount": "12.5"})

    assert result.status_code == 201
    assert result.json["data"] == {"trader_id": trader.trader_id, "shard_id": 0, "asset": "USDT",
                                   "available": "12.50000000", "locked": "0.00000000", "total": "12.50000000"}


@pytest.mark.parametrize(("body", "expected", "field"), [
    ({"trader_id": 999, "asset": "USDT", "amount": "1"}, (404, "NOT_FOUND"), None),
    ({"trader_id": 1, "asset": "XYZ", "amount": "1"}, (400, "UNKNOWN_ASSET"), None),
    ({"trader_id": 1, "asset": "USDT", "amount": "0"}, (400, "INVALID_AMOUNT"), None),
    ({"trader_id": 1, "asset": "USDT", "amount": "0.000000001"}, (400, "INVALID_AMOUNT"), None),
    ({"trader_id": 1, "asset": "USDT", "amount": 5}, (400, "INVALID_FIELD"), "amount"),
    ({"trader_id": 0, "asset": "USDT", "amount": "1"}, (400, "INVALID_FIELD"), "trader_id"),
    ({"trader_id": "1", "asset": "USDT", "amount": "1"}, (400, "INVALID_FIELD"), "trader_id"),
    ({"account_id": 1, "asset": "USDT", "amount": "1"}, (400, "INVALID_FIELD"), "account_id"),
    ({"trader_id": 1, "asset": "USDT", "amount": "1", "shard_id": 7}, (400, "INVALID_FIELD"), "shard_id"),
])
def test_deposit_errors(gateway, market, body, expected, field) -> None:
    gateway.trader("carol")
    result = gateway.admin("POST", DEPOSITS, body)
    assert code_of(result) == expected
    if field is not None:
        assert result.json["error"]["details"]["field"] == field


def test_create_market_derives_asset_decimals_or_takes_them(gateway) -> None:
    created = gateway.admin("POST", MARKETS, {"pair": "ETH-USDC", "base": "ETH", "quote": "USDC",
                                              "tick_size": "0.01", "lot_size": "0.0001", "base_decimals": 18,
                                              "quote_decimals": 6, "min_notional": "5", "maker_fee_bps": -1,
                                              "taker_fee_bps": 5})
    assert created.status_code == 201
    market = created.json["data"]
    assert (market["pair"], market["min_notional"], market["maker_fee_bps"], market["shard_id"]) == (
        "ETH-USDC", "5.000000", -1, 0)
    # Derived: the lot needs 10 decimals (base), tick x lot 12 (quote).
    gateway.create_market("BTC-EUR", lot_size="0.0000000001")
    assets = {asset["asset"]: asset["decimals"]
              for asset in gateway.client.simulate_get("/api/v1/assets").json["data"]["items"]}
    assert assets == {"ETH": 18, "USDC": 6, "BTC": 10, "EUR": 12}
    too_fine = gateway.admin("POST", MARKETS, {"pair": "BTC-USDC", "tick_size": "0.01", "lot_size": "0.00001"})
    assert code_of(too_fine) == (400, "INVALID_FIELD")  # tick x lot needs 7 decimals, USDC has 6


@pytest.mark.parametrize(("body", "expected", "field"), [
    ({"pair": "BTC-USDT", "base": "ETH"}, (400, "INVALID_FIELD"), "base"),
    ({"pair": "BTC-USDT", "quote": "USD"}, (400, "INVALID_FIELD"), "quote"),
    ({"pair": "BTCUSDT"}, (400, "INVALID_FIELD"), "pair"),
    ({"pair": "BTC-USDT", "tick_size": "0"}, (400, "INVALID_FIELD"), "tick_size"),
    ({"pair": "BTC-USDT", "tick_size": "abc"}, (400, "INVALID_FIELD"), "tick_size"),
    ({"pair": "BTC-USDT", "taker_fee_bps": 5000}, (400, "INVALID_FIELD"), "taker_fee_bps"),
    ({"pair": "BTC-USDT", "base_decimals": 19}, (400, "INVALID_FIELD"), "base_decimals"),
    ({"pair": "BTC-USDT", "base_decimals": True}, (400, "INVALID_FIELD"), "base_decimals"),
    ({"pair": "BTC-USDT", "lot_size": "0.001", "base_decimals": 2}, (400, "INVALID_FIELD"), "lot_size"),
    # Found by the fuzz run: the product of these steps once stopped the matcher.
    ({"pair": "AB-CD", "tick_size": "023.01047841", "lot_size": "15695632009078939465.01495e2"},
     (400, "INVALID_FIELD"), "lot_size"),
])
def test_create_market_errors(gateway, body, expected, field) -> None:
    result = gateway.admin("POST", MARKETS, {"tick_size": "0.01", "lot_size": "0.001", **body})
    assert code_of(result) == expected
    assert result.json["error"]["details"].get("field") == field


def test_a_market_or_an_asset_that_exists_is_409(gateway, market) -> None:
    assert code_of(gateway.admin("POST", MARKETS, {"pair": "BTC-USDT", "tick_size": "0.01",
                                                   "lot_size": "0.001"})) == (409, "ALREADY_EXISTS")
    result = gateway.admin("POST", MARKETS, {"pair": "BTC-EUR", "tick_size": "0.01", "lot_size": "0.001",
                                             "base_decimals": 6})
    assert code_of(result) == (409, "ALREADY_EXISTS")
    assert result.json["error"]["details"] == {"field": "base_decimals", "asset": "BTC", "decimals": 8}


def test_halt_and_resume(gateway, alice) -> None:
    halted = gateway.admin("POST", f"{MARKETS}/BTC-USDT/halt")
    assert halted.status_code == 200 and halted.json["data"]["status"] == "halted"
    assert code_of(alice.place()) == (422, "MARKET_HALTED")
    resumed = gateway.admin("POST", f"{MARKETS}/BTC-USDT/resume")
    assert resumed.json["data"]["status"] == "trading"
    assert alice.place().status_code == 201
    assert code_of(gateway.admin("POST", f"{MARKETS}/NOPE-USDT/halt")) == (400, "UNKNOWN_MARKET")


# ---------------------------------------------------------------- several shards


@pytest.fixture
def sharded(make_gateway):
    gateway = make_gateway(shards=(shard(0, ("BTC-USDT",)), shard(1, ("*",)), shard(2, ("ETH-BTC",))))
    for pair in ("BTC-USDT", "ETH-USDT", "ETH-BTC"):
        gateway.create_market(pair)
    return gateway


def test_markets_are_created_on_their_shard(sharded) -> None:
    owners = {m["pair"]: m["shard_id"] for m in sharded.client.simulate_get("/api/v1/markets").json["data"]["items"]}
    assert owners == {"BTC-USDT": 0, "ETH-USDT": 1, "ETH-BTC": 2}


def test_deposits_go_to_the_wildcard_shard_or_the_one_named_and_balances_sum_them(sharded) -> None:
    trader = sharded.trader("carol")
    default = sharded.admin("POST", DEPOSITS, {"trader_id": trader.trader_id, "asset": "USDT", "amount": "10"})
    named = sharded.admin("POST", DEPOSITS, {"trader_id": trader.trader_id, "asset": "USDT", "amount": "2.5",
                                             "shard_id": 0})

    assert (default.json["data"]["shard_id"], named.json["data"]["shard_id"]) == (1, 0)
    balances = trader.get("/api/v1/account/balances").json["data"]["items"]
    assert balances == [{"asset": "USDT", "available": "12.50000000", "locked": "0.00000000",
                         "total": "12.50000000"}]


def test_orders_route_by_pair_and_by_the_shard_in_their_id(sharded) -> None:
    trader = sharded.trader("carol")
    for shard_id in (0, 1):
        sharded.admin("POST", DEPOSITS, {"trader_id": trader.trader_id, "asset": "USDT", "amount": "1000",
                                         "shard_id": shard_id})
    btc = trader.place(pair="BTC-USDT").json["data"]
    eth = trader.place(pair="ETH-USDT", client_order_id="eth-1").json["data"]

    assert (btc["order_id"] & 1023, eth["order_id"] & 1023) == (0, 1)
    assert trader.get(f"/api/v1/account/orders/{eth['order_id']}").json["data"]["pair"] == "ETH-USDT"
    assert trader.get("/api/v1/account/orders/by-client-id/eth-1").json["data"]["order_id"] == eth["order_id"]
    listed = trader.get("/api/v1/account/orders").json["data"]["items"]
    assert sorted(order["order_id"] for order in listed) == sorted([btc["order_id"], eth["order_id"]])
    canceled = trader.request("DELETE", "/api/v1/account/orders/by-client-id/eth-1").json["data"]
    assert canceled["status"] == "CANCELED"
    assert len(trader.post("/api/v1/account/orders/cancel-all").json["data"]["canceled"]) == 1
    # A lookup still finds the closed order (the newest closed one with that id); an unused id is not found.
    assert trader.get("/api/v1/account/orders/by-client-id/eth-1").json["data"]["status"] == "CANCELED"
    assert code_of(trader.get("/api/v1/account/orders/by-client-id/eth-2")) == (404, "ORDER_NOT_FOUND")


BOT_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # a valid Z85 public key


def test_a_bot_key_is_registered_on_every_shard_and_again_is_a_no_op(make_gateway) -> None:
    gateway = make_gateway(shards=(shard(0, ("*",)), shard(1, ("ETH-USDT",))))
    trader_id = gateway.trader("botty").trader_id
    admin = gateway.services.admin

    assert admin.register_bot_key(trader_id, BOT_KEY) == {"trader_id": trader_id, "public_key": BOT_KEY,
                                                          "shards": [0, 1]}
    assert admin.register_bot_key(trader_id, BOT_KEY)["shards"] == [0, 1]  # a repeated run succeeds
    for dispatcher in gateway.engine.dispatchers.values():
        assert dispatcher.engine.bot_keys == {BOT_KEY: trader_id}

    assert admin.revoke_bot_key(BOT_KEY) == {"public_key": BOT_KEY, "shards": [0, 1]}
    assert all(not dispatcher.engine.bot_keys for dispatcher in gateway.engine.dispatchers.values())
    with pytest.raises(ApiError) as caught:
        admin.revoke_bot_key(BOT_KEY)
    assert caught.value.code is RejectCode.NOT_FOUND


@pytest.mark.parametrize("key, expected", [
    (BOT_KEY, RejectCode.ALREADY_EXISTS),          # held by another trader
    ("~" * 40, RejectCode.INVALID_FIELD),          # not Z85
    ("#" * 40, RejectCode.INVALID_FIELD),          # Z85 characters, but no 32-bit group
    (BOT_KEY[:39], RejectCode.INVALID_FIELD),
])
def test_a_bot_key_that_is_taken_or_malformed_is_refused(gateway, key, expected) -> None:
    owner, other = gateway.trader("owner").trader_id, gateway.trader("other").trader_id
    gateway.services.admin.register_bot_key(owner, BOT_KEY)

    with pytest.raises(ApiError) as caught:
        gateway.services.admin.register_bot_key(other, key)

    assert caught.value.code is expected
    assert gateway.engine.dispatchers[0].engine.bot_keys == {BOT_KEY: owner}


def test_a_bot_key_for_an_unknown_trader_is_refused(gateway) -> None:
    with pytest.raises(ApiError) as caught:
        gateway.services.admin.register_bot_key(999, BOT_KEY)
    assert caught.value.code is RejectCode.NOT_FOUND
