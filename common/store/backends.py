"""The two database backends behind the store: SQLite (embedded) and PostgreSQL (psycopg 3).

Both expose the same small surface to the rest of the store:

    with backend.transaction(write=True) as tx:
        tx.execute("SELECT ... WHERE a = %s", (1,)).fetchall()
        tx.executemany("INSERT ... VALUES (%s, %s)", rows)

SQL is written once with `%s` placeholders (psycopg's style); the SQLite backend rewrites
them to `?`. Both databases understand the rest of what the store writes: `ON CONFLICT`
upserts, `RETURNING`, row-value comparisons and `excluded.`.

Thread safety: gunicorn's gthread workers share one Store among their threads. SQLite
gets one connection per thread (a connection is not safe to share), PostgreSQL a
connection pool. Failures to reach or lock the database are raised as `StoreUnavailable`,
so callers (the recorder's retry loop, the gateway's 503) need not know the driver.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any, Iterable, Protocol


class StoreError(Exception):
    """A store failure that is not about the data (bad URL, missing driver, unsupported database)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, is locked by someone else, or dropped the connection."""


class DuplicateError(Exception):
    """A row with the same unique key exists (for example a taken username)."""


class Transaction(Protocol):
    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None: ...


# ---------------------------------------------------------------------------- SQLite

SQLITE_BUSY_TIMEOUT_SECONDS = 5.0


class _SqliteTransaction:
    __slots__ = ("connection", "_translated")

    def __init__(self, connection: sqlite3.Connection, translated: dict[str, str]) -> None:
        self.connection = connection
        self._translated = translated

    def _sql(self, sql: str) -> str:
        text = self._translated.get(sql)
        if text is None:
            text = self._translated[sql] = sql.replace("%s", "?")
        return text

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.connection.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self.connection.executemany(self._sql(sql), rows)


class SqliteBackend:
    """A SQLite file in WAL mode, one connection per thread, writes serialised by SQLite's lock."""

    dialect = "sqlite"

    def __init__(self, path: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._translated: dict[str, str] = {}
        self._closed = False
        # WAL is a property of the file: set once here, inherited by every later connection.
        with self._errors():
            self._use_wal(self._connection())

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL, retrying while another process opens or migrates it.

        Changing the journal mode needs the file to itself, and SQLite answers "database is
        locked" at once rather than through the busy handler while, say, a second gunicorn
        worker opens the same file; so wait here as the busy timeout would.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise StoreError("the store is closed")
            # isolation_level=None: no implicit transactions; `transaction()` says BEGIN itself.
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                         check_same_thread=False)
            # NORMAL in WAL mode: a committed transaction survives a crash of the process; a
            # power loss may drop the last few, together with the recorder progress they
            # carried, so the recorder fetches them again from the matcher's journal.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=OFF")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            raise StoreUnavailable(f"SQLite {self.path}: {error}") from error

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[_SqliteTransaction]:
        """Run a transaction; `write` takes SQLite's write lock at BEGIN (no upgrade deadlocks)."""
        with self._errors():
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SqliteTransaction(connection, self._translated)
                connection.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (SQLITE_BUSY leaves the transaction open).
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()


# ---------------------------------------------------------------------------- PostgreSQL

POSTGRES_CONNECT_TIMEOUT_SECONDS = 5.0


class PostgresBackend:
    """PostgreSQL through psycopg 3 and a psycopg_pool connection pool."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, max_connections: int = 10,
                 timeout: float = POSTGRES_CONNECT_TIMEOUT_SECONDS) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError as error:
            raise StoreError(
                "a postgresql:// store needs psycopg 3 and psycopg_pool: pip install 'zmx[postgres]'"
            ) from error
        self._psycopg = psycopg
        # OperationalError covers a refused or dropped connection, an administrator's
        # shutdown or termination, a lock or statement timeout.
        self._unavailable = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)
        self.timeout = timeout
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, max_connections),
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            # A connection that PostgreSQL closed (restart, pg_terminate_backend) is found
            # and replaced when it is taken from the pool, not by the caller's query.
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=timeout,
            open=False,
            name="zmx-store",
        )
        self._pool.open(wait=False)

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[Any]:
        try:
            with self._pool.connection() as connection:
                with connection.transaction():
                    with connection.cursor() as cursor:
                        yield cursor
        except self._unavailable as error:
            raise StoreUnavailable(f"PostgreSQL: {error}".strip()) from error

    def close(self) -> None:
        self._pool.close()


def is_unique_violation(error: BaseException) -> bool:
    """Tell whether `error` is a unique-constraint violation of either backend."""
    if isinstance(error, sqlite3.IntegrityError):
        return "UNIQUE" in str(error)
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate == "23505"


def backend_for_url(url: str, max_connections: int = 10) -> SqliteBackend | PostgresBackend:
    """Return the backend a store URL names: sqlite:///relative, sqlite:////absolute, postgresql://..."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise StoreError(f"not a store URL: {url!r} (expected sqlite:///path or postgresql://...)")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise StoreError(f"a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path, got {url!r}")
        return SqliteBackend(rest[1:].split("?", 1)[0])
    if scheme in ("postgresql", "postgres"):
        return PostgresBackend(url, max_connections=max_connections)
    raise StoreError(f"unsupported store URL scheme {scheme!r} (sqlite or postgresql)")
