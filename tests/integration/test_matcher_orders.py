"""Order entry over the matcher's DEALER/ROUTER: replies, rejects, balances, request ids."""

from __future__ import annotations

import orjson
import pytest

from common.matcher_client import MatcherClient, MatcherError
from tests.integration.harness import account_state, book_state

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
BUYER, SELLER = 1, 2


@pytest.fixture
def client(matcher) -> MatcherClient:
    """A client on a matcher with BTC-USDT (tick 0.01, lot 0.001, maker 10 / taker 20 bps) and two funded accounts."""
    client = matcher.client()
    market = client.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001",
                            maker_fee_bps=10, taker_fee_bps=20)
    assert market["status"] == "trading"
    client.request("deposit", account_id=BUYER, asset="USDT", amount="10000")
    client.request("deposit", account_id=SELLER, asset="BTC", amount="10")
    return client


def place(client: MatcherClient, account_id: int, side: str, price: str | None, quantity: str, **fields):
    return client.request("place", account_id=account_id, pair=PAIR, side=side,
                          type=fields.pop("type", "limit"), price=price, quantity=quantity, **fields)


def balances(client: MatcherClient, account_id: int) -> dict[str, tuple[str, str]]:
    return {b["asset"]: (b["available"], b["locked"]) for b in client.request("balances", account_id=account_id)}


def reject_code(client: MatcherClient, op: str, **fields) -> str:
    with pytest.raises(MatcherError) as caught:
        client.request(op, **fields)
    return caught.value.code


def test_resting_order_then_taker_fill_has_the_exact_reply_shape_and_fees(client):
    maker = place(client, SELLER, "sell", "100.00", "1.000")
    assert maker["order_id"] & 1023 == 0
    assert {key: maker[key] for key in ("account_id", "pair", "side", "type", "price", "quantity",
                                         "filled_quantity", "remaining_quantity", "average_price", "status",
                                         "time_in_force", "post_only", "stp", "fills", "client_order_id",
                                         "quote_quantity")} == {
        "account_id": SELLER, "pair": PAIR, "side": "sell", "type": "limit", "price": "100.00",
        "quantity": "1.000", "filled_quantity": "0.000", "remaining_quantity": "1.000", "average_price": None,
        "status": "NEW", "time_in_force": "GTC", "post_only": False, "stp": "expire_maker", "fills": [],
        "client_order_id": None, "quote_quantity": None,
    }
    assert isinstance(maker["created_at"], int) and maker["updated_at"] >= maker["created_at"]
    assert balances(client, SELLER) == {"BTC": ("9.00000000", "1.00000000")}

    taker = place(client, BUYER, "buy", "100.00", "1.000", client_order_id="buy-1")
    assert taker["order_id"] > maker["order_id"]
    assert taker["status"] == "FILLED"
    assert taker["filled_quantity"] == "1.000"
    assert taker["remaining_quantity"] == "0.000"
    assert taker["average_price"] == "100.0000000000"
    assert taker["client_order_id"] == "buy-1"
    [fill] = taker["fills"]
    assert isinstance(fill["trade_id"], int)
    assert {key: value for key, value in fill.items() if key != "trade_id"} == {
        "order_id": taker["order_id"], "pair": PAIR, "side": "buy", "price": "100.00", "quantity": "1.000",
        "fee": "0.00200000", "fee_asset": "BTC", "liquidity": "taker",
    }

    maker_now = client.request("get_order", account_id=SELLER, order_id=maker["order_id"])
    assert maker_now["status"] == "FILLED"
    assert maker_now["filled_quantity"] == "1.000"
    assert maker_now["average_price"] == "100.0000000000"
    # Taker fee 20 bps of the 1 BTC received; maker fee 10 bps of the 100 USDT received.
    assert balances(client, BUYER) == {"BTC": ("0.99800000", "0.00000000"), "USDT": ("9900.00000000", "0.00000000")}
    assert balances(client, SELLER) == {"BTC": ("9.00000000", "0.00000000"), "USDT": ("99.90000000", "0.00000000")}
    book = client.request("snapshot", pair=PAIR)
    assert book["bids"] == [] and book["asks"] == []


