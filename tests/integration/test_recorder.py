"""The recorder end to end: real matchers, a real `zmx recorder` process, a real store.

Each scenario drives an order flow through a matcher while something fails — the recorder
is killed (-9), the matcher is killed (-9), the store is locked or its connections are
terminated — and then compares the store with two independent sources:

- the matcher's live state (`balances`, `open_orders`, `get_order` for every order), and
- the matcher's whole journal replayed into a fresh replica: every row the store must
  hold, each exactly once (trades, fills, order states and changes, deposits, withdrawals,
  balances, candles and positions).

Runs on SQLite and on PostgreSQL (a throwaway schema).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from common.matcher_client import MatcherClient
from common.recorder.checkpoint import checkpoint_path
from common.recorder.replica import Replica
from common.store import Batch, Store, open_store
from common.store.aggregates import Position, minute_candles, roll_up
from tests.integration.harness import REPO_ROOT, MatcherCluster, _die_with_parent
from tests.polling import poll_until
from tests.unit.store.postgres import throwaway_schema

PAIRS = ("BTC-USDT", "ETH-USDT")
ACCOUNTS = tuple(range(1, 7))
CATCH_UP_TIMEOUT = 60.0


# ---------------------------------------------------------------------------- processes


class RecorderProcess:
    """A `python -m common.cli recorder` child with its own configuration file and log."""

    def __init__(self, cluster: MatcherCluster, store_url: str, name: str = "recorder",
                 shard: int | None = None, **settings: Any) -> None:
        self.cluster = cluster
        self.shard = shard
        self.config_path = cluster.directory / f"{name}.toml"
        self.log_path = cluster.directory / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        recorder = {"poll_seconds": 0.2, "batch_records": 50, "checkpoint_every_records": 400, **settings}
        text = f"store_url = {orjson.dumps(store_url).decode()}\n" + cluster.config_path.read_text()
        text += "\n[recorder]\n" + "".join(f"{key} = {value!r}\n" for key, value in recorder.items())
        self.config_path.write_text(text)

    def start(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "common.cli", "--config", str(self.config_path), "recorder"]
        if self.shard is not None:
            command += ["--shard", str(self.shard)]
        with open(self.log_path, "ab") as log:
            log.write(f"---- start: {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> int:
        if self.running:
            self.popen.terminate()
        try:
            return self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"the recorder ignored SIGTERM\n{self.log_text()}") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def check_alive(self) -> None:
        if not self.running:
            raise AssertionError(f"the recorder exited with {self.popen.returncode}\n{self.log_text()[-20000:]}")


@pytest.fixture(params=("sqlite", "postgresql"))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    with throwaway_schema() as (url, schema):
        # The application name lets a test find (and terminate) the recorder's connections.
        yield f"{url}&application_name={schema}"


@pytest.fixture
def recorders() -> Iterator[list[RecorderProcess]]:
    started: list[RecorderProcess] = []
    yield started
    for recorder in started:
        if recorder.running:
            recorder.kill()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


# ---------------------------------------------------------------------------- order flow


class Flow:
    """A seeded order flow over a few accounts and markets; remembers every order id it saw."""

    def __init__(self, client: MatcherClient, seed: int = 7) -> None:
        self.client = client
        self.random = random.Random(seed)
        self.order_ids: set[int] = set()
        self.open: list[tuple[int, int]] = []

    def setup(self) -> None:
        for pair in PAIRS:
            self.client.request("create_market", pair=pair, tick_size="0.01", lot_size="0.001",
                                maker_fee_bps=-1, taker_fee_bps=5)
        for account in ACCOUNTS:
            self.client.request("deposit", account_id=account, asset="USDT", amount="1000000")
            self.client.request("deposit", account_id=account, asset="BTC", amount="100")
            self.client.request("deposit", account_id=account, asset="ETH", amount="1000")

    def step(self) -> dict[str, Any]:
        """Send one command and return the request fields (for pipelined use see `send`)."""
        choice = self.random.random()
        account = self.random.choice(ACCOUNTS)
        if choice < 0.12 and self.open:
            account, order_id = self.open.pop(self.random.randrange(len(self.open)))
            return {"op": "cancel", "account_id": account, "order_id": order_id}
        if choice < 0.18 and self.open:
            account, order_id = self.open[self.random.randrange(len(self.open))]
            return {"op": "amend", "account_id": account, "order_id": order_id,
                    "price": f"{self.random.randint(95, 105)}.00"}
        if choice < 0.22:
            return {"op": "place", "account_id": account, "pair": self.random.choice(PAIRS),
                    "side": self.random.choice(("buy", "sell")), "type": "market",
                    "quantity": f"0.{self.random.randint(1, 400):03d}"}
        if choice < 0.24:
            return {"op": "withdraw", "account_id": account, "asset": "USDT", "amount": "1.5"}
        return {"op": "place", "account_id": account, "pair": self.random.choice(PAIRS),
                "side": self.random.choice(("buy", "sell")), "type": "limit",
                "price": f"{self.random.randint(95, 105)}.{self.random.randint(0, 99):02d}",
                "quantity": f"{self.random.randint(0, 2)}.{self.random.randint(1, 999):03d}",
                "stp": self.random.choice(("expire_maker", "none", "decrement"))}

    def run(self, count: int) -> None:
        """Send `count` commands one by one, waiting for each reply (rejects are fine)."""
        for _ in range(count):
            self._reply(self.client.wait(self.client.send(**self.step())))

    def burst(self, count: int) -> list[int]:
        """Send `count` commands without waiting; return the request ids."""
        return [self.client.send(**self.step()) for _ in range(count)]

    def collect(self, request_ids: list[int], timeout: float = 10.0) -> None:
        for request_id in request_ids:
            self._reply(self.client.wait(request_id, timeout))

    def _reply(self, reply: dict[str, Any]) -> None:
        if not reply["ok"]:
            return
        data = reply["data"]
        if isinstance(data, dict) and "order_id" in data:
            self.order_ids.add(data["order_id"])
            if data["status"] in ("NEW", "PARTIALLY_FILLED"):
                entry = (data["account_id"], data["order_id"])
                if entry not in self.open:
                    self.open.append(entry)


# ---------------------------------------------------------------------------- comparison


def _rows(store: Store, sql: str) -> list[tuple]:
    with store.backend.transaction() as tx:
        return [tuple(row) for row in tx.execute(sql).fetchall()]


def expected_rows(client: MatcherClient, shard_id: int = 0) -> tuple[Batch, int]:
    """Replay the matcher's whole journal into a fresh replica; return every row it implies."""
    replica = Replica.empty(shard_id)
    batch = Batch(shard_id, 0)
    while True:
        page = client.request("journal", after=replica.journal_seq, limit=5000)
        for record in page["records"]:
            replica.apply(record["seq"], record["ts"], record["cmd"], batch)
        if replica.journal_seq >= page["last_seq"]:
            return batch, replica.journal_seq


