"""Benchmark the history store on SQLite and PostgreSQL: recorder insert rate and fills queries.

1. Insert rate through the recorder's write path. A seeded flow (loadtest/bench_matcher.py's
   generator: `--orders` limit orders over 100 accounts, 30% crossing, 20% canceled) is
   executed once by an in-process matcher (`Dispatcher` on an `Engine`, as matcher/server.py
   does) to produce the journal records. Those records are then recorded exactly as
   `zmx recorder` records them: `Replica.apply` into a `Batch` of `--batch-records`
   records, then `Store.write_batch` (one transaction per batch, progress included).
   "Events" are the rows of fills, order changes and trades written. Two rates are printed:
   the store's (events / time inside `write_batch`) and the whole recorder path's
   (events / time of replica + write), which is what catching up costs.

2. Fills queries at `--fills` fills. The store is topped up with synthetic fills for 100
   accounts (through `write_batch` too) until it holds `--fills`; then `--queries`
   `Store.fills(account, pair, 100, cursor)` calls, each for a random account, half of
   them at a random depth of its history (a cursor at a random fill), a quarter with a
   pair filter, are timed one by one (`perf_counter_ns` around the call, so the latency
   includes building the 100 result dicts). p50/p99/max are printed.

    python loadtest/bench_store.py                       # both backends, defaults
    python loadtest/bench_store.py --fills 1000000 --orders 100000
    python loadtest/bench_store.py --backends sqlite --postgres-url postgresql://u@host/db

PostgreSQL runs in a throwaway schema of `--postgres-url`, dropped at the end; SQLite in a
temporary directory (`--directory` to choose where: the disk matters).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import protocol  # noqa: E402
from common.recorder.replica import Replica  # noqa: E402
from common.store import Batch, open_store  # noqa: E402
from common.store.cursors import encode_cursor  # noqa: E402
from loadtest.bench_matcher import CANCEL, generate_flow  # noqa: E402
from matcher.dispatch import Dispatcher  # noqa: E402
from matcher.engine import Engine  # noqa: E402

PAIR = "BTC-USDT"
ACCOUNTS = 100
START_NS = 1_767_225_600_000_000_000
TS_STEP_NS = 200_000  # 5,000 commands per second of matcher time
PAGE = 100


def journal_records(orders: int, seed: int) -> list[tuple[int, int, dict]]:
    """Run the flow through an in-process matcher; return its journal: (seq, ts, wire command)."""
    engine = Engine(0, max_open_orders=1 << 30)
    dispatcher = Dispatcher(engine)
    records: list[tuple[int, int, dict]] = []
    ts = START_NS

    def execute(op: str, **fields) -> dict | None:
        nonlocal ts
        ts += TS_STEP_NS
        command = protocol.decode_command(protocol.encode_request(None, op, **fields))
        data, reject = dispatcher.execute(command, ts)
        if reject is not None:
            return None
        records.append((len(records) + 1, ts, command.to_json()))
        return data

    execute("create_market", pair=PAIR, tick_size="0.01", lot_size="0.0001", maker_fee_bps=-1, taker_fee_bps=5)
    market = engine.markets[PAIR]
    for account in range(1, ACCOUNTS + 1):
        execute("deposit", account_id=account, asset="USDT", amount="100000000")
        execute("deposit", account_id=account, asset="BTC", amount="1000000")
    order_ids: dict[int, int] = {}
    for operation in generate_flow(orders, 0.2, seed, ACCOUNTS):
        if operation[0] == CANCEL:
            _, index, account = operation
            execute("cancel", account_id=account, order_id=order_ids[index])
            continue
        _, index, account, side, price, lots = operation
        reply = execute("place", account_id=account, pair=PAIR, side="buy" if side == 0 else "sell", type="limit",
                        price=market.tick.format(price), quantity=market.lot.format(lots))
        order_ids[index] = reply["order_id"]
    return records


def record(store, records, batch_records: int) -> dict[str, float]:
    """Record the journal through the recorder's path; return counts and timings."""
    replica = Replica.empty(0)
    replica_seconds = write_seconds = 0.0
    events = fills = 0
    for start in range(0, len(records), batch_records):
        began = time.perf_counter()
        batch = Batch(0, replica.journal_seq)
        for seq, ts, cmd in records[start:start + batch_records]:
            replica.apply(seq, ts, cmd, batch)
        built = time.perf_counter()
        store.write_batch(batch)
        done = time.perf_counter()
        replica_seconds += built - began
        write_seconds += done - built
        events += batch.events
        fills += len(batch.fills)
    return {"events": events, "fills": fills, "records": len(records), "replica_s": replica_seconds,
            "write_s": write_seconds}