def test_partial_fill_rests_the_remainder_and_reports_the_average_price(client):
    place(client, SELLER, "sell", "100.00", "0.400")
    place(client, SELLER, "sell", "101.00", "0.600")
    taker = place(client, BUYER, "buy", "101.00", "1.500")
    assert taker["status"] == "PARTIALLY_FILLED"
    assert taker["filled_quantity"] == "1.000"
    assert taker["remaining_quantity"] == "0.500"
    # (0.4 x 100 + 0.6 x 101) / 1.0 = 100.6
    assert taker["average_price"] == "100.6000000000"
    assert [(fill["price"], fill["quantity"], fill["liquidity"]) for fill in taker["fills"]] == [
        ("100.00", "0.400", "taker"), ("101.00", "0.600", "taker")]
    assert [fill["fee"] for fill in taker["fills"]] == ["0.00080000", "0.00120000"]
    book = client.request("snapshot", pair=PAIR)
    assert book["bids"] == [["101.00", "0.500"]]
    assert book["asks"] == []
    # The resting 0.5 at 101.00 locks 50.5 USDT plus 20 bps of taker-fee headroom.
    assert balances(client, BUYER)["USDT"] == ("9848.79900000", "50.60100000")


def test_cancel_returns_the_order_and_unlocks_its_funds(client):
    order = place(client, BUYER, "buy", "99.00", "2.000", client_order_id="c1")
    assert balances(client, BUYER)["USDT"] == ("9801.60400000", "198.39600000")
    canceled = client.request("cancel", account_id=BUYER, order_id=order["order_id"])
    assert canceled["status"] == "CANCELED"
    assert canceled["order_id"] == order["order_id"]
    assert canceled["remaining_quantity"] == "0.000"
    assert balances(client, BUYER)["USDT"] == ("10000.00000000", "0.00000000")
    assert client.request("snapshot", pair=PAIR)["bids"] == []
    # The client_order_id is free again once the order is closed.
    again = place(client, BUYER, "buy", "99.00", "1.000", client_order_id="c1")
    canceled = client.request("cancel", account_id=BUYER, client_order_id="c1")
    assert canceled["order_id"] == again["order_id"]
    assert reject_code(client, "cancel", account_id=BUYER, order_id=order["order_id"]) == "ORDER_NOT_OPEN"
    assert client.request("open_orders", account_id=BUYER) == []


def test_cancel_all_cancels_every_open_order(client):
    ids = {place(client, SELLER, "sell", price, "0.100")["order_id"] for price in ("101.00", "102.00", "103.00")}
    result = client.request("cancel_all", account_id=SELLER, pair=PAIR)
    assert {order["order_id"] for order in result["canceled"]} == ids
    assert all(order["status"] == "CANCELED" for order in result["canceled"])
    assert balances(client, SELLER) == {"BTC": ("10.00000000", "0.00000000")}


def test_amend_down_keeps_priority_and_a_crossing_amend_trades_as_taker(client):
    first = place(client, SELLER, "sell", "101.00", "1.000")
    second = place(client, SELLER, "sell", "101.00", "1.000")
    amended = client.request("amend", account_id=SELLER, order_id=first["order_id"], quantity="0.500")
    assert amended["quantity"] == "0.500" and amended["remaining_quantity"] == "0.500"
    assert amended["order_id"] == first["order_id"]
    assert client.request("snapshot", pair=PAIR)["asks"] == [["101.00", "1.500"]]
    # The first order kept its place at the front of the queue.
    taker = place(client, BUYER, "buy", "101.00", "0.500", time_in_force="IOC")
    assert taker["status"] == "FILLED" and len(taker["fills"]) == 1
    assert client.request("get_order", account_id=SELLER, order_id=first["order_id"])["status"] == "FILLED"
    assert client.request("get_order", account_id=SELLER, order_id=second["order_id"])["status"] == "NEW"

    bid = place(client, BUYER, "buy", "100.00", "0.300")
    crossing = client.request("amend", account_id=BUYER, order_id=bid["order_id"], price="101.00")
    assert crossing["status"] == "FILLED"
    assert [(fill["price"], fill["quantity"], fill["liquidity"]) for fill in crossing["fills"]] == [
        ("101.00", "0.300", "taker")]
    assert client.request("snapshot", pair=PAIR)["asks"] == [["101.00", "0.700"]]

    partly = place(client, BUYER, "buy", "101.00", "1.000")  # takes the remaining 0.7
    assert partly["status"] == "PARTIALLY_FILLED"
    before = (book_state(client, [PAIR]), account_state(client, [BUYER, SELLER]))
    assert reject_code(client, "amend", account_id=BUYER, order_id=partly["order_id"], quantity="0.700") == \
        "AMEND_REJECTED"
    assert reject_code(client, "amend", account_id=BUYER, order_id=partly["order_id"], price="100.001") == \
        "INVALID_PRICE"
    assert (book_state(client, [PAIR]), account_state(client, [BUYER, SELLER])) == before