def wait_recorded(store: Store, client: MatcherClient, recorder: RecorderProcess, shard_id: int = 0) -> int:
    last_seq = client.request("ping")["journal_seq"]

    def caught_up() -> bool:
        recorder.check_alive()
        return store.recorder_progress(shard_id) == last_seq

    poll_until(caught_up, CATCH_UP_TIMEOUT, f"the recorder to reach journal seq {last_seq}", interval=0.05)
    return last_seq


def assert_store_matches(store: Store, client: MatcherClient, flow: Flow, shard_id: int = 0) -> None:
    expected, last_seq = expected_rows(client, shard_id)
    assert store.recorder_progress(shard_id) == last_seq

    # Every row exactly once: the tables hold precisely the rows the journal implies.
    assert sorted(_rows(store, "SELECT pair, trade_id, price, quantity, taker_side, ts, journal_seq FROM trades")) \
        == sorted(expected.trades)
    assert sorted(_rows(store, "SELECT account_id, ts, fill_id, trade_id, order_id, pair, side, price, quantity,"
                               " fee, fee_asset, liquidity, journal_seq FROM fills")) == sorted(expected.fills)
    assert sorted(_rows(store, "SELECT order_id, journal_seq, account_id, status, price, quantity, filled_quantity,"
                               " ts FROM order_events")) == sorted(expected.order_events)
    assert len(expected.order_events) == len(set(expected.order_events))
    assert sorted(_rows(store, "SELECT account_id, ts, deposit_id, shard_id, asset, amount, journal_seq"
                               " FROM deposits")) == sorted(expected.deposits)
    assert sorted(_rows(store, "SELECT account_id, ts, withdrawal_id, shard_id, asset, amount, journal_seq"
                               " FROM withdrawals")) == sorted(expected.withdrawals)
    orders = {row[0]: row for row in _rows(store, "SELECT order_id, account_id, pair, status, is_open, created_at,"
                                                  " updated_at, journal_seq, data, client_order_id FROM orders")}
    assert {order_id: tuple(row) for order_id, row in orders.items()} == expected.orders
    assert sorted(_rows(store, "SELECT account_id, asset, shard_id, available, locked, journal_seq, ts"
                               " FROM balances")) == sorted(expected.balances.values())

    # Candles and positions equal what the trades and fills imply, computed in one go.
    candles = {(pair, interval, open_time): candle.as_row(expected.specs[pair])
               for (pair, interval, open_time), candle
               in roll_up(minute_candles(expected.candle_trades, expected.specs)).items()}
    stored = {(row[0], row[1], row[2]): tuple(row[3:]) for row in _rows(
        store, "SELECT pair, period, open_time, open, high, low, close, volume, quote_volume, trades,"
               " first_trade_id, last_trade_id, taker_buy_volume, taker_buy_quote_volume FROM candles")}
    assert stored == candles
    positions: dict[tuple[int, str], Position] = {}
    for account_id, pair, trade_id, is_buy, lots, ticks, fee in expected.position_fills:
        positions.setdefault((account_id, pair), Position()).apply(trade_id * 2 + (not is_buy), is_buy, lots, ticks,
                                                                   fee, expected.specs[pair])
    stored_positions = {(row[0], row[1]): tuple(row[2:]) for row in _rows(
        store, "SELECT account_id, pair, quantity, cost, realized_pnl, bought, sold, last_fill_id FROM positions")}
    assert stored_positions == {key: position.as_row(expected.specs[key[1]]) for key, position in positions.items()}

    # And the store agrees with the matcher's live answers.
    for account in ACCOUNTS:
        assert store.balances(account) == client.request("balances", account_id=account)
        live_open = {order["order_id"]: order for order in client.request("open_orders", account_id=account)}
        stored_open = {order["order_id"]: order for order in store.orders(account, "open", None, 1000).items}
        assert stored_open == live_open
    for order_id in sorted(flow.order_ids):
        account = orders[order_id][1]
        live = client.request("get_order", account_id=account, order_id=order_id)
        stored_order = store.order(account, order_id)
        stored_fills = stored_order.pop("fills")
        live.pop("fills")
        assert stored_order == live
        assert sum(int(fill["quantity"].replace(".", "")) for fill in stored_fills) \
            == int(live["filled_quantity"].replace(".", ""))


