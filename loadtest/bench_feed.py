"""Benchmark the WebSocket feed: many clients of one market while orders stream into the matcher.

Setup (not timed): a real matcher subprocess (as in bench_zmq.py, fsync `batch`) with the
`BTC-USDT` market and 100 funded accounts, `--prefill` orders of the flow below sent
before anything is measured (a book some levels deep), and a real `zmx feed` subprocess
(`conflation_ms` from `--conflation-ms`, connection limits lifted) on a free port.

Clients: `--clients` WebSocket connections spread over worker processes of
`--per-worker` connections each. A worker is a lean asyncio (uvloop) client written for
this benchmark on `asyncio.Protocol`: it performs the handshake itself, subscribes each
connection to `orderbook.BTC-USDT` and `trades.BTC-USDT`, parses frame headers, answers
pings, and reads only what it measures from each message (seq, first_seq and ts, with
regular expressions on the bytes, no JSON decoding), so that as much CPU as possible is
left to the feed: the clients, the matcher, the order sender and the feed share the
machine's cores.

Flow: the seeded mix of bench_matcher.py (GTC limit orders, 70% resting 0-49 ticks behind
the opposite best, 30% crossing by 0-4 ticks, 20% of them canceled later), paced at
`--rate` commands per second on a fixed schedule for `--seconds`; every command changes
the book, so the matcher publishes `--rate` market events per second.

Measured, from the moment every client is subscribed and has its snapshot:
- delivered messages/s: WebSocket data messages received by all clients per second;
- kept up: a client kept up if it was never disconnected, every diff's `first_seq` was
  the previous message's `seq` + 1, and within 5 s after the flow stopped it held the
  matcher's final seq;
- latency: receipt time at the client minus the matcher's event timestamp (`ts`, integer
  milliseconds, same host clock), for every trade in `trades` messages (each trade's own
  `ts`: this includes the wait for the next conflation tick) and for every book diff (the
  diff's `ts` is its newest event's); 1 ms buckets. Every connection checks its seq chain,
  but only every `--sample-every`th connection decodes whole messages and records
  latencies (the others read the first 120 bytes of each message): at 1,000 clients
  the clients receive some 20,000 messages and 370,000 trades a second, and recording
  all of them would take the CPU the feed needs. Sampled and unsampled connections
  share the same worker processes, so they wait for the CPU alike. A client that falls behind is charged
  for it: it reads late, so its receipt times are late (no coordinated omission). The
  load generator's own CPU use and the machine's load average are printed with the
  results.

    python loadtest/bench_feed.py                          # 100 and 1,000 clients
    python loadtest/bench_feed.py --clients 100,1000,2000,3000 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import zmq

try:
    import psutil  # CPU time of the processes; not a zmx dependency
except ImportError:
    psutil = None

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from loadtest.bench_matcher import generate_flow  # noqa: E402
from loadtest.bench_zmq import THROUGHPUT_PAIR, Matcher, cpu_model, encode_flow, free_ports, set_up  # noqa: E402

PAIR = THROUGHPUT_PAIR
HISTOGRAM_MS = 10_000
CONNECT_BATCH = 100
READY_TIMEOUT = 60.0
FINAL_TIMEOUT = 5.0

# ---------------------------------------------------------------- the worker (client side)

_HEAD = re.compile(rb'\{"channel":"orderbook[^"]*","type":"(\w+)",(?:"first_seq":(\d+),)?"seq":(\d+)')
_TS = re.compile(rb'"ts":(\d+)')


class Totals:
    """What all connections of one worker measured."""

    def __init__(self) -> None:
        self.recording = False
        self.trade_latency = [0] * (HISTOGRAM_MS + 1)
        self.diff_latency = [0] * (HISTOGRAM_MS + 1)
        self.messages = 0
        self.bytes = 0
        self.trades = 0


class Connection(asyncio.Protocol):
    """One lean WebSocket client connection, subscribed to the book and the trades of PAIR."""

    def __init__(self, totals: Totals, port: int, sampled: bool) -> None:
        self.totals = totals
        self.port = port
        self.sampled = sampled
        self.buffer = bytearray()
        self.open = False
        self.seq = None
        self.breaks = 0
        self.errors: list[str] = []
        self.closed = False
        self.snapshot = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.snapshot.done():
            self.snapshot.set_exception(ConnectionError("closed before the snapshot"))

    def send(self, opcode: int, payload: bytes) -> None:
        # A client must mask its frames; a zero key leaves the payload as it is.
        header = bytes([0x80 | opcode, 0x80 | len(payload)]) if len(payload) < 126 else \
            bytes([0x80 | opcode, 0xFE]) + len(payload).to_bytes(2, "big")
        self.transport.write(header + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.errors.append(buffer[:40].decode(errors="replace"))
                self.transport.close()
                return
            del buffer[:end + 4]
            self.open = True
            self.send(1, b'{"op":"subscribe","channels":["orderbook.%s","trades.%s"]}' % (PAIR.encode(), PAIR.encode()))
        now = time.time() * 1000
        totals = self.totals
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, length = buffer[position], buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length, header = int.from_bytes(buffer[position + 2:position + 4], "big"), 4
            elif length == 127:
                if size - position < 10:
                    break
                length, header = int.from_bytes(buffer[position + 2:position + 10], "big"), 10
            end = position + header + length
            if end > size:
                break
            opcode = first & 0x0F
            start = position + header
            position = end
            if opcode == 1:
                if totals.recording:
                    totals.messages += 1
                    totals.bytes += length
                # Only a sampled connection copies whole messages; the others read the head.
                self.on_text(bytes(buffer[start:end if self.sampled else min(end, start + 120)]), now)
                continue
            if opcode == 9:
                self.send(0xA, bytes(buffer[start:end]))
            elif opcode == 8:
                self.closed = True
        del buffer[:position]

    def on_text(self, payload: bytes, now: float) -> None:
        totals = self.totals
        if payload.startswith(b'{"channel":"orderbook'):
            match = _HEAD.match(payload)
            kind, first_seq, seq = match.group(1), match.group(2), int(match.group(3))
            if kind == b"snapshot":
                self.seq = seq
                if not self.snapshot.done():
                    self.snapshot.set_result(seq)
                return
            if self.seq is None or int(first_seq) != self.seq + 1:
                self.breaks += 1
            self.seq = seq
            if totals.recording and self.sampled:
                ts = int(payload[payload.rindex(b'"ts":') + 5:-1])
                totals.diff_latency[min(max(int(now - ts), 0), HISTOGRAM_MS)] += 1
        elif payload.startswith(b'{"channel":"trades'):
            if totals.recording and self.sampled:
                stamps = _TS.findall(payload)[:-1]  # each trade's ts; the last is the message's
                totals.trades += len(stamps)
                histogram = totals.trade_latency
                for ts in stamps:
                    histogram[min(max(int(now - int(ts)), 0), HISTOGRAM_MS)] += 1
        elif payload.startswith(b'{"op":"error"'):
            self.errors.append(re.search(rb'"code":"(\w+)"', payload).group(1).decode())


async def run_worker(port: int, count: int, sample_every: int) -> None:
    loop = asyncio.get_running_loop()
    totals = Totals()
    connections: list[Connection] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = []
        for _ in range(min(CONNECT_BATCH, count - start)):
            sampled = (start + len(batch)) % sample_every == 0
            batch.append(loop.create_connection(lambda sampled=sampled: Connection(totals, port, sampled),
                                                "127.0.0.1", port))
        for transport, protocol in await asyncio.gather(*batch):
            connections.append(protocol)
        await asyncio.gather(*(connection.snapshot for connection in connections[start:]))
    print("ready", flush=True)
    lines: asyncio.Queue = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline()))
    command = (await lines.get()).split()
    assert command == ["start"], command
    totals.recording = True
    started = time.monotonic()
    command = (await lines.get()).split()
    assert command[0] == "final", command
    totals.recording = False
    recorded = time.monotonic() - started
    final = int(command[1])
    deadline = time.monotonic() + FINAL_TIMEOUT
    while time.monotonic() < deadline and any(
            not connection.closed and (connection.seq or 0) < final for connection in connections):
        await asyncio.sleep(0.05)
    kept_up = sum(1 for connection in connections
                  if not connection.closed and not connection.breaks and connection.seq == final)
    errors: dict[str, int] = {}
    for connection in connections:
        for code in connection.errors:
            errors[code] = errors.get(code, 0) + 1
    print(json.dumps({
        "connections": len(connections), "kept_up": kept_up, "seconds": recorded,
        "closed": sum(connection.closed for connection in connections),
        "breaks": sum(connection.breaks for connection in connections), "errors": errors,
        "messages": totals.messages, "bytes": totals.bytes, "trades": totals.trades,
        "trade_latency": totals.trade_latency, "diff_latency": totals.diff_latency,
    }), flush=True)
    for connection in connections:
        connection.transport.abort()


# ---------------------------------------------------------------- the driver


class Feed:
    """A `zmx feed` subprocess for the matcher's configuration."""

    def __init__(self, matcher: Matcher, directory: Path, conflation_ms: int) -> None:
        self.port = free_ports(1)[0]
        self.config_path = directory / "feed.toml"
        self.config_path.write_text(
            f"ws_port = {self.port}\nhttp_port = {self.port - 1}\n" + matcher.config_path.read_text()
            + f"\n[feed]\nconflation_ms = {conflation_ms}\nmax_connections = 1000000\n"
              "max_connections_per_ip = 1000000\n")
        self.log_path = directory / "feed.log"
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen([sys.executable, "-m", "common.cli", "--config", str(self.config_path), "feed"],
                                          cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.popen.pid) if psutil is not None else None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.popen.poll() is not None:
                raise SystemExit(f"the feed exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if json.loads(response.read())["live"] >= 1:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the feed did not get ready")
            time.sleep(0.05)

    def cpu(self) -> float:
        if self.process is None:
            return math.nan
        times = self.process.cpu_times()
        return times.user + times.system

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def pace(dealer: zmq.Socket, frames: list[bytes], rate: float) -> int:
    """Send frame i at t0 + i / rate, reading replies as they come; return the replies that were rejects."""
    fd = dealer.getsockopt(zmq.FD)
    interval = 1.0 / rate
    started = time.perf_counter() + 0.01
    answered = rejected = 0
    index = 0
    while answered < len(frames):
        now = time.perf_counter()
        while index < len(frames) and started + index * interval <= now:
            dealer.send(frames[index])
            index += 1
        while dealer.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frame = dealer.recv(zmq.NOBLOCK)
            answered += 1
            rejected += b'"ok":false' in frame[:40]
        if index < len(frames):
            wait = started + index * interval - time.perf_counter()
            if wait > 0:
                select.select([fd], [], [], wait)
        elif answered < len(frames):
            select.select([fd], [], [], 0.05)
    return rejected


