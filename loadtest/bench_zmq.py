"""Benchmark the matcher end to end over loopback ZeroMQ: acknowledged orders/s and round trips.

Setup (not timed): a real matcher subprocess (`python -m common.cli --config <tmp toml>
matcher`) on free loopback ports with a temporary data directory and the chosen journal
fsync mode; two markets (`BTC-USDT` for the throughput phase, `ETH-USDT` for the latency
phase, each starting from an empty book), `--accounts` funded traders. With `--bot` every
request goes over the CURVE bot ROUTER from one DEALER whose generated key was registered
to account 1 through the command socket; otherwise over the gateway command ROUTER, the
socket the gateway workers use.

Order flow (seeded, generated and encoded to request frames before any timing):
    GTC limit orders, side at random, quantity 1-100 lots of 0.0001. 70% rest 0-49 ticks
    behind the opposite best (a buy at best_ask - 1 - k), 30% cross it by 0-4 ticks; the
    best is taken from a reference book fed the same flow, so prices track the real book.
    `--cancel-ratio` of the orders are canceled (by client_order_id) at a random later
    point of the flow; a cancel of an order that has already filled is answered with the
    reject ORDER_NOT_FOUND and still counts as an answered request. Every order has
    `stp: none` so the single-account bot flow trades like the many-account one.
    This is the mix of loadtest/bench_matcher.py.

Phase 1, throughput: one DEALER keeps `--window` requests in flight (it sends whenever
fewer are unanswered) until `--orders` orders and their cancels are answered or
`--seconds` have passed. Reported: answered requests per second over the whole phase and
per one-second interval, and the matcher's CPU time.

Phase 2, latency: requests paced at `--rate` per second for `--seconds`, on a schedule
fixed before the phase starts (request i is due at t0 + i / rate). The latency of a
request is the time from its *scheduled* send time to the arrival of its reply, so a stall
in the matcher or in this client is charged to every request that should have been sent
during it, not hidden by sending later (no coordinated omission). The client waits in
`select()` on the DEALER's file descriptor with a microsecond timeout (not `zmq_poll`,
whose timeout is in milliseconds) until 150 us before the next send is due, then spins; the
send lag (actual minus scheduled send time) is reported to show the pacing error.

The load generator and the matcher share the machine's cores, so the client does as little
as possible per request: frames are pre-encoded, replies are recognised by their first
bytes and only their id is parsed, and the client's garbage collector is off during the
timed phases. The PUB sockets have no subscribers unless `--subscribe` starts a SUB process
on both.

    python loadtest/bench_zmq.py                       # both phases, command socket, fsync batch
    python loadtest/bench_zmq.py --bot --fsync always  # the CURVE bot socket
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import zmq

try:
    import psutil  # only for the matcher's CPU time; not a zmx dependency
except ImportError:
    psutil = None

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from common import protocol  # noqa: E402
from common.matcher_client import MatcherClient, MatcherTimeout  # noqa: E402
from loadtest.bench_matcher import PLACE, generate_flow  # noqa: E402

THROUGHPUT_PAIR = "BTC-USDT"
LATENCY_PAIR = "ETH-USDT"
MAKER_FEE_BPS = -1
TAKER_FEE_BPS = 5
# Per account: far more than the flow can lock, and small enough that the sum over all
# accounts stays inside 64 bits (snapshots are orjson, which refuses bigger integers).
DEPOSITS = {"BTC": "100000", "ETH": "100000", "USDT": "100000000"}
READY_TIMEOUT = 30.0
SPIN_NS = 150_000  # the paced client busy-waits this long before each scheduled send
RECEIVE_TIMEOUT_MS = 1000  # how often a waiting client checks that the matcher still runs
STOP_TIMEOUT = 10.0
DRAIN_TIMEOUT = 10.0
BUY = 0


# ---------------------------------------------------------------- the order flow
# The same seeded mix as bench_matcher.py, from the same generator.


def encode_flow(flow: list[tuple], pair: str, prefix: str, bot: bool) -> list[bytes]:
    """Return one request frame per operation; the request id is the operation's position."""
    frames = []
    for position, operation in enumerate(flow):
        account = None if bot else operation[2]
        client_order_id = f"{prefix}{operation[1]}"
        if operation[0] == PLACE:
            _, _, _, side, price, lots = operation
            frames.append(protocol.encode_request(
                position, "place", account_id=account, pair=pair, side="buy" if side == BUY else "sell",
                type="limit", price=f"{price // 100}.{price % 100:02d}", quantity=f"0.{lots:04d}",
                stp="none", client_order_id=client_order_id,
            ))
        else:
            frames.append(protocol.encode_request(position, "cancel", account_id=account,
                                                  client_order_id=client_order_id))
    return frames


