"""Authentication: every way a trader or admin request can fail, replays, key-only mode, caching."""

from __future__ import annotations

import pytest

ACCOUNT = "/api/v1/account"


def code_of(result) -> tuple[int, str]:
    return result.status_code, result.json["error"]["code"]


def test_a_signed_request_is_accepted(alice) -> None:
    result = alice.get(ACCOUNT)
    assert result.status_code == 200 and result.json["data"]["trader_id"] == alice.trader_id


def test_no_credentials_is_missing_authentication(gateway, alice) -> None:
    assert code_of(gateway.client.simulate_get(ACCOUNT)) == (401, "MISSING_AUTHENTICATION")


@pytest.mark.parametrize("dropped", ["X-Timestamp", "X-Signature"])
def test_a_missing_signature_header_is_missing_authentication(gateway, alice, dropped: str) -> None:
    headers = alice.headers("GET", ACCOUNT, b"")
    del headers[dropped]

    result = gateway.client.simulate_get(ACCOUNT, headers=headers)

    assert code_of(result) == (401, "MISSING_AUTHENTICATION")
    assert result.json["error"]["details"] == {"header": dropped}


@pytest.mark.parametrize("api_key", ["zmx_" + "0" * 32, "zmx_short", "not-a-key", "ZMX_" + "a" * 32])
def test_an_unknown_or_malformed_key_is_invalid_api_key(gateway, alice, api_key: str) -> None:
    headers = {**alice.headers("GET", ACCOUNT, b""), "X-API-Key": api_key}
    assert code_of(gateway.client.simulate_get(ACCOUNT, headers=headers)) == (401, "INVALID_API_KEY")


@pytest.mark.parametrize("tamper", ["method", "path", "query", "body", "secret", "garbage"])
def test_a_signature_over_anything_else_is_invalid_signature(gateway, alice, tamper: str) -> None:
    method, target, body = "POST", "/api/v1/account/orders/cancel-all", b'{"pair":"BTC-USDT"}'
    signed = {"method": ("PUT", target, body), "path": (method, "/api/v1/account/orders", body),
              "query": (method, target + "?x=1", body), "body": (method, target, b"{}")}.get(tamper,
                                                                                         (method, target, body))
    headers = alice.headers(*signed)
    if tamper == "secret":
        alice_secret, alice.api_secret = alice.api_secret, "0" * 64
        headers = alice.headers(method, target, body)
        alice.api_secret = alice_secret
    if tamper == "garbage":
        headers["X-Signature"] = "zz\u00e9"

    result = gateway.client.simulate_post(target, body=body, headers=headers)

    assert code_of(result) == (401, "INVALID_SIGNATURE")


def test_the_signature_covers_the_query_string(gateway, alice) -> None:
    target = "/api/v1/account/orders"
    headers = alice.headers("GET", target + "?status=open", b"")

    assert gateway.client.simulate_get(target, query_string="status=open", headers=headers).status_code == 200
    headers = alice.headers("GET", target + "?status=open&limit=1", b"")
    result = gateway.client.simulate_get(target, query_string="status=open&limit=2", headers=headers)
    assert code_of(result) == (401, "INVALID_SIGNATURE")


def test_uppercase_hex_signatures_are_accepted(gateway, alice) -> None:
    headers = alice.headers("GET", ACCOUNT, b"")
    headers["X-Signature"] = headers["X-Signature"].upper()
    assert gateway.client.simulate_get(ACCOUNT, headers=headers).status_code == 200


@pytest.mark.parametrize("offset_ms", [-5001, 5001, -3_600_000])
def test_a_timestamp_outside_the_window_is_refused(gateway, alice, offset_ms: int) -> None:
    now = int(gateway.clock.time() * 1000)
    result = alice.request("GET", ACCOUNT, timestamp=now + offset_ms)
    assert code_of(result) == (401, "TIMESTAMP_OUT_OF_WINDOW")
    assert result.json["error"]["details"]["receive_window_ms"] == 5000


@pytest.mark.parametrize("timestamp", ["", "abc", "1.5e12", "-1", "9" * 30, "\u0661\u0662"])
def test_a_malformed_timestamp_is_refused(gateway, alice, timestamp: str) -> None:
    headers = {**alice.headers("GET", ACCOUNT, b""), "X-Timestamp": timestamp}
    assert code_of(gateway.client.simulate_get(ACCOUNT, headers=headers))[1] in (
        "TIMESTAMP_OUT_OF_WINDOW", "MISSING_AUTHENTICATION")


def test_a_timestamp_inside_the_window_is_accepted(gateway, alice) -> None:
    now = int(gateway.clock.time() * 1000)
    assert alice.request("GET", ACCOUNT, timestamp=now - 4900).status_code == 200
    assert alice.request("GET", ACCOUNT, timestamp=now + 4900).status_code == 200


def test_a_replayed_signature_is_refused_even_within_the_window(gateway, alice) -> None:
    body = b'{"pair":"BTC-USDT","side":"buy","type":"limit","price":"100.00","quantity":"1.000"}'
    headers = alice.headers("POST", "/api/v1/account/orders", body)

    first = gateway.client.simulate_post("/api/v1/account/orders", body=body, headers=headers)
    replay = gateway.client.simulate_post("/api/v1/account/orders", body=body, headers=headers)

    assert first.status_code == 201
    assert code_of(replay) == (401, "INVALID_SIGNATURE")
    assert replay.json["error"]["details"] == {"reason": "replayed"}
    assert [order["order_id"] for order in alice.get("/api/v1/account/orders").json["data"]["items"]] == [
        first.json["data"]["order_id"]]