# ---------------------------------------------------------------------------- store outages


def _terminate_postgres_connections(application_name: str) -> int:
    import psycopg

    from tests.unit.store.postgres import server_url

    with psycopg.connect(server_url(), autocommit=True) as admin:
        return admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                             " WHERE application_name = %s", (application_name,)).fetchone()[0]


class StoreOutage:
    """Make the store refuse the recorder for a while.

    SQLite: another connection holds the write lock (`BEGIN EXCLUSIVE`), so the recorder's
    transactions time out after the busy timeout. PostgreSQL: another connection holds an
    ACCESS EXCLUSIVE lock on `recorder_progress`, so the recorder's transaction waits, and
    `drop_connections()` then terminates the recorder's connections while they wait.
    """

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.sqlite = store_url.startswith("sqlite")

    def __enter__(self) -> "StoreOutage":
        if self.sqlite:
            self.connection = sqlite3.connect(self.store_url[len("sqlite:///"):], isolation_level=None, timeout=30)
            self.connection.execute("BEGIN EXCLUSIVE")
        else:
            import psycopg

            self.connection = psycopg.connect(self.store_url.split("&application_name=")[0])
            self.connection.execute("LOCK TABLE recorder_progress IN ACCESS EXCLUSIVE MODE")
        return self

    def drop_connections(self) -> int:
        if self.sqlite:
            return 0
        return _terminate_postgres_connections(self.store_url.rsplit("application_name=", 1)[1])

    def __exit__(self, *exc_info: object) -> None:
        if self.sqlite:
            self.connection.execute("ROLLBACK")
        else:
            self.connection.rollback()
        self.connection.close()


# ---------------------------------------------------------------------------- tests