# ---------------------------------------------------------------- the matcher process


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback TCP ports nothing listens on right now."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class Matcher:
    """One matcher subprocess on free ports with its own data directory; always stopped by close()."""

    def __init__(self, directory: Path, fsync: str, max_batch: int | None, snapshot_every: int | None) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        ports = free_ports(4)
        self.endpoints = {
            key: f"tcp://127.0.0.1:{port}"
            for key, port in zip(("command_endpoint", "public_endpoint", "bot_endpoint", "private_endpoint"), ports)
        }
        lines = [f"data_dir = {orjson.dumps(str(self.data_dir)).decode()}", 'log_level = "info"', "",
                 "[journal]", f'fsync = "{fsync}"']
        if snapshot_every is not None:
            lines.append(f"snapshot_every_commands = {snapshot_every}")
        # The flow never cancels most resting orders; the default cap of 1,000 per account
        # would turn the benchmark into a reject benchmark.
        lines += ["", "[matcher]", "max_open_orders_per_account = 10000000"]
        if max_batch is not None:
            lines.append(f"max_batch = {max_batch}")
        lines += ["", "[[shards]]", "shard_id = 0", 'markets = ["*"]']
        lines += [f'{key} = "{endpoint}"' for key, endpoint in self.endpoints.items()]
        self.config_path = directory / "zmx.toml"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.log_path = directory / "matcher.log"
        self.popen: subprocess.Popen | None = None
        self.process = None  # psutil.Process, when psutil is installed

    def start(self, context: zmq.Context) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "common.cli", "--config", str(self.config_path), "matcher"]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT)
        self.process = psutil.Process(self.popen.pid) if psutil is not None else None
        with MatcherClient(self.endpoints["command_endpoint"], context=context) as probe:
            request_id = probe.send("ping")
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                if self.popen.poll() is not None:
                    raise SystemExit(f"matcher exited with {self.popen.returncode}:\n{self.log_tail()}")
                try:
                    probe.wait(request_id, timeout=0.1)
                    return
                except MatcherTimeout:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"matcher did not answer ping in {READY_TIMEOUT} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        """Stop the benchmark with the matcher's log if the process has exited."""
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise SystemExit(f"the matcher exited with {self.popen.returncode}:\n{self.log_tail()}")

    def cpu(self) -> dict[str, float]:
        """Return CPU seconds: poll loop thread, libzmq I/O threads, snapshot children, kernel, total."""
        if self.process is None:
            return {}
        main = other = system = 0.0
        for thread in self.process.threads():
            system += thread.system_time
            if thread.id == self.process.pid:
                main += thread.user_time + thread.system_time
            else:
                other += thread.user_time + thread.system_time
        times = self.process.cpu_times()
        children = times.children_user + times.children_system  # snapshot writers, once reaped
        return {"loop": main, "io": other, "system": system, "children": children,
                "total": main + other + children}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def count_log(self, text: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(text)
        except OSError:
            return 0

    def close(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def server_public_key(matcher: Matcher) -> bytes:
    return (matcher.data_dir / "shard-0" / "curve.pub").read_bytes().strip()


def set_up(matcher: Matcher, context: zmq.Context, accounts: int, bot: bool) -> zmq.Socket:
    """Create the markets, fund the accounts and return the connected benchmark DEALER."""
    with MatcherClient(matcher.endpoints["command_endpoint"], context=context, timeout=10) as admin:
        for pair in (THROUGHPUT_PAIR, LATENCY_PAIR):
            admin.request("create_market", pair=pair, tick_size="0.01", lot_size="0.0001",
                          min_quantity="0.0001", maker_fee_bps=MAKER_FEE_BPS, taker_fee_bps=TAKER_FEE_BPS)
        funded = range(1, 2) if bot else range(1, accounts + 1)
        request_ids = [admin.send("deposit", account_id=account, asset=asset, amount=amount)
                       for account in funded for asset, amount in DEPOSITS.items()]
        for request_id in request_ids:
            reply = admin.wait(request_id)
            if not reply["ok"]:
                raise SystemExit(f"deposit refused: {reply}")
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.setsockopt(zmq.RCVTIMEO, RECEIVE_TIMEOUT_MS)
        if bot:
            public, secret = zmq.curve_keypair()
            admin.request("register_bot_key", account_id=1, public_key=public.decode())
            dealer.setsockopt(zmq.CURVE_SERVERKEY, server_public_key(matcher))
            dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
            dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
            dealer.connect(matcher.endpoints["bot_endpoint"])
        else:
            dealer.connect(matcher.endpoints["command_endpoint"])
    dealer.send(protocol.encode_request(-1, "ping"))
    if not dealer.poll(int(READY_TIMEOUT * 1000)):
        raise SystemExit(f"no reply to ping on the benchmark socket:\n{matcher.log_tail()}")
    reply = orjson.loads(dealer.recv())
    if not reply.get("ok"):
        raise SystemExit(f"ping refused on the benchmark socket: {reply}")
    return dealer


# ---------------------------------------------------------------- phase 1: throughput


def run_throughput(dealer: zmq.Socket, frames: list[bytes], window: int, seconds: float,
                   check_alive: Callable[[], None]) -> dict:
    """Keep `window` requests in flight; return counts, wall time and per-second reply counts."""
    send, recv = dealer.send, dealer.recv
    noblock, again = zmq.NOBLOCK, zmq.Again
    clock = time.perf_counter
    total = len(frames)
    sent = answered = accepted = events = 0
    started = clock()
    deadline = started + seconds
    next_tick = started + 1.0
    per_second: list[int] = []
    last_answered = 0
    while True:
        limit = answered + window
        if limit > total:
            limit = total
        while sent < limit:
            send(frames[sent])
            sent += 1
        if answered >= sent:
            break
        try:
            frame = recv()  # RCVTIMEO is set: a dead matcher must not hang the benchmark
        except again:
            check_alive()
            if clock() > deadline + DRAIN_TIMEOUT:
                raise SystemExit(f"phase 1: {sent - answered} requests unanswered") from None
            continue
        while True:
            if frame[2] == 105:  # b'{"id"...' is a reply; b'{"type"...' an unsolicited event
                answered += 1
                if b'"ok":true' in frame[:32]:
                    accepted += 1
            else:
                events += 1
            try:
                frame = recv(noblock)
            except again:
                break
        now = clock()
        if now >= next_tick:
            per_second.append(answered - last_answered)
            last_answered = answered
            next_tick += 1.0
            if now >= deadline and total > sent:
                total = sent  # stop sending; drain what is in flight
    elapsed = clock() - started
    return {"sent": sent, "answered": answered, "accepted": accepted, "events": events,
            "seconds": elapsed, "per_second": per_second}


# ---------------------------------------------------------------- phase 2: paced latency


def run_paced(dealer: zmq.Socket, frames: list[bytes], rate: float, check_alive: Callable[[], None]) -> dict:
    """Send frame i at t0 + i / rate; return latency from scheduled send to reply, in ns."""
    send, recv = dealer.send, dealer.recv
    fd = dealer.getsockopt(zmq.FD)
    get_events = dealer.getsockopt
    EVENTS, POLLIN, NOBLOCK = zmq.EVENTS, zmq.POLLIN, zmq.NOBLOCK
    clock = time.perf_counter_ns
    total = len(frames)
    interval = 1e9 / rate
    t0 = clock() + 10_000_000
    schedule = [t0 + int(i * interval) for i in range(total)]
    sent_at = [0] * total
    latency = [0] * total
    answered = accepted = events = 0
    next_index = 0
    give_up = schedule[-1] + int(DRAIN_TIMEOUT * 1e9)
    next_check = t0 + 1_000_000_000
    while answered < total:
        now = clock()
        while next_index < total and schedule[next_index] <= now:
            send(frames[next_index])
            sent_at[next_index] = clock()
            next_index += 1
        while get_events(EVENTS) & POLLIN:
            frame = recv(NOBLOCK)
            arrived = clock()
            if frame[2] != 105:
                events += 1
                continue
            request_id = int(frame[6:frame.index(b",", 6)])
            latency[request_id] = arrived - schedule[request_id]
            answered += 1
            if b'"ok":true' in frame[:32]:
                accepted += 1
        if answered >= total:
            break
        now = clock()
        if now > give_up:
            check_alive()
            raise SystemExit(f"phase 2: {total - answered} requests unanswered after {DRAIN_TIMEOUT} s")
        if now > next_check:
            check_alive()
            next_check = now + 1_000_000_000
        wake = schedule[next_index] if next_index < total else now + 100_000_000
        # A sleeping thread wakes tens of microseconds late, so sleep until shortly before
        # the next send and spin (still checking for replies) for the rest.
        if wake - now > SPIN_NS:
            select.select([fd], [], [], (wake - now - SPIN_NS) / 1e9)
    lag = [sent_at[i] - schedule[i] for i in range(total)]
    return {"answered": answered, "accepted": accepted, "events": events, "latency": latency, "lag": lag,
            "service": [latency[i] - lag[i] for i in range(total)]}


def percentiles_us(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        return ordered[round(fraction * last)] / 1_000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": at(1.0)}


# ---------------------------------------------------------------- reporting


def fdatasync_probe(directory: Path, samples: int = 200) -> dict[str, float]:
    """Return the latency of one small append + fdatasync on the data directory's disk, in us."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    costs = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 200)
            started = time.perf_counter_ns()
            os.fdatasync(fd)
            costs.append(time.perf_counter_ns() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return percentiles_us(costs)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def start_subscriber(matcher: Matcher) -> subprocess.Popen:
    """Start a SUB process on both PUBs that counts messages (what the feed would cost the matcher).

    Return once it has received its first message (a market heartbeat), so it is connected
    and subscribed before anything is timed.
    """
    code = (
        "import sys, zmq\n"
        "context = zmq.Context(); sub = context.socket(zmq.SUB); sub.setsockopt(zmq.RCVHWM, 0)\n"
        "sub.setsockopt(zmq.SUBSCRIBE, b'')\n"
        "for endpoint in sys.argv[1:]: sub.connect(endpoint)\n"
        "count = 0\n"
        "try:\n"
        "    sub.recv_multipart(); count += 1; print('ready', flush=True)\n"
        "    while True: sub.recv_multipart(); count += 1\n"
        "except KeyboardInterrupt: print(count, flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, matcher.endpoints["public_endpoint"],
                                matcher.endpoints["private_endpoint"]], stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], STOP_TIMEOUT)
    if not ready or process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit("the subscriber received no heartbeat: is the matcher publishing?")
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000, help="orders in the throughput phase (plus cancels)")
    parser.add_argument("--window", type=int, default=2_000, help="requests in flight in the throughput phase")
    parser.add_argument("--rate", type=float, default=1_000.0, help="requests per second in the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of the latency phase and cap on the throughput phase")
    parser.add_argument("--fsync", choices=["batch", "always", "off"], default="batch")
    parser.add_argument("--bot", action="store_true", help="use the CURVE bot socket instead of the command socket")
    parser.add_argument("--phase", choices=["both", "throughput", "latency"], default="both")
    parser.add_argument("--accounts", type=int, default=100, help="traders on the command socket (a bot is one)")
    parser.add_argument("--cancel-ratio", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-batch", type=int, default=None, help="override [matcher] max_batch")
    parser.add_argument("--snapshot-every", type=int, default=None,
                        help="override [journal] snapshot_every_commands (default: the matcher's)")
    parser.add_argument("--subscribe", action="store_true", help="attach a SUB process to both PUBs")
    parser.add_argument("--dir", default=None, help="parent of the temporary data directory (the disk to fsync)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and the matcher log")
    args = parser.parse_args(argv)

    directory = Path(tempfile.mkdtemp(prefix="zmx-bench-", dir=args.dir))
    socket_name = "bot (CURVE)" if args.bot else "command"
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}, orjson {orjson.__version__}")
    load = os.getloadavg()
    probe = fdatasync_probe(directory)
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; data dir {directory}; "
          f"disk fdatasync of one 200-byte append: p50 {probe['p50']:.0f} us, p99 {probe['p99']:.0f} us")

    started = time.perf_counter()
    run_phase1 = args.phase in ("both", "throughput")
    run_phase2 = args.phase in ("both", "latency")
    accounts = 1 if args.bot else args.accounts
    flow1 = generate_flow(args.orders, args.cancel_ratio, args.seed, accounts) if run_phase1 else []
    frames1 = encode_flow(flow1, THROUGHPUT_PAIR, "t", args.bot)
    paced = int(args.rate * args.seconds)
    # Generate enough orders that orders + cancels cover the paced phase, then cut.
    flow2 = generate_flow(int(paced / (1 + args.cancel_ratio)) + 1, args.cancel_ratio, args.seed + 1,
                          accounts)[:paced] if run_phase2 else []
    frames2 = encode_flow(flow2, LATENCY_PAIR, "l", args.bot)
    print(f"flow: limit orders 70% resting 0-49 ticks behind the best / 30% crossing 0-4 ticks, 1-100 lots, "
          f"{args.cancel_ratio:.0%} canceled later, stp none, {accounts} account(s), seed {args.seed} "
          f"(generated and encoded in {time.perf_counter() - started:.1f} s, not timed)")
    print(f"settings: socket {socket_name}, fsync {args.fsync}, window {args.window}, rate {args.rate:,.0f}/s, "
          f"seconds {args.seconds}, max_batch {args.max_batch or 'default'}, "
          f"PUB subscribers: {'one SUB process' if args.subscribe else 'none'}")

    context = zmq.Context()
    matcher = Matcher(directory, args.fsync, args.max_batch, args.snapshot_every)
    subscriber = None
    results = []
    try:
        matcher.start(context)
        dealer = set_up(matcher, context, args.accounts, args.bot)
        if args.subscribe:
            subscriber = start_subscriber(matcher)
        # The client's heap holds every pre-encoded frame; a full collection of it would stall
        # the client for tens of milliseconds and be charged to the matcher's latency. The
        # timed loops create no reference cycles, so the collector is simply off meanwhile.
        gc.collect()
        gc.freeze()
        gc.disable()
        if run_phase1:
            cpu_before, client_before = matcher.cpu(), time.process_time()
            result = run_throughput(dealer, frames1, args.window, args.seconds, matcher.check_alive)
            cpu_after, client_after = matcher.cpu(), time.process_time()
            cpu = {key: cpu_after[key] - cpu_before[key] for key in cpu_after}
            results.append(("throughput", result, cpu, client_after - client_before))
        if run_phase2:
            cpu_before, client_before = matcher.cpu(), time.process_time()
            result = run_paced(dealer, frames2, args.rate, matcher.check_alive)
            cpu_after, client_after = matcher.cpu(), time.process_time()
            cpu = {key: cpu_after[key] - cpu_before[key] for key in cpu_after}
            results.append(("latency", result, cpu, client_after - client_before))
        dealer.close()
    finally:
        gc.enable()
        matcher.close()
        if subscriber is not None:
            subscriber.send_signal(signal.SIGINT)
            received = subscriber.communicate(timeout=STOP_TIMEOUT)[0].strip()
            print(f"PUB messages received by the subscriber: {received}")
        context.destroy(linger=0)

    snapshots = matcher.count_log("snapshot written")
    print()
    for name, result, cpu, client_cpu in results:
        answered = result["answered"]
        if name == "throughput":
            seconds = result["seconds"]
            per_second = result["per_second"]
            print(f"phase 1, throughput: {answered:,} requests answered ({result['accepted']:,} accepted, "
                  f"{answered - result['accepted']:,} rejected) in {seconds:.2f} s")
            intervals = (f"min {min(per_second):,} max {max(per_second):,}" if per_second
                         else "none complete (the phase took under a second)")
            print(f"  answered/s: {answered / seconds:,.0f} overall; per 1 s interval: {intervals}")
        else:
            print(f"phase 2, latency at {args.rate:,.0f}/s: {answered:,} requests answered "
                  f"({result['accepted']:,} accepted)")
            print(f"  {'us':<38}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>9}{'max':>9}")
            for label, key in (("round trip from the scheduled send", "latency"),
                               ("  of which send lag (client pacing)", "lag"),
                               ("round trip from the actual send", "service")):
                figures = percentiles_us(result[key])
                print(f"  {label:<38}{figures['p50']:>8.0f}{figures['p90']:>8.0f}{figures['p99']:>8.0f}"
                      f"{figures['p99.9']:>9.0f}{figures['max']:>9.0f}")
            seconds = len(result["latency"]) / args.rate
        if result["events"]:
            print(f"  unsolicited account events received: {result['events']:,}")
        if not cpu:
            print(f"  matcher CPU: not measured (pip install psutil); client CPU {client_cpu:.2f} s")
            continue
        print(f"  matcher CPU: {cpu['total']:.2f} s ({cpu['total'] / seconds:.0%} of one core; poll loop "
              f"{cpu['loop']:.2f} s, libzmq I/O threads {cpu['io']:.2f} s, snapshot children {cpu['children']:.2f} s; "
              f"in the kernel {cpu['system']:.2f} s) = "
              f"{cpu['total'] * 1e6 / max(answered, 1):.1f} us per request; client CPU {client_cpu:.2f} s")
    print(f"snapshots written by the matcher during the run: {snapshots}")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.keep:
        print(f"kept {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
