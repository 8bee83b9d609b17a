"""Benchmark the matching core in-process: throughput and per-operation latency.

Order mix (seeded, generated in full before any timing):
    `--orders` GTC limit orders on one market from `--accounts` accounts, side at random.
    70% rest at 0-49 ticks behind the opposite best (a buy at best_ask - 1 - k), 30% cross
    it by 0-4 ticks (a buy at best_ask + k), quantities 1-100 lots. The opposite best is
    taken from a reference matcher fed the same flow during generation, so the prices
    track the book as it really is at that moment. `--cancel-ratio` of the orders, picked
    at random, are canceled at a random later point of the flow; a cancel of an order that
    has filled meanwhile still counts as an operation (the engine answers it with a Reject).
    The market charges a 5 bps taker fee and pays a 1 bps maker rebate.

Measurement:
    Each matcher runs the flow `--repeat` times in two kinds of pass, each on fresh state.
    A throughput pass reads the clock once around the whole loop (so it includes the
    loop's own ~0.2 us per operation); the best and the median pass are reported, with
    wall and CPU time (CPU time leaves out the time the process was descheduled, which
    matters on a shared machine). A latency pass reads `time.perf_counter_ns()` right
    before and after every call; the median cost of an empty timer pair is measured and
    subtracted. Of the latency passes, the least disturbed one (smallest sum) is reported.
    The garbage collector stays enabled, as in the server, but everything built during
    setup (the flow, the funded accounts) is moved out of its reach with `gc.freeze()`
    before each pass, so collections scan only what the run itself allocates.

The same flow also runs on `baseline_matcher.py` (SortedDict + deque, no accounts, no
fees, no events); with `--stp none` (the default) both must end with the same trades
and the same depth, and the engine must pass `check_invariants()` (outside timing).

    python loadtest/bench_matcher.py --orders 200000 --cancel-ratio 0.2 --seed 42
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

if not __package__:
    # Run as a script (`python loadtest/bench_matcher.py`): make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.types import OrderType, Side, StpMode, TimeInForce  # noqa: E402
from loadtest.baseline_matcher import BaselineMatcher  # noqa: E402
from matcher.engine import Engine, Reject  # noqa: E402

SYMBOL = "BTC-USDT"
START_PRICE = 100_000  # ticks of 0.01 USDT
MAKER_FEE_BPS = -1  # a rebate, so both fee roundings are exercised
TAKER_FEE_BPS = 5
QUOTE_FUNDING = 10**16  # units of 1e-8 USDT: far beyond what any account can spend here
BASE_FUNDING = 10**14  # units of 1e-8 BTC
TS_STEP_NS = 1_000

PLACE = 0
CANCEL = 1

# What each operation turned out to be, for the latency breakdown.
CATEGORIES = ("place, no trade", "place, 1 trade", "place, 2+ trades", "cancel", "cancel, not open")
NO_TRADE, ONE_TRADE, SEVERAL_TRADES, CANCELED, NOT_OPEN = range(len(CATEGORIES))


class Pass:
    """What one run of the flow measured."""

    __slots__ = ("wall_s", "cpu_s", "latencies", "categories", "rejects", "trades")

    def __init__(self, wall_s, cpu_s, latencies, categories, rejects, trades):
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        self.latencies: list[int] = latencies
        self.categories: bytearray = categories
        self.rejects: dict[str, int] = rejects
        self.trades: int = trades


def generate_flow(orders: int, cancel_ratio: float, seed: int, accounts: int) -> list[tuple]:
    """Return the operations: (PLACE, index, account, side, price, lots) and (CANCEL, index, account).

    `index` is the order's position among the orders; the runner maps it to the id the
    matcher gave the order.
    """
    rng = random.Random(seed)
    canceled = rng.sample(range(orders), int(orders * cancel_ratio))
    cancels_after: list[list[int]] = [[] for _ in range(orders)]
    for index in canceled:
        # Strictly after the order itself; after the last order means at the very end.
        cancels_after[rng.randint(index + 1, orders) - 1].append(index)
    owners = [rng.randint(1, accounts) for _ in range(orders)]
    reference = BaselineMatcher()
    last_price = START_PRICE
    flow: list[tuple] = []
    for index in range(orders):
        side = rng.randint(0, 1)
        lots = rng.randint(1, 100)
        crossing = rng.random() < 0.3
        best_bid, best_ask = reference.best_bid(), reference.best_ask()
        if side == Side.BUY:
            opposite = best_ask if best_ask is not None else (best_bid or last_price) + 1
            price = opposite + rng.randint(0, 4) if crossing else opposite - 1 - rng.randint(0, 49)
        else:
            opposite = best_bid if best_bid is not None else (best_ask or last_price) - 1
            price = opposite - rng.randint(0, 4) if crossing else opposite + 1 + rng.randint(0, 49)
        price = max(price, 1)
        last_price = price
        flow.append((PLACE, index, owners[index], side, price, lots))
        reference.place(index, side, price, lots)
        later = cancels_after[index]
        rng.shuffle(later)
        for canceled_index in later:
            flow.append((CANCEL, canceled_index, owners[canceled_index]))
            reference.cancel(canceled_index)
    return flow


def build_engine(accounts: int, max_open_orders: int) -> Engine:
    """Return an engine with one fee-charging market and `accounts` generously funded traders."""
    engine = Engine(max_open_orders=max_open_orders)
    market = engine.create_market(SYMBOL, "0.01", "0.0001", "0.0001", "0", MAKER_FEE_BPS, TAKER_FEE_BPS, 0)
    if isinstance(market, Reject):
        raise SystemExit(f"create_market: {market!r}")
    for account_id in range(1, accounts + 1):
        engine.deposit(account_id, market.base, BASE_FUNDING, 0)
        engine.deposit(account_id, market.quote, QUOTE_FUNDING, 0)
    return engine


def run_engine(engine: Engine, flow: list[tuple], stp: StpMode, timed: bool) -> Pass:
    """Feed `flow` to `engine`, timing every call when `timed`."""
    place, cancel = engine.place, engine.cancel
    limit, gtc = OrderType.LIMIT, TimeInForce.GTC
    sides = (Side.BUY, Side.SELL)
    order_ids = [0] * len(flow)
    latencies = [0] * len(flow) if timed else []
    categories = bytearray(len(flow)) if timed else bytearray()
    rejects: dict[str, int] = {}
    clock = time.perf_counter_ns
    ts = 0
    cpu_started = time.process_time()
    started = time.perf_counter()
    for position, operation in enumerate(flow):
        ts += TS_STEP_NS
        if operation[0] == PLACE:
            _, index, account_id, side, price, lots = operation
            side = sides[side]
            if timed:
                t0 = clock()
                result = place(account_id, SYMBOL, side, limit, gtc, price, lots, None, False, stp, None, ts)
                latencies[position] = clock() - t0
                trades = len(engine.public[0].trades) if engine.public else 0
                categories[position] = NO_TRADE if not trades else ONE_TRADE if trades == 1 else SEVERAL_TRADES
            else:
                result = place(account_id, SYMBOL, side, limit, gtc, price, lots, None, False, stp, None, ts)
            if type(result) is Reject:
                rejects[result.code.name] = rejects.get(result.code.name, 0) + 1
            else:
                order_ids[index] = result.order_id
        else:
            _, index, account_id = operation
            if timed:
                t0 = clock()
                result = cancel(account_id, order_ids[index], None, ts)
                latencies[position] = clock() - t0
                categories[position] = NOT_OPEN if type(result) is Reject else CANCELED
            else:
                result = cancel(account_id, order_ids[index], None, ts)
            if type(result) is Reject:
                rejects[result.code.name] = rejects.get(result.code.name, 0) + 1
    wall = time.perf_counter() - started
    return Pass(wall, time.process_time() - cpu_started, latencies, categories, rejects, engine.trade_counter)


def run_baseline(matcher: BaselineMatcher, flow: list[tuple], timed: bool) -> Pass:
    """Feed `flow` to the baseline matcher, timing every call when `timed`."""
    place, cancel = matcher.place, matcher.cancel
    latencies = [0] * len(flow) if timed else []
    categories = bytearray(len(flow)) if timed else bytearray()
    misses = 0
    clock = time.perf_counter_ns
    cpu_started = time.process_time()
    started = time.perf_counter()
    for position, operation in enumerate(flow):
        if operation[0] == PLACE:
            _, index, _, side, price, lots = operation
            if timed:
                t0 = clock()
                trades = place(index, side, price, lots)
                latencies[position] = clock() - t0
                categories[position] = NO_TRADE if not trades else ONE_TRADE if trades == 1 else SEVERAL_TRADES
            else:
                place(index, side, price, lots)
        else:
            if timed:
                t0 = clock()
                found = cancel(operation[1])
                latencies[position] = clock() - t0
                categories[position] = CANCELED if found else NOT_OPEN
            else:
                found = cancel(operation[1])
            misses += not found
    wall = time.perf_counter() - started
    rejects = {"cancel of a closed order": misses} if misses else {}
    return Pass(wall, time.process_time() - cpu_started, latencies, categories, rejects, matcher.trades)


def timer_overhead_ns(samples: int = 200_000) -> int:
    """Return the median cost of an empty `perf_counter_ns()` pair, as the timed loop pays it."""
    clock = time.perf_counter_ns
    costs = [0] * samples
    for position in range(samples):
        t0 = clock()
        costs[position] = clock() - t0
    return int(statistics.median(costs))


def percentiles_us(latencies: list[int], overhead_ns: int) -> dict[str, float]:
    """Return p50/p90/p99/p99.9/max in microseconds, timer overhead subtracted."""
    ordered = sorted(latencies)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        return max(ordered[round(fraction * last)] - overhead_ns, 0) / 1_000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": at(1.0)}


def settle_heap(collect: bool) -> None:
    """Collect, then freeze every surviving object so the timed run's collections skip them."""
    gc.collect()
    gc.freeze()
    if not collect:
        gc.disable()


