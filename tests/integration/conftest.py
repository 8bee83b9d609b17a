"""Fixtures for the integration suite: matcher processes that never outlive their test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import MatcherCluster, MatcherProcess

_LOG_TAIL_CHARS = 20_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach every matcher's log to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for cluster in item.stash.get(_CLUSTERS, []):
            for process in cluster.processes.values():
                text = process.log_text()
                if len(text) > _LOG_TAIL_CHARS:
                    text = "...\n" + text[-_LOG_TAIL_CHARS:]
                report.sections.append((f"matcher shard {process.shard_id} log ({process.log_path})", text))


_CLUSTERS = pytest.StashKey[list]()


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., MatcherCluster]]:
    """Give the test `make_cluster(shards=..., fsync=..., journal=..., matcher=...)`; all stopped at teardown."""
    clusters: list[MatcherCluster] = []
    request.node.stash[_CLUSTERS] = clusters
    numbers = itertools.count()

    def make(**options) -> MatcherCluster:
        cluster = MatcherCluster(tmp_path / f"cluster-{next(numbers)}", **options)
        clusters.append(cluster)
        return cluster

    yield make
    errors = []
    for cluster in clusters:
        try:
            cluster.close()
        except Exception as error:  # close every cluster before failing the teardown
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.fixture
def matcher(make_cluster: Callable[..., MatcherCluster]) -> MatcherProcess:
    """Give the test one running single-shard matcher (fsync batch, heartbeat 0.2 s)."""
    return make_cluster().start(0)
