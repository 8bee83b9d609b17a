"""The app factory: `create_app(config, engine_client, store)` wires the REST API.

`get_app()` builds everything from the configuration (the engine client, the store, the
secrets) for a WSGI server pointed at it; `zmx gateway` (gateway/server.py) does the same
in each gunicorn worker after fork.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path

import falcon

from common.config import Config, load_config
from common.store import StoreError, StoreUnavailable, open_store
from common.types import RejectCode
from gateway import binance, keys
from gateway.auth import Authenticator
from gateway.engine_client import EngineClient
from gateway.envelope import ApiError, handle_api_error, handle_falcon_error, handle_unexpected, render_error
from gateway.metrics import Metrics
from gateway.middleware import GuardMiddleware, RequestMiddleware
from gateway.openapi import build_document
from gateway.ratelimit import Counters, RateLimiter, ReplayGuard, SharedCounters, StoreCounters
from gateway.resources import account, admin, docs, public, web
from gateway.services import Services

API = "/api/v1"
RATE_LIMIT_SLOTS = 1 << 16
SIGNATURE_SLOTS = 1 << 18
EXPOSED_HEADERS = ("X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                   "Retry-After")


def create_app(config: Config, engine_client, store, *, admin_token: str | None = None,
               master_secret: bytes | None = None, metrics: Metrics | None = None,
               counters: Counters | None = None, signature_counters: Counters | None = None,
               clock: Callable[[], float] = time.time) -> falcon.App:
    """Return the WSGI app serving the REST API over `engine_client` and `store`."""
    return build(config, engine_client, store, admin_token=admin_token, master_secret=master_secret,
                 metrics=metrics, counters=counters, signature_counters=signature_counters, clock=clock)[0]


def build(config: Config, engine_client, store, *, admin_token: str | None = None,
          master_secret: bytes | None = None, metrics: Metrics | None = None, counters: Counters | None = None,
          signature_counters: Counters | None = None,
          clock: Callable[[], float] = time.time) -> tuple[falcon.App, Services]:
    """Return the app and the services behind it (for whoever has to close them)."""
    settings = config.gateway
    metrics = metrics or Metrics()
    if admin_token is None:
        admin_token = keys.configured_admin_token(config)
    if master_secret is None:
        master_secret = keys.load_master_secret(config)
    if counters is None or signature_counters is None:
        if settings.rate_limit_backend == "store":
            counters = counters or StoreCounters(store)
            signature_counters = signature_counters or StoreCounters(store)
        else:
            directory = config.data_dir / "gateway"
            counters = counters or SharedCounters(directory / "ratelimit.counters", RATE_LIMIT_SLOTS)
            # A signature stays interesting while a request stamped with its timestamp may arrive.
            signature_counters = signature_counters or SharedCounters(
                directory / "signatures.counters", SIGNATURE_SLOTS, retention=2 * settings.receive_window_ms)
    rate_limiter = RateLimiter(counters, settings.rate_limit_window_seconds, settings.rate_limit_key_weight,
                               settings.rate_limit_ip_weight, clock)
    authenticator = Authenticator(
        store, master_secret, admin_token, receive_window_ms=settings.receive_window_ms,
        allow_key_only=settings.allow_key_only, key_cache_seconds=settings.key_cache_seconds,
        replay_guard=ReplayGuard(signature_counters), clock=clock,
    )
    origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    app = falcon.App(middleware=[
        RequestMiddleware(settings.max_body_bytes, metrics),
        falcon.CORSMiddleware(allow_origins=origins, expose_headers=list(EXPOSED_HEADERS)),
        GuardMiddleware(authenticator, rate_limiter, metrics),
    ])
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_falcon_error)
    app.add_error_handler(StoreError, _handle_store_error)
    app.add_error_handler(ApiError, handle_api_error)
    services = Services(app, config, engine_client, store, metrics=metrics, authenticator=authenticator,
                        rate_limiter=rate_limiter, master_secret=master_secret)
    openapi = docs.OpenApi()
    routes = [
        ("/health", public.Health(services)),
        ("/metrics", public.Metrics(services)),
        ("/openapi.json", openapi),
        ("/docs", docs.SwaggerUi()),
        ("/docs/{filename}", docs.SwaggerAsset()),
        ("/", web.MarketPage(config)),
        ("/static/{path:path}", web.StaticFile()),
        (f"{API}/time", public.ServerTime()),
        (f"{API}/exchange-info", public.ExchangeInfo(services)),
        (f"{API}/markets", public.Markets(services)),
        (f"{API}/assets", public.Assets(services)),
        (f"{API}/markets/{{pair}}/orderbook", public.OrderBook(services)),
        (f"{API}/account", account.Account(services)),
        (f"{API}/account/balances", account.Balances(services)),
        (f"{API}/account/orders", account.Orders(services)),
        (f"{API}/account/orders/cancel-all", account.CancelAll(services)),
        (f"{API}/account/orders/by-client-id/{{client_order_id}}", account.OrderByClientId(services)),
        (f"{API}/account/orders/{{order_id}}", account.Order(services)),
        (f"{API}/account/withdrawals", account.Withdrawals(services)),
        (f"{API}/admin/traders", admin.Traders(services)),
        (f"{API}/admin/traders/{{trader_id}}/keys", admin.TraderKeys(services)),
        (f"{API}/admin/deposits", admin.Deposits(services)),
        (f"{API}/admin/markets", admin.Markets(services)),
        (f"{API}/admin/markets/{{pair}}/halt", admin.MarketHalt(services)),
        (f"{API}/admin/markets/{{pair}}/resume", admin.MarketResume(services)),
    ]
    for template, resource in routes:
        services.add_route(template, resource)
    _add_history_routes(services)
    for template, resource in services.routes:
        app.add_route(template, resource)
    binance.mount(services)  # /api/v3, the Binance-compatible subset
    openapi.set_document(build_document(services.routes))
    return app, services


def _add_history_routes(services: Services) -> None:
    """Let gateway/history.py (the store-backed history routes) add its resources, if present."""
    try:
        history = importlib.import_module("gateway.history")
    except ModuleNotFoundError as error:
        if error.name != "gateway.history":
            raise  # the module exists but something it imports does not
        return
    history.add_routes(services)


def _handle_store_error(req: falcon.Request, resp: falcon.Response, error: StoreError, params: dict) -> None:
    if isinstance(error, StoreUnavailable):
        render_error(resp, ApiError(RejectCode.STORE_UNAVAILABLE, "the history store is not reachable"))
    else:
        handle_unexpected(req, resp, error, params)


def app_from_config(config: Config, multiprocess_dir: Path | None = None) -> tuple[falcon.App, Services]:
    """Build the app and everything it talks to from the configuration alone."""
    metrics = Metrics(multiprocess_dir)
    engine = EngineClient({shard.shard_id: shard.command_endpoint for shard in config.shards},
                          config.gateway.matcher_timeout_seconds, metrics=metrics)
    store = open_store(config.effective_store_url(), max_connections=max(1, config.gateway.threads))
    engine.connect()  # in the worker, after fork: the handshakes happen before the first request
    return build(config, engine, store, metrics=metrics)


def get_app(config_path: str | None = None) -> falcon.App:
    """Return the app for the configuration file (or defaults and ZMX_* variables only)."""
    return app_from_config(load_config(config_path))[0]