def profile_engine(flow: list[tuple], accounts: int, stp: StpMode, profiler_name: str) -> None:
    """Run one untimed engine pass under a profiler and print where the time goes."""
    engine = build_engine(accounts, len(flow))
    settle_heap(collect=True)
    if profiler_name == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        run_engine(engine, flow, stp, timed=False)
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    else:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        run_engine(engine, flow, stp, timed=False)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    engine.check_invariants()


def print_breakdown(name: str, latency_pass: Pass, overhead_ns: int) -> None:
    """Print count, p50, p99 and share of the time per kind of operation."""
    groups: list[list[int]] = [[] for _ in CATEGORIES]
    for latency, category in zip(latency_pass.latencies, latency_pass.categories):
        groups[category].append(latency)
    total = sum(latency_pass.latencies)
    print(f"{name} by operation: {'count':>8}{'p50 us':>9}{'p99 us':>9}{'time share':>12}")
    for category, latencies in zip(CATEGORIES, groups):
        if latencies:
            figures = percentiles_us(latencies, overhead_ns)
            print(f"  {category:<24}{len(latencies):>8}{figures['p50']:>9.2f}{figures['p99']:>9.2f}"
                  f"{sum(latencies) / total:>12.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--cancel-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="passes of each kind per matcher (best is reported)")
    parser.add_argument("--stp", choices=[mode.wire for mode in StpMode], default="none",
                        help="self-trade prevention of every order; only 'none' keeps the baseline comparable")
    parser.add_argument("--gc", choices=["on", "off"], default="on",
                        help="'off' disables the collector during passes, to measure its share")
    parser.add_argument("--profile", choices=["none", "pyinstrument", "cprofile"], default="none",
                        help="profile one untimed engine pass instead of benchmarking")
    args = parser.parse_args(argv)
    stp = StpMode[args.stp.upper()]
    collect = args.gc == "on"

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"{platform.python_implementation()} {platform.python_version()}, load average "
          f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    started = time.perf_counter()
    flow = generate_flow(args.orders, args.cancel_ratio, args.seed, args.accounts)
    cancels = sum(1 for operation in flow if operation[0] == CANCEL)
    print(f"flow: {args.orders} limit orders + {cancels} cancels = {len(flow)} operations, "
          f"{args.accounts} accounts, seed {args.seed}, stp {args.stp} "
          f"(generated in {time.perf_counter() - started:.1f} s, not timed)")

    if args.profile != "none":
        profile_engine(flow, args.accounts, stp, args.profile)
        return 0

    settle_heap(collect=True)
    overhead = timer_overhead_ns()
    print(f"timer: an empty perf_counter_ns() pair costs {overhead} ns (median); subtracted from every latency")
    print(f"gc: {args.gc}; setup objects frozen with gc.freeze() before each pass; thresholds {gc.get_threshold()}")

    throughput: dict[str, list[Pass]] = {"baseline": [], "engine": []}
    latency: dict[str, list[Pass]] = {"baseline": [], "engine": []}
    baseline = engine = None
    for _ in range(args.repeat):
        for timed in (False, True):
            # Let the previous pass's matchers go before the next freeze: the engine's
            # orders and levels reference each other, and frozen cycles are never freed.
            baseline = engine = None
            baseline = BaselineMatcher()
            settle_heap(collect)
            (latency if timed else throughput)["baseline"].append(run_baseline(baseline, flow, timed))
            gc.enable()
            engine = build_engine(args.accounts, len(flow))
            settle_heap(collect)
            (latency if timed else throughput)["engine"].append(run_engine(engine, flow, stp, timed))
            gc.enable()

    operations = len(flow)
    print()
    print(f"{'matcher':<10}{'ops':>8}{'wall s':>8}{'ops/s':>9}{'median':>9}{'CPU':>9}{'p50 us':>8}{'p90 us':>8}"
          f"{'p99 us':>8}{'p99.9 us':>9}{'max us':>9}{'trades':>8}")
    chosen: dict[str, Pass] = {}
    for name in ("baseline", "engine"):
        passes = throughput[name]
        wall = min(run.wall_s for run in passes)
        median = statistics.median(operations / run.wall_s for run in passes)
        cpu = max(operations / run.cpu_s for run in passes)
        chosen[name] = quietest = min(latency[name], key=lambda run: sum(run.latencies))
        figures = percentiles_us(quietest.latencies, overhead)
        print(f"{name:<10}{operations:>8}{wall:>8.3f}{operations / wall:>9,.0f}{median:>9,.0f}{cpu:>9,.0f}"
              f"{figures['p50']:>8.2f}{figures['p90']:>8.2f}"
              f"{figures['p99']:>8.2f}{figures['p99.9']:>9.2f}{figures['max']:>9.1f}{quietest.trades:>8}")
    baseline_best = min(run.wall_s for run in throughput["baseline"])
    engine_best = min(run.wall_s for run in throughput["engine"])
    print("ops/s, wall s: best throughput pass; median: median pass; CPU: best pass in CPU time; "
          "latencies: least disturbed latency pass")
    print(f"engine / baseline time per operation: {engine_best / baseline_best:.2f}x (best passes)")
    print()
    for name in ("baseline", "engine"):
        print_breakdown(name, chosen[name], overhead)
        rejects = chosen[name].rejects
        if rejects:
            print(f"  rejects: {', '.join(f'{count} x {code}' for code, count in sorted(rejects.items()))}")

    started = time.perf_counter()
    engine.check_invariants()
    print(f"\nengine.check_invariants(): ok ({time.perf_counter() - started:.1f} s, not timed)")
    if stp == StpMode.NONE:
        same_book = engine.markets[SYMBOL].book.depth() == baseline.depth()
        same_trades = engine.trade_counter == baseline.trades
        print(f"engine vs baseline: same trades {same_trades}, same final depth {same_book}")
        if not (same_book and same_trades):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