def percentile(histogram: list[int], fraction: float) -> float:
    total = sum(histogram)
    if not total:
        return math.nan
    target, running = fraction * total, 0
    for value, count in enumerate(histogram):
        running += count
        if running >= target:
            return value
    return HISTOGRAM_MS


def run(clients: int, args: argparse.Namespace, frames: list[bytes]) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="zmx-bench-feed-"))
    context = zmq.Context()
    matcher = Matcher(directory, "batch", None, None)
    feed = None
    workers: list[subprocess.Popen] = []
    try:
        matcher.start(context)
        dealer = set_up(matcher, context, 100, False)
        prefill, flow = frames[:args.prefill], frames[args.prefill:args.prefill + int(args.rate * args.seconds)]
        pace(dealer, prefill, 20_000)
        feed = Feed(matcher, directory, args.conflation_ms)
        sizes = [args.per_worker] * (clients // args.per_worker)
        if clients % args.per_worker:
            sizes.append(clients % args.per_worker)
        connect_started = time.monotonic()
        for size in sizes:
            workers.append(subprocess.Popen([sys.executable, __file__, "--worker", str(feed.port), str(size),
                                             str(args.sample_every)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for worker in workers:
            ready, _, _ = select.select([worker.stdout], [], [], READY_TIMEOUT)
            if not ready or worker.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker did not connect its clients:\n{feed.log_path.read_text()[-3000:]}")
        connect_seconds = time.monotonic() - connect_started
        for worker in workers:
            worker.stdin.write("start\n")
            worker.stdin.flush()
        load_before = os.getloadavg()[0]
        feed_cpu, matcher_cpu = feed.cpu(), matcher.cpu().get("total", math.nan)
        worker_cpu = [psutil.Process(worker.pid).cpu_times() if psutil else None for worker in workers]
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(feed.popen.pid), "--format", "raw",
                 "--rate", "250", "--duration", str(int(args.seconds)), "--output",
                 str(Path(args.profile) / f"feed-{clients}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        rejected = pace(dealer, flow, args.rate)
        flow_seconds = time.monotonic() - started
        feed_cpu = feed.cpu() - feed_cpu
        matcher_cpu = matcher.cpu().get("total", math.nan) - matcher_cpu
        clients_cpu = sum((psutil.Process(worker.pid).cpu_times().user + psutil.Process(worker.pid).cpu_times().system
                           - before.user - before.system) for worker, before in zip(workers, worker_cpu)) \
            if psutil else math.nan
        load_after = os.getloadavg()[0]
        if profiler is not None:
            profiler.wait(30)
        from common.matcher_client import MatcherClient
        with MatcherClient(matcher.endpoints["command_endpoint"], context=context) as probe:
            final = probe.request("snapshot", pair=PAIR, depth=1)["seq"]
        for worker in workers:
            worker.stdin.write(f"final {final}\n")
            worker.stdin.flush()
        reports = [json.loads(worker.stdout.readline()) for worker in workers]
        dealer.close()
    finally:
        for worker in workers:
            worker.kill()
        if feed is not None:
            feed.close()
        matcher.close()
        context.destroy(linger=0)
        slow = feed.log_path.read_text().count("dropping client") if feed is not None else 0
        shutil.rmtree(directory, ignore_errors=True)
    trade_latency = [sum(column) for column in zip(*(report["trade_latency"] for report in reports))]
    diff_latency = [sum(column) for column in zip(*(report["diff_latency"] for report in reports))]
    seconds = max(report["seconds"] for report in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for code, count in report["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return {
        "clients": clients, "workers": len(workers), "connect_seconds": connect_seconds,
        "events": len(flow), "rejected": rejected, "flow_seconds": flow_seconds,
        "messages_per_second": sum(report["messages"] for report in reports) / seconds,
        "megabytes_per_second": sum(report["bytes"] for report in reports) / seconds / 1e6,
        "kept_up": sum(report["kept_up"] for report in reports),
        "closed": sum(report["closed"] for report in reports),
        "breaks": sum(report["breaks"] for report in reports), "errors": errors, "dropped_by_feed": slow,
        "trades": sum(trade_latency),
        "trade_p50": percentile(trade_latency, 0.5), "trade_p99": percentile(trade_latency, 0.99),
        "trade_max": max((value for value, count in enumerate(trade_latency) if count), default=math.nan),
        "diff_p50": percentile(diff_latency, 0.5), "diff_p99": percentile(diff_latency, 0.99),
        "feed_cpu": feed_cpu / flow_seconds, "matcher_cpu": matcher_cpu / flow_seconds,
        "clients_cpu": clients_cpu / flow_seconds, "load": (load_before, load_after),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,1000", help="comma-separated client counts, one run each")
    parser.add_argument("--rate", type=float, default=1000.0, help="matcher commands (market events) per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured flow")
    parser.add_argument("--prefill", type=int, default=2000, help="orders sent before measuring")
    parser.add_argument("--conflation-ms", type=int, default=100)
    parser.add_argument("--per-worker", type=int, default=500, help="connections per client process")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", metavar="DIR", help="record the feed with py-spy during the flow (collapsed stacks)")
    parser.add_argument("--sample-every", type=int, default=10,
                        help="record latency on every Nth connection (all of them check their seq chain)")
    parser.add_argument("--worker", nargs=3, type=int, metavar=("PORT", "CONNECTIONS", "SAMPLE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import uvloop

        uvloop.run(run_worker(*args.worker))
        return 0
    counts = [int(count) for count in args.clients.split(",")]
    total = args.prefill + int(args.rate * args.seconds)
    flow = generate_flow(int(total / 1.2) + 1, 0.2, args.seed, 100)[:total]
    frames = encode_flow(flow, PAIR, "f", False)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"flow: {args.rate:,.0f} events/s for {args.seconds:.0f} s after {args.prefill} prefill orders; "
          f"conflation {args.conflation_ms} ms; channels orderbook.{PAIR} + trades.{PAIR}")
    header = (f"{'clients':>8} {'kept up':>9} {'msgs/s':>9} {'MB/s':>6} {'trade p50':>9} {'p99':>6} {'max':>6} "
              f"{'diff p50':>8} {'p99':>6} {'feed CPU':>8} {'clients CPU':>11} {'load':>11}")
    results = []
    for count in counts:
        result = run(count, args, frames)
        results.append(result)
        print(json.dumps({key: value for key, value in result.items()}), file=sys.stderr)
    print(header)
    for result in results:
        print(f"{result['clients']:>8} {result['kept_up'] / result['clients']:>9.1%} "
              f"{result['messages_per_second']:>9,.0f} {result['megabytes_per_second']:>6.1f} "
              f"{result['trade_p50']:>7.0f}ms {result['trade_p99']:>4.0f}ms {result['trade_max']:>4.0f}ms "
              f"{result['diff_p50']:>6.0f}ms {result['diff_p99']:>4.0f}ms {result['feed_cpu']:>8.0%} "
              f"{result['clients_cpu']:>11.0%} {result['load'][0]:>5.1f}-{result['load'][1]:<5.1f}")
        if result["errors"] or result["breaks"] or result["closed"]:
            print(f"         errors {result['errors']}, chain breaks {result['breaks']}, closed {result['closed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
