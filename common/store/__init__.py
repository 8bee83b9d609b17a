"""The history store: SQLite by default, PostgreSQL at scale, one interface.

    from common.store import open_store
    store = open_store(config.effective_store_url())   # migrations applied
    trader = store.create_trader("alice")
    page = store.list_traders(limit=100, cursor=None)   # Page(items, next_cursor, has_more)

See docs/store.md for the schema, the migrations, both backends and the recorder.
"""

from __future__ import annotations

from common.store.backends import DuplicateError, StoreError, StoreUnavailable, backend_for_url
from common.store.batch import Batch
from common.store.history import HistoryQueries
from common.store.migrations import migrate
from common.store.store import Page, TraderStore
from common.store.writer import ProgressConflict, RecorderWrites

__all__ = ["Batch", "DuplicateError", "Page", "ProgressConflict", "Store", "StoreError", "StoreUnavailable",
           "open_store"]


class Store(TraderStore, HistoryQueries, RecorderWrites):
    """Everything zmx keeps in its database, behind one interface for SQLite and PostgreSQL.

    Traders, keys and rate limits: common/store/store.py; history queries:
    common/store/history.py; the recorder's batched writes: common/store/writer.py.
    Thread-safe: one Store serves every thread of a process.
    """

    def __init__(self, backend) -> None:
        TraderStore.__init__(self, backend)
        self._init_history()
        self._init_writer()


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
