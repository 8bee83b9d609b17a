"""The history store: SQLite by default, PostgreSQL at scale, one interface.

    from common.store import open_store
    store = open_store(config.effective_store_url())   # migrations applied
    trader = store.create_trader("alice")
    page = store.list_traders(limit=100, cursor=None)   # Page(items, next_cursor, has_more)

See docs/store.md for the schema, the migrations, both backends and the recorder.
"""

from __future__ import annotations

from common.store.backends import DuplicateError, StoreError, StoreUnavailable, backend_for_url
from common.store.migrations import migrate
from common.store.store import Page, Store

__all__ = ["DuplicateError", "Page", "Store", "StoreError", "StoreUnavailable", "open_store"]


def open_store(url: str, *, max_connections: int = 10) -> Store:
    """Open the store a URL names and bring its schema up to date.

    `sqlite:///relative/path` or `sqlite:////absolute/path` (WAL mode), or
    `postgresql://user:password@host:port/database` (psycopg 3 with a pool of at most
    `max_connections`; `?options=-csearch_path%3Dname` selects a schema).
    """
    backend = backend_for_url(url, max_connections=max_connections)
    try:
        migrate(backend)
    except BaseException:
        backend.close()
        raise
    return Store(backend)
