"""The REST gateway under real gunicorn in front of a real matcher and the SQLite store."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import orjson
import pytest

from tests.integration.gateway_harness import ADMIN_TOKEN, GatewayProcess, HttpClient
from tests.integration.harness import REPO_ROOT, MatcherCluster
from tests.polling import poll_until

pytestmark = pytest.mark.integration

ORDERS = "/api/v1/account/orders"


@pytest.fixture
def make_gateway(make_cluster) -> Iterator[Callable[..., tuple[MatcherCluster, GatewayProcess]]]:
    """Give the test `make_gateway(**gateway settings)`: a running matcher and gateway."""
    gateways: list[GatewayProcess] = []

    def make(cluster: MatcherCluster | None = None, **settings) -> tuple[MatcherCluster, GatewayProcess]:
        if cluster is None:
            cluster = make_cluster()
            cluster.start(0)
        gateway = GatewayProcess(cluster, f"gateway-{len(gateways)}", **settings)
        gateways.append(gateway)
        gateway.start()
        return cluster, gateway

    yield make
    for gateway in gateways:
        gateway.stop()
        # Shown by pytest only when the test failed.
        print(f"---- {gateway.log_path}\n{gateway.log_text()[-20000:]}")


def market(gateway: GatewayProcess, pair: str = "BTC-USDT") -> None:
    created = gateway.client().admin("POST", "/api/v1/admin/markets", {
        "pair": pair, "tick_size": "0.01", "lot_size": "0.001", "maker_fee_bps": -1, "taker_fee_bps": 5})
    assert created.status == 201, created


def trader_client(gateway: GatewayProcess, username: str, **deposits: str) -> HttpClient:
    trader = gateway.create_trader(username, deposits)
    return gateway.client(trader["api_key"], trader["api_secret"])


def test_orders_through_rest_end_to_end(make_gateway) -> None:
    cluster, gateway = make_gateway()
    market(gateway)
    alice = trader_client(gateway, "alice", USDT="10000", BTC="10")
    bob = trader_client(gateway, "bob", USDT="10000", BTC="10")

    resting = alice.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "sell", "type": "limit",
                                             "price": "100.00", "quantity": "2.000", "client_order_id": "ask-1"})
    assert resting.status == 201 and resting.json["data"]["status"] == "NEW"
    taker = bob.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "buy", "type": "limit", "price": "101.00",
                                         "quantity": "0.500", "time_in_force": "IOC"})
    assert taker.status == 201
    filled = taker.json["data"]
    assert (filled["status"], filled["filled_quantity"]) == ("FILLED", "0.500")
    assert [(fill["price"], fill["quantity"], fill["liquidity"], fill["fee"], fill["fee_asset"])
            for fill in filled["fills"]] == [("100.00", "0.500", "taker", "0.00025000", "BTC")]

    order_id = resting.json["data"]["order_id"]
    assert alice.request("GET", f"{ORDERS}/{order_id}").json["data"]["filled_quantity"] == "0.500"
    amended = alice.request("PATCH", f"{ORDERS}/by-client-id/ask-1", {"quantity": "1.000"})
    assert amended.json["data"]["quantity"] == "1.000"
    book = gateway.client().raw("GET", "/api/v1/markets/BTC-USDT/orderbook?depth=5").json["data"]
    assert (book["bids"], book["asks"]) == ([], [["100.00", "0.500"]])
    with cluster.matcher(0).client() as matcher:
        assert matcher.request("snapshot", pair="BTC-USDT")["asks"] == [["100.00", "0.500"]]
    open_orders = alice.request("GET", f"{ORDERS}?status=open").json["data"]["items"]
    assert [order["order_id"] for order in open_orders] == [order_id]
    canceled = alice.request("DELETE", f"{ORDERS}/{order_id}")
    assert canceled.json["data"]["status"] == "CANCELED"
    balances = {balance["asset"]: balance for balance in
                bob.request("GET", "/api/v1/account/balances").json["data"]["items"]}
    assert balances["BTC"]["total"] == "10.49975000"  # 0.5 bought, 5 bps taker fee in BTC
    withdrawn = bob.request("POST", "/api/v1/account/withdrawals", {"asset": "BTC", "amount": "0.49975"})
    assert withdrawn.status == 201 and withdrawn.json["data"]["total"] == "10.00000000"
    rejected = bob.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "buy", "type": "limit",
                                            "price": "100.00", "quantity": "1000.000"})
    assert (rejected.status, rejected.code) == (422, "INSUFFICIENT_BALANCE")


def test_auth_failures_of_each_kind_and_replays_across_workers(make_gateway) -> None:
    _, gateway = make_gateway()
    trader = gateway.create_trader("alice")
    first, second = gateway.clients_on_distinct_workers()
    for client in (first, second):
        client.api_key, client.api_secret = trader["api_key"], trader["api_secret"]
    target = "/api/v1/account"

    assert first.request("GET", target).status == 200
    assert first.raw("GET", target).code == "MISSING_AUTHENTICATION"
    unknown = first.signed_headers("GET", target, b"")
    unknown["X-API-Key"] = "zmx_" + "0" * 32
    assert first.raw("GET", target, headers=unknown).code == "INVALID_API_KEY"
    wrong = first.signed_headers("GET", target + "?x=1", b"")
    assert first.raw("GET", target, headers=wrong).code == "INVALID_SIGNATURE"
    stale = first.signed_headers("GET", target, b"", timestamp=int(time.time() * 1000) - 60_000)
    stale_response = first.raw("GET", target, headers=stale)
    assert (stale_response.status, stale_response.code) == (401, "TIMESTAMP_OUT_OF_WINDOW")
    key_only = {"X-API-Key": trader["api_key"]}
    assert first.raw("GET", target, headers=key_only).code == "MISSING_AUTHENTICATION"

    # One signed request, sent to both workers: whichever sees it second refuses it.
    body = orjson.dumps({})
    headers = first.signed_headers("POST", f"{ORDERS}/cancel-all", body)
    assert first.raw("POST", f"{ORDERS}/cancel-all", body, headers).status == 200
    replay = second.raw("POST", f"{ORDERS}/cancel-all", body, headers)
    assert (replay.status, replay.code, replay.json["error"]["details"]) == (
        401, "INVALID_SIGNATURE", {"reason": "replayed"})
    admin = first.raw("GET", "/api/v1/admin/traders", headers={"Authorization": "Bearer nope"})
    assert (admin.status, admin.code) == (403, "FORBIDDEN")


def test_rate_limits_and_metrics_hold_across_workers(make_gateway) -> None:
    _, gateway = make_gateway(rate_limit_key_weight=10, rate_limit_window_seconds=3600)
    trader = gateway.create_trader("alice")
    clients = gateway.clients_on_distinct_workers()
    for client in clients:
        client.api_key, client.api_secret = trader["api_key"], trader["api_secret"]

    statuses = [clients[index % 2].request("GET", "/api/v1/account").status for index in range(14)]

    assert statuses.count(200) == 10 and statuses[10:] == [429] * 4
    limited = clients[1].request("GET", "/api/v1/account")
    assert limited.code == "RATE_LIMITED"
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    assert limited.headers["x-ratelimit-limit"] == "10" and limited.headers["x-ratelimit-remaining"] == "0"
    metrics = gateway.client().raw("GET", "/metrics").body.decode()
    counts = re.findall(r'zmx_gateway_requests_total\{method="GET",route="/api/v1/account",status="(\d+)"} (\S+)',
                        metrics)
    assert {status: float(count) for status, count in counts} == {"200": 10.0, "429": 5.0}
    assert re.search(r'zmx_gateway_rate_limited_total\{scope="key"} 5\.0', metrics)


def test_revocation_and_rotation_reach_every_worker_within_a_second(make_gateway) -> None:
    _, gateway = make_gateway()
    trader = gateway.create_trader("alice")
    clients = gateway.clients_on_distinct_workers()
    for client in clients:
        client.api_key, client.api_secret = trader["api_key"], trader["api_secret"]
        assert client.request("GET", "/api/v1/account").status == 200  # cached in both workers now

    rotated = gateway.client().admin("POST", f"/api/v1/admin/traders/{trader['trader_id']}/keys")
    started = time.monotonic()
    for client in clients:
        poll_until(lambda client=client: client.request("GET", "/api/v1/account").code == "INVALID_API_KEY",
                   5, "the old key refused")
    assert time.monotonic() - started < 1.5
    for client in clients:
        client.api_key, client.api_secret = rotated.json["data"]["api_key"], rotated.json["data"]["api_secret"]
        assert client.request("GET", "/api/v1/account").status == 200

    gateway.client().admin("DELETE", f"/api/v1/admin/traders/{trader['trader_id']}/keys")
    for client in clients:
        poll_until(lambda client=client: client.request("GET", "/api/v1/account").code == "INVALID_API_KEY",
                   1.5, "the revoked key refused")


def test_a_killed_matcher_is_503_and_the_gateway_recovers_when_it_is_back(make_gateway) -> None:
    cluster, gateway = make_gateway()
    market(gateway)
    client = trader_client(gateway, "alice", USDT="1000")
    order = {"pair": "BTC-USDT", "side": "buy", "type": "limit", "price": "10.00", "quantity": "1.000"}
    assert client.request("POST", ORDERS, order).status == 201

    cluster.matcher(0).kill()

    refused = poll_until(lambda: (lambda response: response if response.status == 503 else None)(
        client.request("POST", ORDERS, order)), 10, "503 from the gateway")
    assert refused.code == "MATCHER_UNAVAILABLE"
    health = gateway.client().raw("GET", "/health")
    assert health.status == 503 and health.json["status"] == "unavailable"
    assert gateway.popen.poll() is None

    cluster.matcher(0).start()

    poll_until(lambda: gateway.client().raw("GET", "/health").status == 200, 10, "a healthy gateway")
    poll_until(lambda: client.request("POST", ORDERS, order).status == 201, 10, "orders accepted again")
    open_orders = client.request("GET", ORDERS).json["data"]["items"]
    assert len(open_orders) == 2  # the journaled one from before the crash, and the new one
    assert gateway.popen.poll() is None


def test_a_stalled_matcher_is_504_never_resent_and_its_late_reply_dropped(make_gateway) -> None:
    cluster, gateway = make_gateway(matcher_timeout_seconds=1.0)
    market(gateway)
    trader = gateway.create_trader("alice", {"USDT": "1000"})
    # Both workers talk to the matcher before it stalls (a worker that never completed its
    # handshake would rightly answer 503: its frame could not leave).
    for warm in gateway.clients_on_distinct_workers():
        assert warm.raw("GET", "/api/v1/markets").status == 200
    client = gateway.client(trader["api_key"], trader["api_secret"])
    matcher = cluster.matcher(0)

    os.kill(matcher.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        stalled = client.request("POST", ORDERS, {"pair": "BTC-USDT", "side": "buy", "type": "limit",
                                                  "price": "10.00", "quantity": "1.000",
                                                  "client_order_id": "during-stall"})
        elapsed = time.monotonic() - started
    finally:
        os.kill(matcher.pid, signal.SIGCONT)

    assert (stalled.status, stalled.code) == (504, "MATCHER_TIMEOUT")
    assert 1.0 <= elapsed < 3.0
    # The matcher executed it once it woke up; the gateway never sent it again.
    found = poll_until(lambda: (lambda r: r if r.status == 200 else None)(
        client.request("GET", f"{ORDERS}/by-client-id/during-stall")), 10, "the order after the stall")
    assert found.json["data"]["status"] == "NEW"
    assert len(client.request("GET", ORDERS).json["data"]["items"]) == 1
    metrics = poll_until(lambda: (lambda text: text if re.search(
        r"zmx_gateway_matcher_unmatched_replies_total [1-9]", text) else None)(
        gateway.client().raw("GET", "/metrics").body.decode()), 10, "the late reply counted")
    assert 'op="place",outcome="timeout"' in metrics


def test_body_limit_security_headers_and_docs_over_gunicorn(make_gateway) -> None:
    _, gateway = make_gateway(max_body_bytes=2048)
    client = gateway.client()

    too_big = client.raw("POST", ORDERS, b"{" + b" " * 5000 + b"}", {"Content-Type": "application/json"})
    assert (too_big.status, too_big.code) == (413, "BODY_TOO_LARGE")
    response = gateway.client().raw("GET", "/api/v1/time", headers={"X-Request-Id": "trace-me-1"})
    assert response.headers["x-request-id"] == "trace-me-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    document = gateway.client().raw("GET", "/openapi.json").json
    assert "/api/v1/account/orders" in document["paths"]
    assert gateway.client().raw("GET", "/docs").status == 200
    assert gateway.client().raw("GET", "/docs/swagger-ui-bundle.js").status == 200
    assert '"request_id":"trace-me-1"' in gateway.log_text()


def test_zmx_admin_commands_share_the_store_and_the_matcher_with_the_gateway(make_gateway) -> None:
    cluster, gateway = make_gateway()

    def admin(*arguments: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "common.cli", "--config", str(gateway.config_path), "admin",
                               *arguments], cwd=REPO_ROOT, capture_output=True, timeout=60,
                              env={**{k: v for k, v in os.environ.items() if not k.startswith("ZMX_")},
                                   "PYTHONPATH": str(REPO_ROOT)})
        assert done.returncode == 0, done.stderr.decode()
        return orjson.loads(done.stdout)

    assert admin("create-market", "ETH-USDT", "--tick-size", "0.1", "--lot-size", "0.01",
                 "--quote-decimals", "6")["pair"] == "ETH-USDT"
    trader = admin("create-trader", "carol")
    assert admin("deposit", str(trader["trader_id"]), "USDT", "500")["total"] == "500.000000"
    client = gateway.client(trader["api_key"], trader["api_secret"])
    placed = client.request("POST", ORDERS, {"pair": "ETH-USDT", "side": "buy", "type": "limit",
                                             "price": "10.0", "quantity": "1.00"})
    assert placed.status == 201
    assert [t["username"] for t in admin("traders")["items"]] == ["carol"]
    assert admin("halt", "ETH-USDT")["status"] == "halted"
    refused = subprocess.run([sys.executable, "-m", "common.cli", "--config", str(gateway.config_path), "admin",
                              "create-trader", "carol"], cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert refused.returncode == 1 and b"ALREADY_EXISTS" in refused.stderr
    token = subprocess.run([sys.executable, "-m", "common.cli", "--config", str(gateway.config_path), "admin",
                            "token"], cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert token.stdout.decode().strip() == ADMIN_TOKEN

    # A bot key file: made once (0600), registered, usable on the bot socket, then revoked.
    key_file = cluster.data_dir / "carol.key"
    registered = admin("register-bot-key", str(trader["trader_id"]), "--out", str(key_file))
    key = orjson.loads(key_file.read_bytes())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert registered == {"trader_id": trader["trader_id"], "public_key": key["public_key"], "shards": [0],
                          "key_file": str(key_file)}
    assert admin("register-bot-key", str(trader["trader_id"]), "--out", str(key_file)) == registered
    bot = cluster.processes[0].client(curve=(key["public_key"].encode(), key["secret_key"].encode()))
    assert [order["client_order_id"] for order in bot.request("open_orders")] == [placed.json["data"]["client_order_id"]]
    assert admin("revoke-bot-key", "--", key["public_key"]) == {"public_key": key["public_key"], "shards": [0]}
    misused = subprocess.run([sys.executable, "-m", "common.cli", "--config", str(gateway.config_path), "admin",
                              "register-bot-key", "999", "--out", str(key_file)], cwd=REPO_ROOT,
                             capture_output=True, timeout=60)
    assert misused.returncode == 1 and b"NOT_FOUND" in misused.stderr


def test_without_a_configured_token_one_is_generated_printed_once_and_kept(make_cluster) -> None:
    cluster = make_cluster()
    cluster.start(0)
    first = GatewayProcess(cluster, "first", admin_token=None)
    first.start()
    first.stop()
    printed = re.findall(r"^  (\S{32,})$", first.log_text(), re.MULTILINE)
    assert len(printed) == 1
    token_file = cluster.data_dir / "gateway" / "admin.token"
    assert token_file.read_text().strip() == printed[0]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    second = GatewayProcess(cluster, "second", admin_token=None)
    second.start()
    try:
        assert printed[0] not in second.log_text()
        listed = HttpClient(second.port).raw("GET", "/api/v1/admin/traders",
                                             headers={"Authorization": f"Bearer {printed[0]}"})
        assert listed.status == 200
    finally:
        second.stop()