def test_ioc_fok_and_market_orders_expire_their_remainder(client):
    place(client, SELLER, "sell", "100.00", "1.000")
    fok = place(client, BUYER, "buy", "100.00", "2.000", time_in_force="FOK")
    assert fok["status"] == "EXPIRED" and fok["fills"] == []
    assert client.request("snapshot", pair=PAIR)["asks"] == [["100.00", "1.000"]]
    ioc = place(client, BUYER, "buy", "100.00", "0.400", time_in_force="IOC")
    assert ioc["status"] == "FILLED"
    market = client.request("place", account_id=BUYER, pair=PAIR, side="buy", type="market", quantity="1.000")
    assert market["status"] == "EXPIRED"
    assert market["filled_quantity"] == "0.600"
    assert market["time_in_force"] == "IOC"
    assert client.request("open_orders", account_id=BUYER) == []
    assert balances(client, BUYER)["USDT"][1] == "0.00000000"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"price": "100.001"}, "INVALID_PRICE"),
        ({"price": "0"}, "INVALID_PRICE"),
        ({"price": "-1.00"}, "INVALID_PRICE"),
        ({"price": "NaN"}, "INVALID_PRICE"),
        ({"price": "1e99999"}, "INVALID_PRICE"),
        ({"quantity": "0.0001"}, "INVALID_QUANTITY"),
        ({"quantity": "0"}, "INVALID_QUANTITY"),
        ({"quantity": "Infinity"}, "INVALID_QUANTITY"),
        ({"pair": "ETH-USDT"}, "UNKNOWN_MARKET"),
        ({"quantity": "200.000"}, "INSUFFICIENT_BALANCE"),
        ({"side": "bid"}, "INVALID_FIELD"),
        ({"stp": "sometimes"}, "INVALID_FIELD"),
    ],
)
def test_invalid_orders_are_rejected_with_their_code_and_change_nothing(client, fields, code):
    place(client, SELLER, "sell", "105.00", "1.000")
    before = (book_state(client, [PAIR]), account_state(client, [BUYER, SELLER]))
    order = {"account_id": BUYER, "pair": PAIR, "side": "buy", "type": "limit", "price": "100.00",
             "quantity": "1.000", **fields}
    request_id = client.send("place", **order)
    reply = client.wait(request_id)
    assert reply["id"] == request_id
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert isinstance(reply["error"]["number"], int)
    assert reply["error"]["message"]
    assert (book_state(client, [PAIR]), account_state(client, [BUYER, SELLER])) == before


def test_business_rejects(client):
    resting = place(client, SELLER, "sell", "100.00", "1.000", client_order_id="ask-1")
    assert reject_code(client, "place", account_id=BUYER, pair=PAIR, side="buy", type="limit", price="100.00",
                       quantity="0.100", post_only=True) == "POST_ONLY_WOULD_TAKE"
    assert place(client, BUYER, "buy", "99.00", "0.100", post_only=True)["status"] == "NEW"
    assert reject_code(client, "place", account_id=SELLER, pair=PAIR, side="sell", type="limit", price="101.00",
                       quantity="0.100", client_order_id="ask-1") == "DUPLICATE_CLIENT_ORDER_ID"
    assert reject_code(client, "cancel", account_id=SELLER, order_id=999_999_999) == "ORDER_NOT_FOUND"
    # Another account's order id is not found for you.
    assert reject_code(client, "cancel", account_id=BUYER, order_id=resting["order_id"]) == "ORDER_NOT_FOUND"
    assert reject_code(client, "get_order", account_id=BUYER, order_id=resting["order_id"]) == "ORDER_NOT_FOUND"
    assert reject_code(client, "amend", account_id=SELLER, client_order_id="nope", quantity="0.5") == \
        "ORDER_NOT_FOUND"
    assert reject_code(client, "place", account_id=3, pair=PAIR, side="buy", type="limit", price="1.00",
                       quantity="0.001") == "INSUFFICIENT_BALANCE"
    assert reject_code(client, "withdraw", account_id=BUYER, asset="USDT", amount="10001") == "INSUFFICIENT_BALANCE"
    assert reject_code(client, "create_market", pair=PAIR, tick_size="0.01", lot_size="0.001") == "ALREADY_EXISTS"


