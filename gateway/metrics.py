"""Prometheus metrics of the gateway, summed over every gunicorn worker.

Under gunicorn the metrics live in prometheus_client's multiprocess mode: each worker
writes its values to memory-mapped files in one directory, and `GET /metrics` (served by
any worker) adds them up. `gateway.server` creates that directory and points
prometheus_client at it before anything imports the library; a worker that exits is
marked dead there so its gauges disappear while its counters still count. Without a
directory (tests, a single process) the values stay in the process.
"""

from __future__ import annotations

from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The gateway's counters and histograms; one instance per app."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None and not _library_in_multiprocess_mode():
            raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set;"
                               " start the gateway through gateway.server")
        # A registry of our own: several apps in one process (tests) never collide.
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("zmx_gateway_requests", "HTTP requests answered",
                                ("method", "route", "status"), registry=registry)
        self.latency = Histogram("zmx_gateway_request_duration_seconds", "time from request to response",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=registry)
        self.rejects = Counter("zmx_gateway_rejects", "error responses by reject code", ("code",),
                               registry=registry)
        self.round_trips = Histogram("zmx_gateway_matcher_round_trip_seconds",
                                     "time from handing a command to the I/O thread to its reply",
                                     ("op", "outcome"), buckets=LATENCY_BUCKETS, registry=registry)
        self.unmatched = Counter("zmx_gateway_matcher_unmatched_replies",
                                 "matcher replies that arrived after their request gave up (timeout)",
                                 registry=registry)
        self.rate_limited = Counter("zmx_gateway_rate_limited", "requests refused with 429", ("scope",),
                                    registry=registry)
        self._children: dict[tuple[str, str, int], tuple] = {}
        self._round_trips: dict[tuple[str, str], object] = {}

    def request(self, method: str, route: str, status: int, seconds: float, code=None) -> None:
        """Count one answered request, its latency and its reject code."""
        if method not in METHODS:
            method = "OTHER"  # the method is client input: it must not grow the label set
        # labels() costs more than the update itself; the combinations are few and fixed.
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)), self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)
        if code is not None:
            self.rejects.labels(code.name).inc()

    # ---------------------------------------------------------------- engine client hooks

    def matcher_round_trip(self, op: str, seconds: float, outcome: str) -> None:
        child = self._round_trips.get((op, outcome))
        if child is None:
            child = self._round_trips[(op, outcome)] = self.round_trips.labels(op, outcome)
        child.observe(seconds)

    def matcher_unmatched_reply(self) -> None:
        self.unmatched.inc()

    # ---------------------------------------------------------------- exposition

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format (all workers' under gunicorn)."""
        if self.multiprocess_dir is None:
            return prometheus_client.generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return prometheus_client.generate_latest(registry)


def _library_in_multiprocess_mode() -> bool:
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue
