"""Rate limits: the shared counter file, windows, weights, headers, and 429 through the app."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from gateway.ratelimit import RateLimiter, ReplayGuard, SharedCounters


@pytest.fixture
def counters(tmp_path: Path):
    shared = SharedCounters(tmp_path / "counters", slots=64)
    yield shared
    shared.close()


def test_a_counter_adds_weights_within_a_window_and_restarts_in_the_next(counters) -> None:
    assert counters.hit("key:a", 100, 1) == 1
    assert counters.hit("key:a", 100, 5) == 6
    assert counters.hit("key:b", 100, 2) == 2
    assert counters.hit("key:a", 110, 1) == 1
    assert counters.hit("key:a", 100, 1) == 1  # a window that is over counts alone, never resets the new one
    assert counters.hit("key:a", 110, 1) == 2


def test_counters_of_finished_windows_make_room_and_a_full_stripe_drops_its_oldest(tmp_path: Path) -> None:
    counters = SharedCounters(tmp_path / "tiny", slots=16)  # one stripe
    try:
        for index in range(16):
            counters.hit(f"key:{index}", 100, 1)
        assert counters.hit("key:late", 110, 1) == 1  # window 100 is over: its slots are free
        assert counters.evictions == 0
        for index in range(15):
            counters.hit(f"key:{index}", 110, 2)
        counters.hit("key:new", 110, 1)  # sixteen live counters already
        assert counters.evictions == 1
        assert counters.hit("key:new", 110, 1) == 2
    finally:
        counters.close()


def _hammer(path: str, hits: int) -> None:
    counters = SharedCounters(Path(path), slots=64)
    for _ in range(hits):
        counters.hit("key:shared", 1000, 1)
    counters.close()


def test_processes_mapping_the_same_file_share_exact_totals(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(str(path), 500)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * 4

    counters = SharedCounters(path, slots=64)
    try:
        assert counters.hit("key:shared", 1000, 0) == 2000
    finally:
        counters.close()


def test_the_limiter_decides_and_reports_headers(counters) -> None:
    now = [1_000_003.5]
    limiter = RateLimiter(counters, 10, key_limit=5, ip_limit=100, clock=lambda: now[0])

    first = limiter.charge("key", "k", 3)
    assert (first.allowed, first.limit, first.remaining, first.reset_seconds) == (True, 5, 2, 7)
    assert first.headers() == {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "7"}
    second = limiter.charge("key", "k", 3)
    assert (second.allowed, second.remaining) == (False, 0)
    assert second.headers()["Retry-After"] == "7"
    assert limiter.charge("ip", "k", 50).allowed  # scopes are separate budgets
    now[0] += 7
    assert limiter.charge("key", "k", 5).allowed  # a new window


def test_a_failing_backend_lets_requests_through() -> None:
    class Broken:
        def hit(self, bucket, window_start, weight):
            raise OSError("disk gone")

    assert RateLimiter(Broken(), 10, 1, 1).charge("key", "k", 100).allowed
    assert ReplayGuard(Broken()).first_use("abc", 1)


def test_the_replay_guard_accepts_a_signature_once(counters) -> None:
    guard = ReplayGuard(counters)
    assert guard.first_use("sig-1", 1700000000000)
    assert not guard.first_use("sig-1", 1700000000000)
    assert guard.first_use("sig-2", 1700000000000)


# ---------------------------------------------------------------- through the app


def test_a_key_over_its_budget_gets_429_with_retry_after(make_gateway) -> None:
    gateway = make_gateway(rate_limit_key_weight=3)
    gateway.create_market()
    alice = gateway.trader("alice", {"USDT": "1000"})
    bob = gateway.trader("bob")

    statuses = [alice.get("/api/v1/account").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    limited = alice.get("/api/v1/account")
    assert limited.json["error"]["code"] == "RATE_LIMITED"
    assert limited.json["error"]["details"]["scope"] == "key"
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert bob.get("/api/v1/account").status_code == 200  # another key, another budget
    gateway.clock.advance(10)
    assert alice.get("/api/v1/account").status_code == 200


def test_public_routes_are_limited_per_address_and_weighted(make_gateway) -> None:
    gateway = make_gateway(rate_limit_ip_weight=12)
    gateway.create_market()

    assert gateway.client.simulate_get("/api/v1/exchange-info").status_code == 200  # weight 5
    assert gateway.client.simulate_get("/api/v1/exchange-info").status_code == 200
    assert gateway.client.simulate_get("/api/v1/exchange-info").status_code == 429
    assert gateway.client.simulate_get("/health").status_code == 200  # never limited
    other = gateway.client.simulate_get("/api/v1/exchange-info", remote_addr="10.0.0.2")
    assert other.status_code == 200


def test_failed_authentication_costs_the_address(make_gateway) -> None:
    gateway = make_gateway(rate_limit_ip_weight=3)

    codes = [gateway.client.simulate_get("/api/v1/account", headers={"X-API-Key": "zmx_" + "0" * 32}).status_code
             for _ in range(4)]
    admin = gateway.client.simulate_get("/api/v1/admin/traders", headers={"Authorization": "Bearer wrong"})

    assert codes == [401, 401, 401, 429]
    assert admin.status_code == 429


def test_the_store_backend_counts_in_the_store(make_gateway) -> None:
    gateway = make_gateway(rate_limit_backend="store", rate_limit_key_weight=2)
    gateway.create_market()
    alice = gateway.trader("alice")

    assert [alice.get("/api/v1/account").status_code for _ in range(3)] == [200, 200, 429]
    buckets = {bucket for bucket, _ in gateway.store.counters}
    assert f"key:{alice.api_key}" in buckets
    assert any(bucket.startswith("sig:") for bucket in buckets)
