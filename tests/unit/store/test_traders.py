"""Traders, API keys, rate limits, migrations and thread safety, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from common.store import DuplicateError, Page, StoreError, open_store
from common.store.backends import backend_for_url
from common.store.migrations import LATEST_VERSION, MIGRATIONS, Migration, migrate


def test_create_and_get_trader(store):
    alice = store.create_trader("alice")
    bob = store.create_trader("bob")
    assert alice["trader_id"] >= 1 and bob["trader_id"] > alice["trader_id"]
    assert alice["username"] == "alice" and isinstance(alice["created_at"], int)
    assert store.get_trader(alice["trader_id"]) == alice
    assert store.get_trader(bob["trader_id"] + 100) is None


def test_duplicate_username(store):
    store.create_trader("alice")
    with pytest.raises(DuplicateError):
        store.create_trader("alice")
    # The failed insert left the store usable.
    assert store.create_trader("alice2")["username"] == "alice2"


def test_list_traders_pages_and_sees_new_rows(store):
    created = [store.create_trader(f"trader{n}") for n in range(5)]
    first = store.list_traders(limit=2)
    assert isinstance(first, Page)
    assert [item["username"] for item in first.items] == ["trader0", "trader1"]
    assert first.has_more and first.next_cursor
    store.create_trader("late")  # arrives between pages: shows up at the end, nothing repeats
    seen = list(first.items)
    cursor = first.next_cursor
    while cursor:
        page = store.list_traders(limit=2, cursor=cursor)
        seen += page.items
        cursor = page.next_cursor
        assert page.has_more == (cursor is not None)
    assert [item["username"] for item in seen] == [t["username"] for t in created] + ["late"]
    exact = store.list_traders(limit=6)
    assert len(exact.items) == 6 and not exact.has_more and exact.next_cursor is None


@pytest.mark.parametrize("cursor", ["", "garbage!", "bm90IGpzb24", "WyJmaWxscyIsMV0", "WyJ0cmFkZXJzIiwieCJd"])
def test_invalid_cursor(store, cursor):
    with pytest.raises(ValueError):
        store.list_traders(limit=10, cursor=cursor)


def test_api_keys_rotate_and_revoke(store):
    trader = store.create_trader("alice")["trader_id"]
    other = store.create_trader("bob")["trader_id"]
    store.replace_api_key(trader, "hash-1", "zmx_1234", 1000)
    store.replace_api_key(other, "hash-other", "zmx_9999", 1000)
    assert store.find_api_key("hash-1") == trader
    assert store.api_key_prefix(trader) == "zmx_1234"
    store.replace_api_key(trader, "hash-2", "zmx_5678", 2000)
    assert store.find_api_key("hash-1") is None
    assert store.find_api_key("hash-2") == trader
    assert store.revoke_api_keys(trader) == 1
    assert store.revoke_api_keys(trader) == 0
    assert store.find_api_key("hash-2") is None
    assert store.api_key_prefix(trader) is None
    assert store.find_api_key("hash-other") == other


def test_rate_limit_counts_per_bucket_and_window(store):
    assert store.rate_limit_hit("key:1", 1000, 5) == 5
    assert store.rate_limit_hit("key:1", 1000, 3) == 8
    assert store.rate_limit_hit("key:1", 2000, 1) == 1
    assert store.rate_limit_hit("ip:127.0.0.1", 1000, 2) == 2
    assert store.prune_rate_limits(created_before=0) == 0
    assert store.prune_rate_limits(created_before=1 << 62) == 3
    assert store.rate_limit_hit("key:1", 1000, 1) == 1


def test_rate_limit_is_atomic_across_threads(store):
    def hit() -> None:
        for _ in range(50):
            store.rate_limit_hit("shared", 7, 1)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.rate_limit_hit("shared", 7, 0) == 200


def test_threads_share_one_store(store):
    errors = []

    def create(prefix: str) -> None:
        try:
            for n in range(20):
                store.create_trader(f"{prefix}-{n}")
                store.list_traders(limit=5)
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=create, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list_traders(limit=1000).items) == 80


def _schema_versions(url: str) -> list[int]:
    backend = backend_for_url(url)
    try:
        with backend.transaction() as tx:
            return [row[0] for row in tx.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]
    finally:
        backend.close()


def test_migrations_are_versioned_and_idempotent(store_url):
    open_store(store_url).close()
    open_store(store_url).close()
    assert _schema_versions(store_url) == [migration.version for migration in MIGRATIONS]
    backend = backend_for_url(store_url)
    try:
        assert migrate(backend) == []
        extra = MIGRATIONS + (Migration(LATEST_VERSION + 1, "test", "CREATE TABLE later (x INTEGER)"),)
        assert migrate(backend, extra) == [LATEST_VERSION + 1]
        assert migrate(backend, extra) == []
        # A build that knows fewer migrations than the store has refuses to run on it.
        with pytest.raises(StoreError, match="newer than this build"):
            migrate(backend)
    finally:
        backend.close()


def _open_and_close(url: str) -> None:
    open_store(url).close()


def test_concurrent_processes_migrate_once(store_url):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_and_close, args=(store_url,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert _schema_versions(store_url) == [migration.version for migration in MIGRATIONS]


def test_sqlite_uses_wal(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'wal.sqlite3'}")
    try:
        with store.backend.transaction() as tx:
            assert tx.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["store.sqlite3", "mysql://x/y", "sqlite://", "sqlite:///"])
def test_bad_urls(url):
    with pytest.raises(StoreError):
        open_store(url)


def _open_after(barrier, url: str) -> None:
    barrier.wait(30)
    open_store(url).close()


def test_a_new_sqlite_file_opened_by_many_processes_at_the_same_instant(tmp_path):
    """Like gunicorn workers booting together: none may fail with "database is locked"."""
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'together-{attempt}.sqlite3'}"
        barrier = context.Barrier(8)
        processes = [context.Process(target=_open_after, args=(barrier, url)) for _ in range(8)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * 8
