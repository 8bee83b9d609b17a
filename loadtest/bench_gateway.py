"""Benchmark REST order entry: gunicorn -> Falcon -> ZeroMQ -> matcher -> back, next to a constant.

Servers (started fresh, on free loopback ports, temporary data directory):
- a matcher (`python -m common.cli matcher`, fsync `--fsync`, default batch);
- the gateway (`python -m common.cli gateway`): `--workers` gunicorn gthread workers with
  `--threads` threads each, the SQLite store, signed requests checked, the replay guard and
  the rate limiter on (limits set far above the load so they never refuse), the access log
  at `--log-level`;
- the baseline: the same gunicorn settings (gateway.server.gunicorn_options, so the same
  worker class, workers, threads, keep-alive) serving a bare Falcon app whose responder
  for `POST /api/v1/account/orders` answers a constant envelope without reading the body.

Every target gets the identical request: `POST /api/v1/account/orders` with a signed
JSON limit order (a random side, a price 0-20 ticks either side of 100.00, 1-5 lots, so
about half the orders trade and the book stays small), one trader account per client
connection. The gateway also gets `GET /api/v1/time` (middleware only, no matcher) as a
third column, which splits the gateway's own cost from the matcher round trip; and, with
`--targets ...,binance`, the same order as `POST /api/v3/order` in Binance's dialect (a
signed form body: symbol, side, LIMIT, GTC, quantity, price, newClientOrderId, timestamp).

Load generator: `--clients` processes, each driving keep-alive sockets with a selector
loop and a minimal HTTP/1.1 parser (status line and Content-Length); a request is built and
signed (HMAC-SHA256) when it is sent. Two phases per target:

1. peak: closed loop, `--connections` connections per process, each with one request in
   flight, for `--seconds`; reported: responses/s (all 2xx, or the run says how many were
   not) and the latency percentiles under saturation (these include queueing: closed-loop
   latency is not the paced one).
2. paced at `--load` (0.8) x that target's peak: requests scheduled at t0 + i/rate before
   the phase starts; the latency of a request runs from its scheduled time to the end of
   its response, so a stall delays every request that should have been sent during it
   (no coordinated omission); a request due while all of a process's connections are busy
   waits for one, and that wait counts too.

The machine's cores are shared by the load generator, gunicorn and the matcher; the
script prints the machine, the load average and each server's CPU time per request.

    python loadtest/bench_gateway.py                 # all targets, both phases (~80 s)
    python loadtest/bench_gateway.py --seconds 5 --profile  # py-spy on one gateway worker
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import multiprocessing
import os
import platform
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from loadtest.bench_zmq import Matcher, free_ports  # noqa: E402

try:
    import psutil
except ImportError:
    psutil = None

ORDER_PATH = "/api/v1/account/orders"
TIME_PATH = "/api/v1/time"
BINANCE_ORDER_PATH = "/api/v3/order"
PAIR = "BTC-USDT"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


# ---------------------------------------------------------------- servers


def write_config(directory: Path, matcher: Matcher, port: int, args: argparse.Namespace) -> Path:
    lines = [f"http_port = {port}", f"ws_port = {free_ports(1)[0]}", 'admin_token = "bench-admin-token"',
             f'log_level = "{args.log_level}"']
    lines += matcher.config_path.read_text().replace('log_level = "info"\n', "").splitlines()
    lines += ["", "[gateway]", f"workers = {args.workers}", f"threads = {args.threads}",
              "rate_limit_key_weight = 1000000000", "rate_limit_ip_weight = 1000000000"]
    path = directory / f"gateway-{port}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server:
    """A gunicorn master (the gateway or the constant baseline) and its workers."""

    def __init__(self, name: str, command: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("ZMX_") and key != "PROMETHEUS_MULTIPROC_DIR"}
        env["PYTHONPATH"] = str(REPO_ROOT)
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.popen.poll() is not None:
                raise SystemExit(f"{name} exited:\n{log_path.read_text()[-3000:]}")
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                probe.request("GET", TIME_PATH)
                probe.getresponse().read()
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not answer:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.05)

    def workers(self) -> list:
        if psutil is None:
            return []
        return psutil.Process(self.popen.pid).children()

    def cpu_seconds(self) -> float:
        if psutil is None:
            return float("nan")
        total = 0.0
        for process in [psutil.Process(self.popen.pid), *self.workers()]:
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def serve_constant(config_path: str) -> None:
    """Run the baseline: gunicorn with the gateway's settings serving a constant."""
    import falcon

    from common.config import load_config
    from gateway.server import GatewayApplication, gunicorn_options

    body = orjson.dumps({"success": True, "data": {"order_id": 1, "status": "NEW"}, "timestamp": 0})

    class Constant:
        def on_get(self, req, resp):
            resp.data = body
            resp.content_type = falcon.MEDIA_JSON

        on_post = on_get

    def load():
        app = falcon.App()
        app.add_route(ORDER_PATH, Constant())
        app.add_route(TIME_PATH, Constant())
        return app

    GatewayApplication(gunicorn_options(load_config(config_path)), load).run()


