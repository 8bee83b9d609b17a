"""A throwaway PostgreSQL schema per test, for the store's tests on both backends.

The server is `ZMX_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/test,
as on the development and CI machines). Each test gets a fresh schema `zmx_test_<random>`
selected through the URL's `options=-csearch_path=...`, dropped afterwards. When the server
cannot be reached the PostgreSQL variants are skipped, except under CI (`CI=true`), where
that is a failure: CI must never pass by skipping the second backend.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

from tests.ci import skip_or_fail

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("ZMX_TEST_POSTGRES_URL", DEFAULT_URL)


def _connect(url: str):
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        skip_or_fail(f"PostgreSQL at {url} is unreachable: {error}".strip())


def schema_url(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def throwaway_schema() -> Iterator[tuple[str, str]]:
    """Create a schema, yield (store URL selecting it, schema name), drop it with everything in it."""
    url = server_url()
    schema = f"zmx_test_{secrets.token_hex(6)}"
    with _connect(url) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema_url(url, schema), schema
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
