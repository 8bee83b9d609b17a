"""Store fixtures: every store test runs on SQLite and on PostgreSQL (a throwaway schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.store import Store, open_store
from tests.unit.store.postgres import throwaway_schema

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Give the test the URL of an empty store on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with throwaway_schema() as (url, _schema):
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """Give the test an open, migrated, empty store on each backend in turn."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
