"""A gateway app over an in-process matcher and an in-memory store, and signed clients."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from falcon import testing

from common.config import Config, GatewayConfig, ShardConfig
from gateway.app import build
from gateway.ratelimit import SharedCounters
from tests.unit.gateway.fakes import FakeStore, InProcessEngine

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Clock:
    """Wall and monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()
        self.mono = 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


class Gateway:
    """One app under test and what it runs on."""

    def __init__(self, config: Config, engine: InProcessEngine, store: FakeStore, clock: Clock) -> None:
        self.config = config
        self.engine = engine
        self.store = store
        self.clock = clock
        self.app, self.services = build(config, engine, store, admin_token=config.admin_token,
                                        clock=clock.time)
        self.services.authenticator.monotonic = clock.monotonic
        self.client = testing.TestClient(self.app)

    def admin(self, method: str, path: str, body: Any = None, **kwargs: Any) -> testing.Result:
        return self.client.simulate_request(method, path, json=body, headers=ADMIN, **kwargs)

    def create_market(self, pair: str = "BTC-USDT", **fields: Any) -> dict[str, Any]:
        body = {"pair": pair, "tick_size": "0.01", "lot_size": "0.001", **fields}
        result = self.admin("POST", "/api/v1/admin/markets", body)
        assert result.status_code == 201, result.json
        return result.json["data"]

    def trader(self, username: str = "alice", deposits: dict[str, str] | None = None) -> "Trader":
        result = self.admin("POST", "/api/v1/admin/traders", {"username": username})
        assert result.status_code == 201, result.json
        data = result.json["data"]
        trader = Trader(self, data["trader_id"], data["api_key"], data["api_secret"])
        for asset, amount in (deposits or {}).items():
            deposited = self.admin("POST", "/api/v1/admin/deposits",
                                   {"trader_id": trader.trader_id, "asset": asset, "amount": amount})
            assert deposited.status_code == 201, deposited.json
        return trader


class Trader:
    """Signs requests the way the docs tell API users to."""

    def __init__(self, gateway: Gateway, trader_id: int, api_key: str, api_secret: str) -> None:
        self.gateway = gateway
        self.trader_id = trader_id
        self.api_key = api_key
        self.api_secret = api_secret

    def headers(self, method: str, target: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        if timestamp is None:
            timestamp = int(self.gateway.clock.time() * 1000)
        message = f"{timestamp}{method}{target}".encode() + body
        signature = hmac.new(self.api_secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-API-Key": self.api_key, "X-Timestamp": str(timestamp), "X-Signature": signature}

    def request(self, method: str, path: str, body: Any = None, query: str = "", raw: bytes | None = None,
                headers: dict[str, str] | None = None, timestamp: int | None = None) -> testing.Result:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
        target = path + (f"?{query}" if query else "")
        all_headers = {**self.headers(method, target, data, timestamp), "Content-Type": "application/json",
                       **(headers or {})}
        result = self.gateway.client.simulate_request(method, path, query_string=query or None, body=data,
                                                      headers=all_headers)
        # Each request gets its own millisecond: identical requests would be replays.
        self.gateway.clock.advance(0.001)
        return result

    def get(self, path: str, query: str = "") -> testing.Result:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> testing.Result:
        return self.request("POST", path, body)

    def place(self, **order: Any) -> testing.Result:
        fields = {"pair": "BTC-USDT", "side": "buy", "type": "limit", "price": "100.00", "quantity": "1.000"}
        fields.update(order)
        return self.post("/api/v1/account/orders", {name: value for name, value in fields.items()
                                                    if value is not None})


def make_config(data_dir: Path, shards: tuple[ShardConfig, ...] | None = None, **gateway: Any) -> Config:
    gateway.setdefault("rate_limit_window_seconds", 10)  # short windows keep the rate-limit tests' clocks short
    config = Config(data_dir=data_dir, admin_token=ADMIN_TOKEN, gateway=GatewayConfig(**gateway))
    if shards is not None:
        config = dataclasses.replace(config, shards=shards)
    return config


@pytest.fixture
def make_gateway(tmp_path: Path) -> Callable[..., Gateway]:
    """Give the test `make_gateway(shards=None, **gateway settings)`."""
    opened: list[Gateway] = []

    def make(shards: tuple[ShardConfig, ...] | None = None, **gateway: Any) -> Gateway:
        config = make_config(tmp_path / f"data-{len(opened)}", shards, **gateway)
        engine = InProcessEngine([shard.shard_id for shard in config.shards])
        made = Gateway(config, engine, FakeStore(), Clock())
        opened.append(made)
        return made

    yield make
    for made in opened:
        for counters in (made.services.rate_limiter.counters, made.services.authenticator.replay_guard.counters):
            if isinstance(counters, SharedCounters):
                counters.close()
        made.store.close()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
def market(gateway: Gateway) -> dict[str, Any]:
    return gateway.create_market("BTC-USDT", taker_fee_bps=10)


@pytest.fixture
def alice(gateway: Gateway, market: dict[str, Any]) -> Trader:
    return gateway.trader("alice", {"USDT": "100000", "BTC": "100"})


@pytest.fixture
def bob(gateway: Gateway, market: dict[str, Any]) -> Trader:
    return gateway.trader("bob", {"USDT": "100000", "BTC": "100"})
