"""Public routes: health, metrics, time, exchange info, markets, assets, order books."""

from __future__ import annotations

import os
import time
from typing import Any

import falcon
import orjson

from common.types import (
    ORDER_TYPE_BY_WIRE,
    STATUS_BY_WIRE,
    STP_BY_WIRE,
    TIME_IN_FORCE_BY_WIRE,
    RejectCode,
)
from gateway import metrics as metrics_module
from gateway.envelope import ApiError, now_ms, ok, page
from gateway.operations import ADMIN, operation, operation_of
from gateway.schemas import CANDLE_INTERVALS, DEPTH, depth_weight, pair_from_path, ref
from gateway.services import Services

HEALTH_TIMEOUT_SECONDS = 1.0
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


class Health:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Liveness and matcher reachability", envelope=False, rate_limited=False,
               response=ref("Health"), tags=("public",),
               description="200 with status ok when every matcher shard answers a ping; 503 with status "
                           "unavailable otherwise. Not enveloped, not rate limited.")
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        engine = self.services.engine
        timeout = min(HEALTH_TIMEOUT_SECONDS, self.services.config.gateway.matcher_timeout_seconds)
        started = time.perf_counter()
        results = engine.call_many([(shard_id, "ping", None) for shard_id in engine.shard_ids], timeout)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        shards = []
        for shard_id, result in zip(engine.shard_ids, results):
            if isinstance(result, ApiError):
                status = "timeout" if result.code is RejectCode.MATCHER_TIMEOUT else "unavailable"
                shards.append({"shard_id": shard_id, "status": status, "round_trip_ms": None})
            else:
                shards.append({"shard_id": shard_id, "status": "ok", "round_trip_ms": elapsed_ms})
        healthy = all(shard["status"] == "ok" for shard in shards)
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"status": "ok" if healthy else "unavailable", "shards": shards,
                                  "pid": os.getpid(), "ts": now_ms()})


class Metrics:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Prometheus metrics of every worker", envelope=False, rate_limited=False,
               content_type="text/plain", response={"type": "string"}, tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = metrics_module.CONTENT_TYPE
        resp.data = self.services.metrics.render()


class ServerTime:
    @operation(summary="Server time", response=ref("Time"), tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, {"server_time": now_ms()})


def markets_and_assets(services: Services) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ask every shard for its markets and assets; markets carry their shard id."""
    engine = services.engine
    markets, assets = [], {}
    for shard_id, result in zip(engine.shard_ids, engine.call_many([(s, "markets", None) for s in engine.shard_ids])):
        if isinstance(result, ApiError):
            raise result
        markets += [{**market, "shard_id": shard_id} for market in result["markets"]]
        for asset in result["assets"]:
            assets.setdefault(asset["asset"], asset)
    markets.sort(key=lambda market: market["pair"])
    return markets, sorted(assets.values(), key=lambda asset: asset["asset"])


class ExchangeInfo:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._weights: dict[str, str] | None = None

    @operation(summary="Markets, assets, order types, TIFs, STP modes, candle intervals, rate limits",
               weight=5, matcher=True, response=ref("ExchangeInfo"), tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        services = self.services
        settings = services.config.gateway
        markets, assets = markets_and_assets(services)
        ok(resp, {
            "server_time": now_ms(),
            "markets": markets,
            "assets": assets,
            "order_types": list(ORDER_TYPE_BY_WIRE),
            "time_in_force": list(TIME_IN_FORCE_BY_WIRE),
            "stp_modes": list(STP_BY_WIRE),
            "order_statuses": list(STATUS_BY_WIRE),
            "candle_intervals": list(CANDLE_INTERVALS),
            "receive_window_ms": settings.receive_window_ms,
            "rate_limits": {
                "window_seconds": settings.rate_limit_window_seconds,
                "key_weight": settings.rate_limit_key_weight,
                "ip_weight": settings.rate_limit_ip_weight,
                "weights": self.weights(),
            },
        })

    def weights(self) -> dict[str, str]:
        """Return each rate-limited route's weight, from the routes' declarations."""
        if self._weights is None:
            weights = {}
            for template, resource in self.services.routes:
                for method in METHODS:
                    declared = operation_of(resource, method)
                    if declared is None or declared.auth == ADMIN or not declared.rate_limited \
                            or not declared.documented:
                        continue
                    weights[f"{method} {template}"] = declared.weight_note or str(declared.weight)
            self._weights = weights
        return self._weights


class Markets:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Every market", matcher=True, response=ref("MarketPage"), tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, page(markets_and_assets(self.services)[0]))


class Assets:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Every asset and its decimals", matcher=True, response=ref("AssetPage"), tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ok(resp, page(markets_and_assets(self.services)[1]))


class OrderBook:
    def __init__(self, services: Services) -> None:
        self.services = services

    @operation(summary="Order book levels, best price first", query=(DEPTH,), weight=depth_weight,
               weight_note="1 (depth <= 100), 5 (<= 500), 10", matcher=True, response=ref("OrderBook"),
               errors=(RejectCode.UNKNOWN_MARKET,), tags=("public",))
    def on_get(self, req: falcon.Request, resp: falcon.Response, pair: str) -> None:
        pair = pair_from_path(pair)
        services = self.services
        ok(resp, services.call(services.shards.for_pair(pair), "snapshot",
                               {"pair": pair, "depth": req.context.query["depth"]}))