def test_recorder_survives_recorder_matcher_and_store_failures(make_cluster, store_url, store, recorders):
    cluster = make_cluster(journal={"snapshot_every_commands": 150})
    matcher = cluster.start(0)
    client = matcher.client(timeout=10)
    flow = Flow(client)
    flow.setup()
    recorder = RecorderProcess(cluster, store_url)
    recorders.append(recorder)
    recorder.start()
    flow.run(150)
    wait_recorded(store, client, recorder)
    assert_store_matches(store, client, flow)

    # 1. kill -9 the recorder mid-stream (while it records a burst), keep trading, restart it.
    recorded = store.recorder_progress(0)
    pending = flow.burst(300)
    poll_until(lambda: store.recorder_progress(0) > recorded, 10, "the recorder to start on the burst",
               interval=0.002)
    recorder.kill()
    flow.collect(pending)
    flow.run(100)
    recorder.start()
    wait_recorded(store, client, recorder)
    assert_store_matches(store, client, flow)

    # 2. kill -9 the matcher mid-stream (replies in flight are lost), restart it.
    flow.burst(300)
    matcher.kill()
    client.close()
    matcher.start()
    client = matcher.client(timeout=10)
    flow.client = client
    flow.run(100)
    wait_recorded(store, client, recorder)
    assert_store_matches(store, client, flow)

    # 3. the store refuses the recorder for a while, then comes back.
    with StoreOutage(store_url) as outage:
        flow.run(150)
        poll_until(lambda: client.request("ping")["journal_seq"] > 0, 5)
        if not outage.sqlite:
            # Let the recorder start waiting on the lock, then kill its connections.
            poll_until(lambda: outage.drop_connections() > 0, 10, "the recorder's connections to terminate")
        poll_until(lambda: "store unavailable" in recorder.log_text(), 20, "the recorder to notice the outage")
        recorder.check_alive()
    wait_recorded(store, client, recorder)
    assert_store_matches(store, client, flow)

    assert recorder.terminate() == 0
    assert "recorder checkpoint written" in recorder.log_text()


def test_recorder_restores_from_checkpoint_or_matcher_snapshot(make_cluster, store_url, store, recorders):
    cluster = make_cluster(journal={"snapshot_every_commands": 100})
    matcher = cluster.start(0)
    client = matcher.client(timeout=10)
    flow = Flow(client, seed=11)
    flow.setup()
    flow.run(300)
    recorder = RecorderProcess(cluster, store_url, checkpoint_every_records=100)
    recorders.append(recorder)
    recorder.start()
    wait_recorded(store, client, recorder)
    assert recorder.terminate() == 0
    checkpoint = checkpoint_path(cluster.data_dir, 0)
    assert checkpoint.exists()

    # From its own checkpoint.
    flow.run(100)
    recorder.start()
    wait_recorded(store, client, recorder)
    assert recorder.terminate() == 0
    assert '"source":"checkpoint"' in recorder.log_text()

    # Without it: from the matcher's newest snapshot at or before the stored progress.
    checkpoint.unlink()
    flow.run(100)
    recorder.start()
    wait_recorded(store, client, recorder)
    recorder.kill()
    assert '"source":"matcher snapshot"' in recorder.log_text()
    assert_store_matches(store, client, flow)


def test_one_recorder_records_every_shard(make_cluster, store_url, store, recorders):
    cluster = make_cluster(shards=((0, ("BTC-USDT",)), (1, ("*",))))
    first, second = cluster.start(0), cluster.start(1)
    clients = {0: first.client(), 1: second.client()}
    clients[0].request("create_market", pair="BTC-USDT", tick_size="0.01", lot_size="0.001")
    clients[1].request("create_market", pair="ETH-USDT", tick_size="0.01", lot_size="0.001")
    for shard_id, pair, base in ((0, "BTC-USDT", "BTC"), (1, "ETH-USDT", "ETH")):
        client = clients[shard_id]
        client.request("deposit", account_id=1, asset="USDT", amount="1000")
        client.request("deposit", account_id=2, asset=base, amount="10")
        client.request("place", account_id=2, pair=pair, side="sell", type="limit", price="10.00", quantity="1.000")
        client.request("place", account_id=1, pair=pair, side="buy", type="limit", price="10.00", quantity="0.500")
    recorder = RecorderProcess(cluster, store_url)
    recorders.append(recorder)
    recorder.start()
    for shard_id, client in clients.items():
        wait_recorded(store, client, recorder, shard_id)
    # Balances are per shard in the matcher; the store sums them per asset.
    usdt = [balance for balance in store.balances(1) if balance["asset"] == "USDT"][0]
    assert usdt["total"] == "1990.00000000"
    assert {trade["pair"] for pair in ("BTC-USDT", "ETH-USDT") for trade in store.trades(pair, 10).items} \
        == {"BTC-USDT", "ETH-USDT"}
    assert {market["pair"] for market in store.markets()} == {"BTC-USDT", "ETH-USDT"}
    assert recorder.terminate() == 0