def test_a_stale_replay_is_refused_for_its_timestamp(gateway, alice) -> None:
    headers = alice.headers("GET", ACCOUNT, b"")
    assert gateway.client.simulate_get(ACCOUNT, headers=headers).status_code == 200
    gateway.clock.advance(6)
    assert code_of(gateway.client.simulate_get(ACCOUNT, headers=headers)) == (401, "TIMESTAMP_OUT_OF_WINDOW")


def test_key_only_requests_are_refused_by_default(gateway, alice) -> None:
    result = gateway.client.simulate_get(ACCOUNT, headers={"X-API-Key": alice.api_key})
    assert code_of(result) == (401, "MISSING_AUTHENTICATION")


def test_key_only_mode_accepts_the_key_alone_but_still_checks_signatures_sent(make_gateway) -> None:
    gateway = make_gateway(allow_key_only=True)
    gateway.create_market()
    alice = gateway.trader("alice")

    assert gateway.client.simulate_get(ACCOUNT, headers={"X-API-Key": alice.api_key}).status_code == 200
    assert code_of(gateway.client.simulate_get(ACCOUNT, headers={"X-API-Key": "zmx_" + "1" * 32})) == (
        401, "INVALID_API_KEY")
    bad = {**alice.headers("GET", ACCOUNT, b""), "X-Signature": "00"}
    assert code_of(gateway.client.simulate_get(ACCOUNT, headers=bad)) == (401, "INVALID_SIGNATURE")


def test_rotation_stops_the_old_key_after_the_cache_time(gateway, alice) -> None:
    assert alice.get(ACCOUNT).status_code == 200
    rotated = gateway.admin("POST", f"/api/v1/admin/traders/{alice.trader_id}/keys")
    assert rotated.status_code == 201
    new_key, new_secret = rotated.json["data"]["api_key"], rotated.json["data"]["api_secret"]
    assert new_key != alice.api_key

    gateway.clock.advance(gateway.config.gateway.key_cache_seconds)

    assert code_of(alice.get(ACCOUNT)) == (401, "INVALID_API_KEY")
    alice.api_key, alice.api_secret = new_key, new_secret
    assert alice.get(ACCOUNT).status_code == 200


def test_revocation_stops_the_key_after_the_cache_time(gateway, alice) -> None:
    assert alice.get(ACCOUNT).status_code == 200
    revoked = gateway.admin("DELETE", f"/api/v1/admin/traders/{alice.trader_id}/keys")
    assert revoked.json["data"] == {"trader_id": alice.trader_id, "revoked": 1}

    gateway.clock.advance(gateway.config.gateway.key_cache_seconds)

    assert code_of(alice.get(ACCOUNT)) == (401, "INVALID_API_KEY")


def test_key_lookups_are_cached_for_a_moment_including_unknown_keys(gateway, alice) -> None:
    alice.get(ACCOUNT)
    lookups = gateway.store.lookups
    for _ in range(5):
        alice.get(ACCOUNT)
    unknown = {**alice.headers("GET", ACCOUNT, b""), "X-API-Key": "zmx_" + "9" * 32}
    for _ in range(5):
        gateway.client.simulate_get(ACCOUNT, headers=unknown)
    assert gateway.store.lookups == lookups + 1


def test_the_api_secret_is_derived_not_stored(gateway, alice) -> None:
    stored = repr(gateway.store.keys) + repr(gateway.store.traders)
    assert alice.api_secret not in stored and alice.api_key not in stored


def test_a_store_outage_is_503_store_unavailable(gateway, alice) -> None:
    gateway.store.unavailable = True
    gateway.clock.advance(1)
    assert code_of(alice.get(ACCOUNT)) == (503, "STORE_UNAVAILABLE")


# ---------------------------------------------------------------- admin token


@pytest.mark.parametrize(("authorization", "expected"), [
    (None, (401, "MISSING_AUTHENTICATION")),
    ("", (401, "MISSING_AUTHENTICATION")),
    ("Basic dXNlcjpwYXNz", (401, "MISSING_AUTHENTICATION")),
    ("Bearer", (401, "MISSING_AUTHENTICATION")),
    ("Bearer wrong-token", (403, "FORBIDDEN")),
    ("Bearer test-admin-token-012345678", (403, "FORBIDDEN")),
    ("Bearer t\u00e9st", (403, "FORBIDDEN")),
])
def test_admin_routes_need_the_exact_token(gateway, authorization, expected) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    result = gateway.client.simulate_get("/api/v1/admin/traders", headers=headers)
    assert code_of(result) == expected


def test_a_trader_key_does_not_open_admin_routes(gateway, alice) -> None:
    headers = alice.headers("GET", "/api/v1/admin/traders", b"")
    assert code_of(gateway.client.simulate_get("/api/v1/admin/traders", headers=headers)) == (
        401, "MISSING_AUTHENTICATION")


def test_without_an_admin_token_the_admin_api_is_closed(make_gateway, tmp_path) -> None:
    import dataclasses

    from gateway.app import create_app
    from tests.unit.gateway.fakes import FakeStore, InProcessEngine
    from falcon import testing

    config = dataclasses.replace(make_gateway().config, admin_token=None, data_dir=tmp_path / "no-token")
    client = testing.TestClient(create_app(config, InProcessEngine(), FakeStore()))

    result = client.simulate_get("/api/v1/admin/traders", headers={"Authorization": "Bearer anything"})

    assert code_of(result) == (403, "FORBIDDEN")