def test_halted_market_rejects_orders_and_amends_but_cancels_work(client):
    resting = place(client, SELLER, "sell", "100.00", "1.000")
    other = place(client, SELLER, "sell", "102.00", "1.000")
    halted = client.request("halt", pair=PAIR)
    assert halted["status"] == "halted"
    assert client.request("snapshot", pair=PAIR)["status"] == "halted"
    assert reject_code(client, "place", account_id=BUYER, pair=PAIR, side="buy", type="limit", price="100.00",
                       quantity="0.100") == "MARKET_HALTED"
    assert reject_code(client, "amend", account_id=SELLER, order_id=resting["order_id"], quantity="0.500") == \
        "MARKET_HALTED"
    assert client.request("cancel", account_id=SELLER, order_id=resting["order_id"])["status"] == "CANCELED"
    assert client.request("cancel_all", account_id=SELLER)["canceled"][0]["order_id"] == other["order_id"]
    assert client.request("resume", pair=PAIR)["status"] == "trading"
    assert place(client, BUYER, "buy", "100.00", "0.100")["status"] == "NEW"


def test_balances_and_withdrawals(client):
    assert client.request("balances", account_id=77) == []
    funds = client.request("withdraw", account_id=BUYER, asset="USDT", amount="0.5")
    assert funds == {"account_id": BUYER, "asset": "USDT", "available": "9999.50000000", "locked": "0.00000000",
                     "total": "9999.50000000"}
    assert reject_code(client, "deposit", account_id=BUYER, asset="DOGE", amount="1") == "UNKNOWN_ASSET"
    assert reject_code(client, "deposit", account_id=BUYER, asset="USDT", amount="0.000000001") == "INVALID_AMOUNT"


def test_request_ids_are_echoed_whatever_their_type(client):
    for request_id in (0, 7, -3, 2**62, "abc", "order-17/x", "x" * 64):
        client.send_raw(orjson.dumps({"id": request_id, "op": "ping"}))
        reply = client.receive()
        assert reply["id"] == request_id and reply["ok"] is True
    client.send_raw(orjson.dumps({"op": "ping"}))
    reply = client.receive()
    assert reply["id"] is None and reply["ok"] is True and reply["data"]["shard_id"] == 0
    client.send_raw(orjson.dumps({"id": "bad-price", "op": "place", "account_id": BUYER, "pair": PAIR,
                                  "side": "buy", "type": "limit", "price": "1.001", "quantity": "1"}))
    reply = client.receive()
    assert reply["id"] == "bad-price" and reply["error"]["code"] == "INVALID_PRICE"


def test_pipelined_requests_are_answered_in_order(client):
    ids = []
    for index in range(300):
        if index % 3 == 0:
            ids.append(client.send("place", account_id=SELLER, pair=PAIR, side="sell", type="limit",
                                   price=f"{110 + index % 7}.00", quantity="0.001"))
        elif index % 3 == 1:
            ids.append(client.send("place", account_id=BUYER, pair=PAIR, side="buy", type="limit",
                                   price="1.001", quantity="0.001"))  # rejected: not on the tick
        else:
            ids.append(client.send("balances", account_id=BUYER))
    replies = [client.receive() for _ in ids]
    assert [reply["id"] for reply in replies] == ids
    assert [reply["ok"] for reply in replies] == [index % 3 != 1 for index in range(300)]
    order_ids = [reply["data"]["order_id"] for reply in replies[::3]]
    assert order_ids == sorted(order_ids) and len(set(order_ids)) == 100


def test_ledger_shows_fees_collected_and_balances_summing_to_deposits(client):
    place(client, SELLER, "sell", "100.00", "1.000")
    place(client, BUYER, "buy", "100.00", "1.000")
    ledger = client.request("ledger")
    assert ledger["net_deposits"] == {"USDT": "10000.00000000", "BTC": "10.00000000"}
    assert ledger["totals"] == ledger["net_deposits"]
    # maker (seller) pays 10 bps of 100 USDT received, taker (buyer) 20 bps of 1 BTC received
    assert {b["asset"]: b["available"] for b in ledger["fee_account"]} == {"BTC": "0.00200000", "USDT": "0.10000000"}
    assert ledger["accounts"] == 2 and ledger["open_orders"] == 0
    assert reject_code(client, "ledger", account_id=1) == "INVALID_FIELD"