def set_up(port: int, traders: int) -> list[tuple[str, str]]:
    """Create the market and funded traders through the admin API; return their keys."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": "Bearer bench-admin-token", "Content-Type": "application/json"}

    def admin(path: str, body: dict) -> dict:
        connection.request("POST", path, orjson.dumps(body), headers)
        response = connection.getresponse()
        data = orjson.loads(response.read())
        if response.status != 201:
            raise SystemExit(f"{path}: {data}")
        return data["data"]

    admin("/api/v1/admin/markets", {"pair": PAIR, "tick_size": "0.01", "lot_size": "0.001",
                                    "maker_fee_bps": -1, "taker_fee_bps": 5})
    keys = []
    for number in range(traders):
        trader = admin("/api/v1/admin/traders", {"username": f"bench{number}"})
        for asset, amount in (("USDT", "1000000000"), ("BTC", "10000000")):
            admin("/api/v1/admin/deposits", {"trader_id": trader["trader_id"], "asset": asset, "amount": amount})
        keys.append((trader["api_key"], trader["api_secret"]))
    connection.close()
    return keys


# ---------------------------------------------------------------- the load generator


class Connection:
    __slots__ = ("sock", "key", "secret", "buffer", "scheduled", "busy")

    def __init__(self, port: int, key: str, secret: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.key = key
        self.secret = secret
        self.buffer = b""
        self.scheduled = 0
        self.busy = False


def build_request(connection: Connection, path: str, rng: random.Random, client_order_id: bytes) -> bytes:
    if path == TIME_PATH:
        return b"GET /api/v1/time HTTP/1.1\r\nHost: bench\r\n\r\n"
    if path == BINANCE_ORDER_PATH:
        return build_binance_request(connection, rng, client_order_id)
    body = (b'{"pair":"BTC-USDT","side":"%s","type":"limit","price":"%d.%02d","quantity":"0.00%d",'
            b'"client_order_id":"%s"}' % (b"buy" if rng.random() < 0.5 else b"sell",
                                          *divmod(10000 + rng.randint(-20, 20), 100), rng.randint(1, 5),
                                          client_order_id))
    timestamp = b"%d" % (time.time_ns() // 1_000_000)
    signature = hmac.new(connection.secret, timestamp + b"POST" + path.encode() + body, hashlib.sha256).hexdigest()
    return (b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-API-Key: %s\r\nX-Timestamp: %s\r\nX-Signature: %s\r\n\r\n%s" % (
                path.encode(), len(body), connection.key.encode(), timestamp, signature.encode(), body))


def build_binance_request(connection: Connection, rng: random.Random, client_order_id: bytes) -> bytes:
    """The same order in Binance's dialect: a form body signed with HMAC-SHA256 of the parameters."""
    params = (b"symbol=BTCUSDT&side=%s&type=LIMIT&timeInForce=GTC&quantity=0.00%d&price=%d.%02d"
              b"&newClientOrderId=%s&timestamp=%d" % (b"BUY" if rng.random() < 0.5 else b"SELL", rng.randint(1, 5),
                                                      *divmod(10000 + rng.randint(-20, 20), 100), client_order_id,
                                                      time.time_ns() // 1_000_000))
    body = params + b"&signature=" + hmac.new(connection.secret, params, hashlib.sha256).hexdigest().encode()
    return (b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\nX-MBX-APIKEY: %s\r\n\r\n%s" % (
                BINANCE_ORDER_PATH.encode(), len(body), connection.key.encode(), body))


def parse_response(connection: Connection) -> int | None:
    """Return the status of a complete response at the head of the buffer (and drop it), else None."""
    buffer = connection.buffer
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    total = end + 4 + length
    if len(buffer) < total:
        return None
    connection.buffer = buffer[total:]
    return int(head[9:12])


def run_client(port: int, path: str, keys: list[tuple[str, str]], connections: int, seconds: float,
               rate: float | None, seed: int, start_at: float, results) -> None:
    """One load-generator process: closed loop (rate None) or paced at `rate` requests/s."""
    rng = random.Random(seed)
    run_id = os.urandom(4).hex().encode()  # client_order_ids unique across phases and runs
    selector = selectors.DefaultSelector()
    pool = []
    for index in range(connections):
        key, secret = keys[index % len(keys)]
        connection = Connection(port, key, secret.encode())
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        pool.append(connection)
    latencies: list[int] = []
    statuses: dict[int, int] = {}
    sequence = 0
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter_ns()
    end = started + int(seconds * 1e9)
    interval = int(1e9 / rate) if rate else 0
    next_due = started
    waiting: deque[int] = deque()  # scheduled times of paced requests with no free connection yet
    free = deque(pool) if rate else deque()

    def send(connection: Connection, scheduled: int) -> None:
        nonlocal sequence
        sequence += 1
        connection.scheduled = scheduled
        connection.busy = True
        connection.sock.sendall(build_request(connection, path, rng, b"%s-%d" % (run_id, sequence)))

    if not rate:
        for connection in pool:
            send(connection, time.perf_counter_ns())
    in_flight = connections if not rate else 0
    while True:
        now = time.perf_counter_ns()
        if rate:
            while next_due <= now and next_due < end:
                waiting.append(next_due)
                next_due += interval
            while waiting and free:
                # Oldest idle connection first, so none idles past the server's keep-alive.
                send(free.popleft(), waiting.popleft())
                in_flight += 1
            if now >= end and not waiting and in_flight == 0:
                break
            timeout = max(0.0, (next_due - time.perf_counter_ns()) / 1e9) if next_due < end else 0.05
        else:
            if now >= end and in_flight == 0:
                break
            timeout = 0.05
        for selected, _ in selector.select(timeout):
            connection = selected.data
            data = connection.sock.recv(65536)
            if not data:
                raise SystemExit("the server closed a connection")
            connection.buffer += data
            while True:
                status = parse_response(connection)
                if status is None:
                    break
                finished = time.perf_counter_ns()
                latencies.append(finished - connection.scheduled)
                statuses[status] = statuses.get(status, 0) + 1
                connection.busy = False
                in_flight -= 1
                if rate:
                    free.append(connection)
                elif finished < end:
                    send(connection, finished)
                    in_flight += 1
    elapsed = (time.perf_counter_ns() - started) / 1e9
    for connection in pool:
        connection.sock.close()
    results.put((latencies, statuses, elapsed))


def drive(port: int, path: str, keys: list[tuple[str, str]], args: argparse.Namespace,
          rate: float | None) -> dict:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    per_process = None if rate is None else rate / args.clients
    start_at = time.time() + 0.5
    share = max(1, len(keys) // args.clients)
    processes = [context.Process(target=run_client, args=(
        port, path, keys[index * share:(index + 1) * share] or keys, args.connections, args.seconds, per_process,
        args.seed + index, start_at, results)) for index in range(args.clients)]
    for process in processes:
        process.start()
    gathered = [results.get(timeout=args.seconds + 120) for _ in processes]
    for process in processes:
        process.join(10)
    latencies = sorted(latency for part in gathered for latency in part[0])
    statuses: dict[int, int] = {}
    for part in gathered:
        for status, count in part[1].items():
            statuses[status] = statuses.get(status, 0) + count
    elapsed = max(part[2] for part in gathered)

    def percentile(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] / 1e6 if latencies else float("nan")

    return {"requests": len(latencies), "per_second": len(latencies) / elapsed, "statuses": statuses,
            "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
            "p999": percentile(0.999), "max": latencies[-1] / 1e6 if latencies else float("nan")}


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers (CPU count)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument("--connections", type=int, default=16, help="connections per client process (16)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase (8)")
    parser.add_argument("--load", type=float, default=0.8, help="paced rate as a fraction of the peak (0.8)")
    parser.add_argument("--traders", type=int, default=32, help="trader accounts (32)")
    parser.add_argument("--fsync", default="batch", choices=("always", "batch", "off"))
    parser.add_argument("--log-level", default="info", help="gateway log level (info: one access line a request)")
    parser.add_argument("--targets", default="constant,time,orders",
                        help="which of constant,time,orders,binance (binance: POST /api/v3/order)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--profile", action="store_true", help="py-spy one worker of each server during peak")
    parser.add_argument("--serve-constant", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_constant:
        serve_constant(args.serve_constant)
        return

    directory = Path(tempfile.mkdtemp(prefix="zmx-bench-gateway-"))
    import zmq

    context = zmq.Context()
    matcher = Matcher(directory, args.fsync, None, None)
    servers: list[Server] = []
    try:
        matcher.start(context)
        gateway_port, constant_port = free_ports(2)
        gateway_config = write_config(directory, matcher, gateway_port, args)
        constant_config = write_config(directory, matcher, constant_port, args)
        gateway = Server("gateway", [sys.executable, "-m", "common.cli", "--config", str(gateway_config), "gateway"],
                         gateway_port, directory / "gateway.log")
        servers.append(gateway)
        constant = Server("constant", [sys.executable, str(Path(__file__).resolve()), "--serve-constant",
                                       str(constant_config)], constant_port, directory / "constant.log")
        servers.append(constant)
        keys = set_up(gateway_port, args.traders)
        print_header(args)
        targets = {"constant": (constant, ORDER_PATH, "constant Falcon endpoint, same gunicorn settings"),
                   "time": (gateway, TIME_PATH, "gateway GET /api/v1/time (middleware, no matcher)"),
                   "orders": (gateway, ORDER_PATH, "gateway POST /api/v1/account/orders (-> matcher)"),
                   "binance": (gateway, BINANCE_ORDER_PATH, "gateway POST /api/v3/order, the same order in Binance's "
                                                            "dialect (-> matcher)")}
        results = {}
        for name in args.targets.split(","):
            server, path, label = targets[name]
            results[name] = measure(server, path, keys, args, matcher, label)
        print_summary(results)
    finally:
        for server in servers:
            server.close()
        matcher.close()
        context.destroy(linger=0)
        shutil.rmtree(directory, ignore_errors=True)


def measure(server: Server, path: str, keys, args: argparse.Namespace, matcher: Matcher, label: str) -> dict:
    drive(server.port, path, keys, argparse.Namespace(**{**vars(args), "seconds": 1.0}), None)  # warm up
    cpu_before = server.cpu_seconds()
    matcher_before = matcher.cpu().get("total", float("nan"))
    profiler = None
    if args.profile and server.workers():
        name = {ORDER_PATH: "orders", TIME_PATH: "time", BINANCE_ORDER_PATH: "binance"}[path]
        output = Path(tempfile.gettempdir()) / f"bench-gateway-{server.name}-{name}.txt"
        profiler = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
                                     "--gil", "-o", str(output),
                                     "-d", str(int(args.seconds)), "-p", str(server.workers()[0].pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    peak = drive(server.port, path, keys, args, None)
    if profiler is not None:
        profiler.wait()
        print(f"profile of one worker (py-spy raw, collapsed stacks): {output}")
    peak["server_cpu_us"] = (server.cpu_seconds() - cpu_before) / max(peak["requests"], 1) * 1e6
    peak["matcher_cpu_us"] = (matcher.cpu().get("total", float("nan")) - matcher_before) / max(peak["requests"], 1) \
        * 1e6
    paced = drive(server.port, path, keys, args, peak["per_second"] * args.load)
    print(f"\n{label}")
    for phase, result in (("peak (closed loop)", peak), (f"paced at {args.load:.0%} of peak", paced)):
        print(f"  {phase:<22} {result['per_second']:>8,.0f} req/s  p50 {result['p50']:6.2f} ms  "
              f"p90 {result['p90']:6.2f}  p99 {result['p99']:6.2f}  p99.9 {result['p999']:6.2f}  "
              f"max {result['max']:6.1f}  statuses {result['statuses']}")
    print(f"  CPU per request at peak: servers {peak['server_cpu_us']:.0f} us, matcher {peak['matcher_cpu_us']:.0f} us")
    return {"peak": peak, "paced": paced}


def print_header(args: argparse.Namespace) -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average before: {', '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print(f"gunicorn: {args.workers} gthread workers x {args.threads} threads; load: {args.clients} processes x "
          f"{args.connections} keep-alive connections; {args.seconds:g} s per phase; fsync {args.fsync}; "
          f"log level {args.log_level}")


def print_summary(results: dict) -> None:
    print(f"\nload average after: {', '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print("\n| target | peak req/s | peak p50 ms | peak p99 ms | paced req/s | paced p50 ms | paced p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        peak, paced = result["peak"], result["paced"]
        print(f"| {name} | {peak['per_second']:,.0f} | {peak['p50']:.2f} | {peak['p99']:.2f} | "
              f"{paced['per_second']:,.0f} | {paced['p50']:.2f} | {paced['p99']:.2f} |")
    if "orders" in results and "constant" in results:
        ratio = results["orders"]["peak"]["per_second"] / results["constant"]["peak"]["per_second"]
        p99 = results["orders"]["paced"]["p99"]
        print(f"\norder entry / constant endpoint throughput: {ratio:.0%} (target >= 70%)")
        print(f"order entry p99 at 80% of its peak: {p99:.2f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
