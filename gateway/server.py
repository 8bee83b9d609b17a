"""`zmx gateway`: the REST app under gunicorn, N gthread workers.

The master never builds the app: each worker does, after fork (`preload_app` is off), so
every worker opens its own store connections and its own DEALERs. Before the first
worker starts, the master makes sure the admin token (generated and printed once when
none is configured) and the key-derivation secret exist, so every worker reads the same
ones, and gives prometheus_client a fresh multiprocess directory for the metrics.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.config import KNOWN_SETTINGS as _SETTINGS
from gunicorn.glogging import Logger as GunicornLogger

from common.config import Config
from common.logs import JsonFormatter
from gateway import keys

log = logging.getLogger("zmx.gateway")
KNOWN_SETTINGS = frozenset(setting.name for setting in _SETTINGS)

KEEPALIVE_SECONDS = 5
GRACEFUL_TIMEOUT_SECONDS = 10
WORKER_TIMEOUT_SECONDS = 30
# prometheus_client reads this variable when it is first imported (hence set here, before
# anything imports gateway.metrics); it is the library's only switch for multiprocess mode.
PROMETHEUS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class JsonLogger(GunicornLogger):
    """gunicorn's own log lines (workers booting, exiting) as JSON, like every zmx log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter("gateway"))


class GatewayApplication(BaseApplication):
    """gunicorn serving the WSGI app that `loader` builds in each worker."""

    def __init__(self, options: dict[str, Any], loader: Callable[[], Any]) -> None:
        self.options = options
        self.loader = loader
        self.services = None
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return self.loader()


def bind_address(config: Config) -> str:
    host = config.gateway.host
    return f"[{host}]:{config.http_port}" if ":" in host else f"{host}:{config.http_port}"


def gunicorn_options(config: Config, workers: int | None = None) -> dict[str, Any]:
    """Return the gunicorn settings every gateway (and the benchmark's baseline) runs with."""
    settings = config.gateway
    options = {
        "bind": bind_address(config),
        "workers": workers or settings.worker_count,
        "threads": settings.threads,
        "worker_class": "gthread",
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "preload_app": False,
        "accesslog": None,  # the app writes one JSON line per request with its request id
        "errorlog": "-",
        "loglevel": config.log_level,
        "logger_class": JsonLogger,
        "proc_name": "zmx-gateway",
    }
    if "control_socket_disable" in KNOWN_SETTINGS:
        # gunicorn 27's control socket sits at one path per user: several gateways would clash.
        options["control_socket_disable"] = True
    return options


def run_gateway(config: Config, workers: int | None = None) -> int:
    """Serve the REST API until SIGTERM or SIGINT; return the exit status."""
    token, generated = keys.ensure_admin_token(config)
    if generated:
        print(f"zmx gateway: generated an admin token (shown once, kept in {keys.admin_token_file(config)}):\n"
              f"  {token}", flush=True)
    elif config.admin_token is None:
        print(f"zmx gateway: admin token in {keys.admin_token_file(config)}", flush=True)
    keys.load_master_secret(config)
    metrics_dir = Path(tempfile.mkdtemp(prefix="zmx-gateway-metrics-"))
    os.environ[PROMETHEUS_DIRECTORY_VARIABLE] = str(metrics_dir)
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    application: GatewayApplication

    def load() -> Any:
        from gateway.app import app_from_config

        app, application.services = app_from_config(config, metrics_dir)
        # What exists now lives as long as the worker: keep the collector off it, as the
        # matcher does, so full collections only walk what requests allocate.
        gc.collect()
        gc.freeze()
        return app

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(metrics_dir))

    def worker_exit(server: Any, worker: Any) -> None:
        services = application.services
        if services is not None:
            services.engine.close()
            services.store.close()

    options = gunicorn_options(config, workers)
    options.update(child_exit=child_exit, worker_exit=worker_exit)
    application = GatewayApplication(options, load)
    log.info("gateway starting", extra={"bind": options["bind"], "workers": options["workers"],
                                        "threads": options["threads"]})
    master = os.getpid()
    try:
        application.run()
    finally:
        # A worker's exit unwinds through here too (gunicorn forks inside run()).
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
