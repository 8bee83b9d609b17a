"""What resources share: configuration, the engine client, the store, routing, helpers.

`create_app` builds one `Services` and hands it to every resource. It is also the hook for
routes added by other modules: `gateway.history.add_routes(services)`, when that module
exists, registers its resources with `services.add_route` (so they are in the OpenAPI
document), may add responders to registered ones (`services.resource`), and may set
`services.closed_orders` to serve `GET /api/v1/account/orders` with `status=closed|all`. Such resources use the same `@operation` declarations: the
guard then authenticates (`req.context.trader_id`), rate-limits and parses the query
(`req.context.query`) for them, and `gateway.envelope.ok` / `page` shape the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from common.config import Config
from gateway.admin import Admin
from gateway.auth import Authenticator
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.routing import Shards

# closed_orders(trader_id, status, pair, limit, cursor) -> page dict
ClosedOrders = Callable[[int, str, "str | None", int, "str | None"], dict[str, Any]]


class Services:
    """The gateway's shared objects, and the route registry the OpenAPI document reads."""

    def __init__(self, app: falcon.App, config: Config, engine, store, *, metrics: Metrics,
                 authenticator: Authenticator, rate_limiter: RateLimiter, master_secret: bytes) -> None:
        self.app = app
        self.config = config
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.shards = Shards(config)
        self.admin = Admin(engine, store, self.shards, master_secret)
        self.closed_orders: ClosedOrders | None = None
        self.routes: list[tuple[str, object]] = []

    def add_route(self, template: str, resource: object) -> None:
        """Register a resource; create_app adds every registered route to Falcon at the end."""
        if any(existing == template for existing, _ in self.routes):
            raise ValueError(f"{template} is registered already; extend it through resource()")
        self.routes.append((template, resource))

    def resource(self, template: str) -> object:
        """Return the resource registered for `template`, to give it more responders.

        For example the history module adds `on_get` to `/api/v1/account/withdrawals`,
        whose `on_post` is here: `services.resource(path).on_get = history.on_get`.
        """
        for existing, resource in self.routes:
            if existing == template:
                return resource
        raise KeyError(template)

    def call(self, shard_id: int, op: str, fields: dict[str, Any] | None = None) -> Any:
        return self.engine.call(shard_id, op, fields)


def trader_order(order: dict[str, Any]) -> dict[str, Any]:
    """Return a matcher order as the REST API shows it (the caller's account id is implied)."""
    order.pop("account_id", None)
    return order