def top_up_fills(store, target: int, seed: int) -> float:
    """Add synthetic fills (100 accounts, two pairs) until the store holds `target`; return seconds."""
    with store.backend.transaction() as tx:
        have = tx.execute("SELECT count(*) FROM fills").fetchone()[0]
        progress = tx.execute("SELECT journal_seq FROM recorder_progress WHERE shard_id = 0").fetchone()[0]
    rng = random.Random(seed)
    started = time.perf_counter()
    trade_id = 1 << 40  # beyond the recorded flow's ids
    ts = START_NS // 1_000_000 + 10**9
    seq = progress
    while have < target:
        batch = Batch(0, seq)
        for _ in range(min(10_000, target - have) // 2 or 1):
            trade_id += 1
            ts += rng.randint(0, 3)
            pair = PAIR if rng.random() < 0.8 else "ETH-USDT"
            buyer, seller = rng.randint(1, ACCOUNTS), rng.randint(1, ACCOUNTS)
            price, quantity = f"{rng.randint(90_000, 110_000) / 100:.2f}", f"0.{rng.randint(1, 9999):04d}"
            for account, side, liquidity in ((buyer, 0, "taker"), (seller, 1, "maker")):
                batch.fills.append((account, ts, trade_id * 2 + side, trade_id, trade_id, pair,
                                    ("buy", "sell")[side], price, quantity, "0.00000010", "BTC", liquidity, seq + 1))
        seq += 1
        batch.last_seq = seq
        store.write_batch(batch)
        have += len(batch.fills)
    return time.perf_counter() - started


def query_latencies(store, queries: int, seed: int) -> dict[str, list[int]]:
    """Time `Store.fills` pages: first pages, deep pages, and pair-filtered pages (ns)."""
    rng = random.Random(seed)
    with store.backend.transaction() as tx:
        bounds = {account: tx.execute("SELECT min(ts), max(ts), min(fill_id), max(fill_id) FROM fills"
                                      " WHERE account_id = %s", (account,)).fetchone()
                  for account in range(1, ACCOUNTS + 1)}
    results: dict[str, list[int]] = {"first page": [], "deep page": [], "deep page, one pair": []}
    for _ in range(queries):
        account = rng.randint(1, ACCOUNTS)
        kind = rng.random()
        low_ts, high_ts, low_id, high_id = bounds[account]
        cursor = encode_cursor("fills", rng.randint(low_ts, high_ts), rng.randint(low_id, high_id))
        if kind < 0.25:
            name, call = "first page", lambda: store.fills(account, None, PAGE)
        elif kind < 0.75:
            name, call = "deep page", lambda: store.fills(account, None, PAGE, cursor)
        else:
            name, call = "deep page, one pair", lambda: store.fills(account, PAIR, PAGE, cursor)
        began = time.perf_counter_ns()
        page = call()
        results[name].append(time.perf_counter_ns() - began)
        if not page.items and name == "first page":
            raise SystemExit(f"account {account} has no fills")
    return results


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


def run_backend(name: str, url: str, records, arguments) -> None:
    store = open_store(url)
    try:
        gc.collect()
        counts = record(store, records, arguments.batch_records)
        write_rate = counts["events"] / counts["write_s"]
        path_rate = counts["events"] / (counts["write_s"] + counts["replica_s"])
        print(f"\n[{name}] recorded {counts['records']:,} journal records -> {counts['events']:,} events"
              f" ({counts['fills']:,} fills) in batches of {arguments.batch_records}")
        print(f"  store write_batch   {counts['write_s']:7.2f} s   {write_rate:10,.0f} events/s"
              f"   (target >= 20,000)")
        print(f"  replica + write     {counts['write_s'] + counts['replica_s']:7.2f} s   {path_rate:10,.0f} events/s"
              f"   ({counts['records'] / (counts['write_s'] + counts['replica_s']):,.0f} records/s)")
        seconds = top_up_fills(store, arguments.fills, arguments.seed)
        with store.backend.transaction() as tx:
            total = tx.execute("SELECT count(*) FROM fills").fetchone()[0]
        print(f"  topped up to {total:,} fills in {seconds:.1f} s")
        with store.backend.transaction() as tx:
            if name == "postgresql":
                tx.execute("ANALYZE fills")
                size = tx.execute("SELECT pg_total_relation_size('fills')").fetchone()[0]
            else:
                size = tx.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'fills%'").fetchone()[0]
        if size:
            print(f"  fills table with its indexes: {size / 2**20:,.0f} MiB ({size / total:,.0f} bytes per fill)")
        query_latencies(store, min(200, arguments.queries), arguments.seed + 1)  # warm the cache
        latencies = query_latencies(store, arguments.queries, arguments.seed + 2)
        for kind, values in latencies.items():
            print(f"  fills page of {PAGE} ({kind:<20}) n={len(values):5}  p50 {percentile(values, 0.5):6.2f} ms"
                  f"  p99 {percentile(values, 0.99):6.2f} ms  max {max(values) / 1e6:6.2f} ms")
        everything = [value for values in latencies.values() for value in values]
        print(f"  all pages: p99 {percentile(everything, 0.99):.2f} ms (target < 10 ms)")
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=50_000, help="limit orders in the recorded flow")
    parser.add_argument("--fills", type=int, default=1_000_000, help="fills in the store for the query test")
    parser.add_argument("--queries", type=int, default=4_000)
    parser.add_argument("--batch-records", type=int, default=2_000, help="journal records per transaction")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--directory", default=None, help="where the SQLite file goes (default: a temp dir)")
    arguments = parser.parse_args(argv)

    print(f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()},"
          f" {os.cpu_count()} CPUs")
    started = time.perf_counter()
    records = journal_records(arguments.orders, arguments.seed)
    print(f"journal: {len(records):,} records from {arguments.orders:,} orders"
          f" (generated in {time.perf_counter() - started:.1f} s)")
    for backend in arguments.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(dir=arguments.directory) as directory:
                run_backend("sqlite", f"sqlite:///{Path(directory).resolve() / 'bench.sqlite3'}", records, arguments)
        elif backend == "postgresql":
            import psycopg

            schema = f"zmx_bench_{secrets.token_hex(4)}"
            with psycopg.connect(arguments.postgres_url, autocommit=True) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
                try:
                    separator = "&" if "?" in arguments.postgres_url else "?"
                    run_backend("postgresql", f"{arguments.postgres_url}{separator}options=-csearch_path%3D{schema}",
                                records, arguments)
                finally:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        else:
            parser.error(f"unknown backend {backend!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
