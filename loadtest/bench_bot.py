"""Benchmark one bot: the same order flow over raw ZeroMQ (BotClient) and over REST (RestClient).

Servers (started fresh on free loopback ports, temporary data directory, not timed): a
matcher (`zmx matcher`, fsync `--fsync`, default batch) and the gateway (`zmx gateway`,
`--workers` gunicorn gthread workers x `--threads`, the SQLite store, signatures and the
replay guard checked, rate limits set far above the load, access log at `--log-level`).
One trader is created and funded through the admin API, and its bot key is made and
registered with `zmx admin register-bot-key`.

The flow, the same on both paths, through the SDK as a user would write it: one client,
one request in flight (a bot that acts, waits for the answer, acts again): place a GTC
post-only limit buy far below the market (it never trades) with a fresh client_order_id,
then cancel it by order id; repeat for `--seconds`, after `--warmup` cycles that are not
counted. The bot path also drains its unsolicited account events after each cycle (two
per cycle), as a bot reading its execution reports does. The client's garbage collector is
off during the timed part on both paths.

Reported side by side: orders per second (place + cancel cycles), requests per second,
and each request's round trip (the SDK call, from before it encodes the request to after
it decoded the answer) at p50, p90, p99, p99.9 and max, for place and for cancel, the CPU
time the servers (matcher; matcher and gateway) and the client spent per request, and,
to show what each path costs before any engine work, the round trip of a request that
does none: the matcher's `ping` and the gateway's `GET /api/v1/time`. The client and the
servers share the machine's cores.

    python loadtest/bench_bot.py                  # 10 s per path
    python loadtest/bench_bot.py --seconds 5 --log-level warning
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from common.config import load_config  # noqa: E402
from common.sdk import BotClient, BotKey, RestClient  # noqa: E402
from loadtest.bench_gateway import PAIR, Server, set_up, write_config  # noqa: E402
from loadtest.bench_zmq import Matcher, cpu_model, free_ports  # noqa: E402

PRICE = "10.00"  # far below anything the flow trades at: every order rests until canceled
QUANTITY = "0.001"


def run(client, seconds: float, warmup: int, bot: BotClient | None) -> dict:
    """Place and cancel in a closed loop; return the round trips (ns) and the counts."""
    places: list[int] = []
    cancels: list[int] = []
    events = 0
    clock = time.perf_counter_ns
    number = 0

    def cycle() -> tuple[int, int]:
        nonlocal number, events
        number += 1
        started = clock()
        order = client.place(PAIR, "buy", price=PRICE, quantity=QUANTITY, post_only=True,
                             client_order_id=f"bench-{number}")
        placed = clock()
        client.cancel(order["order_id"])
        canceled = clock()
        if bot is not None:
            events += len(bot.poll(0))
        return placed - started, canceled - placed

    for _ in range(warmup):
        cycle()
    events = 0
    gc.collect()
    gc.disable()
    try:
        cpu = time.process_time()
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            place, cancel = cycle()
            places.append(place)
            cancels.append(cancel)
        elapsed = time.monotonic() - started
        cpu = time.process_time() - cpu
    finally:
        gc.enable()
    return {"places": places, "cancels": cancels, "elapsed": elapsed, "events": events,
            "client_cpu_us": cpu / (2 * len(places)) * 1e6}


def floor(call, count: int) -> dict:
    """Return the p50 and p99 round trip (ms) of `count` calls of a request that does no engine work."""
    for _ in range(count // 10):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - started)
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


def summary(result: dict) -> dict:
    both = result["places"] + result["cancels"]
    cycles = len(result["places"])
    out = {"orders_per_second": cycles / result["elapsed"], "requests_per_second": 2 * cycles / result["elapsed"],
           "cycles": cycles, "events": result["events"], "client_cpu_us": result["client_cpu_us"]}
    for name, values in (("place", result["places"]), ("cancel", result["cancels"]), ("all", both)):
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
            out[f"{name} {label}"] = percentile(values, fraction)
        out[f"{name} max"] = max(values) / 1e6
    return out


def cpu_seconds(processes) -> float:
    try:
        import psutil
    except ImportError:
        return float("nan")
    total = 0.0
    for pid in processes:
        process = psutil.Process(pid)
        for member in [process, *process.children(recursive=True)]:
            times = member.cpu_times()
            total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed length of each path (10)")
    parser.add_argument("--warmup", type=int, default=200, help="cycles before timing (200)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument("--fsync", default="batch", choices=("always", "batch", "off"))
    parser.add_argument("--log-level", default="info", help="gateway log level (info: one access line a request)")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="zmx-bench-bot-"))
    context = zmq.Context()
    matcher = Matcher(directory, args.fsync, None, None)
    gateway = None
    try:
        matcher.start(context)
        port = free_ports(1)[0]
        config_path = write_config(directory, matcher, port, args)
        gateway = Server("gateway", [sys.executable, "-m", "common.cli", "--config", str(config_path), "gateway"],
                         port, directory / "gateway.log")
        api_key, api_secret = set_up(port, 1)[0]
        rest = RestClient(f"http://127.0.0.1:{port}", api_key, api_secret)
        trader_id = rest.account()["trader_id"]
        key_file = directory / "bot.key"
        subprocess.run([sys.executable, "-m", "common.cli", "--config", str(config_path), "admin",
                        "register-bot-key", str(trader_id), "--out", str(key_file)],
                       cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
        bot = BotClient.for_pair(load_config(config_path), BotKey.load(key_file), PAIR)
        bot.connect()

        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({cpu_model()}), "
              f"Python {platform.python_version()}")
        print(f"load average before: {', '.join(f'{value:.2f}' for value in os.getloadavg())}")
        print(f"gateway: {args.workers} gthread workers x {args.threads} threads, log level {args.log_level}; "
              f"matcher fsync {args.fsync}")
        print(f"flow: one client, one request in flight: place (post-only limit) then cancel by id; "
              f"{args.seconds:g} s per path after {args.warmup} warm-up cycles\n")

        results = {}
        servers = {"zmq": [matcher.popen.pid], "rest": [matcher.popen.pid, gateway.popen.pid]}
        for name, client, drained in (("zmq", bot, bot), ("rest", rest, None)):
            before = cpu_seconds(servers[name])
            result = summary(run(client, args.seconds, args.warmup, drained))
            result["server_cpu_us"] = (cpu_seconds(servers[name]) - before) / (2 * result["cycles"]) * 1e6
            results[name] = result
        # What each path costs with no engine work: the matcher's ping, the gateway's clock.
        results["zmq"]["floor"] = floor(bot.ping, 2000)
        results["rest"]["floor"] = floor(rest.server_time, 2000)
        print(f"load average after: {', '.join(f'{value:.2f}' for value in os.getloadavg())}\n")
        print_table(results)
        bot.close()
        rest.close()
    finally:
        if gateway is not None:
            gateway.close()
        matcher.close()
        context.destroy(linger=0)
        shutil.rmtree(directory, ignore_errors=True)


def print_table(results: dict) -> None:
    zmq_result, rest_result = results["zmq"], results["rest"]
    rows = [("orders/s (place + cancel)", "orders_per_second", "{:,.0f}"),
            ("requests/s", "requests_per_second", "{:,.0f}")]
    rows += [(f"{name} round trip {label}, ms", f"{name} {label}", "{:.3f}")
             for name in ("place", "cancel", "all") for label in ("p50", "p90", "p99", "p99.9", "max")]
    rows.append(("server CPU per request, us", "server_cpu_us", "{:,.0f}"))
    rows.append(("client CPU per request, us", "client_cpu_us", "{:,.0f}"))
    for result in (zmq_result, rest_result):
        result.update({f"floor {label}": value for label, value in result["floor"].items()})
    rows += [(f"no engine work (ping / GET /time) {label}, ms", f"floor {label}", "{:.3f}") for label in ("p50", "p99")]
    print("| one bot, closed loop | raw ZeroMQ (BotClient) | REST (RestClient) | REST / ZeroMQ |")
    print("|---|---|---|---|")
    for label, key, form in rows:
        fast, slow = zmq_result[key], rest_result[key]
        if key in ("orders_per_second", "requests_per_second"):
            ratio = fast / slow
        else:
            ratio = slow / fast if fast else float("nan")
        print(f"| {label} | {form.format(fast)} | {form.format(slow)} | {ratio:.1f}x |")
    print(f"\nraw ZeroMQ is {zmq_result['orders_per_second'] / rest_result['orders_per_second']:.1f}x REST's orders/s "
          f"and its p99 round trip is {rest_result['all p99'] / zmq_result['all p99']:.1f}x shorter (target >= 10x); "
          f"the bot read {zmq_result['events']:,} account events on the way")


if __name__ == "__main__":
    main()
