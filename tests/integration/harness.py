"""Start real matcher processes on loopback and talk to them over real ZeroMQ.

`MatcherCluster` writes one TOML configuration (free ports for every endpoint of every
shard, the data directory under the test's tmp dir) and owns the `MatcherProcess`es
started from it; each runs `python -m common.cli --config ... matcher --shard N` with its
output in a log file that the conftest attaches to a failing test's report. Every wait
polls with a deadline; nothing sleeps to paper over a race. For the PUB/SUB slow joiner,
`wait_for_heartbeat` (public) and `wait_private_ready` (private) prove that a
subscription is live before the test relies on it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import zmq

from common.matcher_client import MatcherClient, MatcherTimeout

REPO_ROOT = Path(__file__).resolve().parents[2]
ENDPOINT_KEYS = ("command_endpoint", "public_endpoint", "bot_endpoint", "private_endpoint")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class HarnessError(AssertionError):
    """A matcher process misbehaved (exited, never answered); the message carries its log."""


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback TCP ports that nothing listens on right now."""
    probes, ports = [], []
    try:
        # Hold every probe open until all are chosen, so the kernel never hands one out twice.
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
            ports.append(probe.getsockname()[1])
    finally:
        for probe in probes:
            probe.close()
    return ports


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when pytest dies, so even a killed test run leaves no orphan."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _toml_string(value: str) -> str:
    return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string here


class MatcherCluster:
    """One zmx configuration file for one or more matcher shards, and their processes."""

    def __init__(
        self,
        directory: Path,
        shards: Sequence[tuple[int, Sequence[str]]] = ((0, ("*",)),),
        fsync: str = "batch",
        heartbeat_seconds: float = 0.2,
        journal: dict[str, Any] | None = None,
        matcher: dict[str, Any] | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.directory / "data"
        self.config_path = self.directory / "zmx.toml"
        self.context = context or zmq.Context()
        self._owns_context = context is None
        self.endpoints: dict[int, dict[str, str]] = {}
        self._shards = [(shard_id, tuple(markets)) for shard_id, markets in shards]
        self._settings = (fsync, heartbeat_seconds, dict(journal or {}), dict(matcher or {}))
        ports = iter(free_ports(4 * len(shards)))
        for shard_id, _ in self._shards:
            self.endpoints[shard_id] = {key: f"tcp://127.0.0.1:{next(ports)}" for key in ENDPOINT_KEYS}
        self._write_config()
        self.processes: dict[int, MatcherProcess] = {}

    def _write_config(self) -> None:
        fsync, heartbeat_seconds, journal, matcher = self._settings
        lines = [
            f"data_dir = {_toml_string(str(self.data_dir))}",
            'log_level = "info"',
            "",
            "[journal]",
            f"fsync = {_toml_string(fsync)}",
        ]
        lines += [f"{key} = {value!r}" for key, value in journal.items()]
        lines += ["", "[matcher]", f"heartbeat_seconds = {heartbeat_seconds!r}"]
        lines += [f"{key} = {value!r}" for key, value in matcher.items()]
        for shard_id, markets in self._shards:
            lines += ["", "[[shards]]", f"shard_id = {shard_id}",
                      "markets = [" + ", ".join(_toml_string(market) for market in markets) + "]"]
            lines += [f"{key} = {_toml_string(endpoint)}" for key, endpoint in self.endpoints[shard_id].items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def reassign_ports(self, shard_id: int) -> dict[str, str]:
        """Give a shard fresh ports (another process took one between probing and binding)."""
        ports = iter(free_ports(len(ENDPOINT_KEYS)))
        self.endpoints[shard_id] = {key: f"tcp://127.0.0.1:{next(ports)}" for key in ENDPOINT_KEYS}
        self._write_config()
        return self.endpoints[shard_id]

    def matcher(self, shard_id: int = 0) -> "MatcherProcess":
        """Return the shard's process object (created on first use, not started)."""
        process = self.processes.get(shard_id)
        if process is None:
            process = self.processes[shard_id] = MatcherProcess(self, shard_id)
        return process

    def start(self, shard_id: int = 0) -> "MatcherProcess":
        """Start the shard's matcher and wait until it answers `ping`."""
        process = self.matcher(shard_id)
        process.start()
        return process

    def close(self) -> None:
        """Stop every process (SIGKILL if it does not stop) and close every socket."""
        errors = []
        for process in self.processes.values():
            try:
                process.close()
            except Exception as error:  # keep closing the others; report at the end
                errors.append(error)
        if self._owns_context:
            self.context.destroy(linger=0)
        if errors:
            raise errors[0]


class MatcherProcess:
    """One `python -m common.cli matcher --shard N` child process and helpers to talk to it."""

    def __init__(self, cluster: MatcherCluster, shard_id: int) -> None:
        self.cluster = cluster
        self.shard_id = shard_id
        self.endpoints = cluster.endpoints[shard_id]
        self.shard_dir = cluster.data_dir / f"shard-{shard_id}"
        self.journal_dir = self.shard_dir / "journal"
        self.log_path = cluster.directory / f"matcher-{shard_id}.log"
        self.popen: subprocess.Popen | None = None
        self.starts = 0
        self._log_start = 0
        self._sockets: list[Any] = []

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the process and return once it answers `ping`."""
        if self.popen is not None and self.popen.poll() is None:
            raise HarnessError(f"matcher shard {self.shard_id} is already running")
        for attempt in range(3):
            try:
                return self._start(timeout)
            except HarnessError:
                # A port probed free may be taken by someone else before the matcher binds
                # it; only a first start may move (later ones must keep the endpoints).
                address_taken = self.popen.poll() is not None and "Address already in use" in self.log_text(self._log_start)
                if self.starts > 1 or attempt == 2 or not address_taken:
                    raise
                self.starts = 0
                self.endpoints = self.cluster.reassign_ports(self.shard_id)

    def _start(self, timeout: float) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "common.cli", "--config", str(self.cluster.config_path),
                   "matcher", "--shard", str(self.shard_id)]
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            log.write(f"---- start {self.starts + 1}: {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.starts += 1
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Poll `ping` on a fresh DEALER until it answers; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        with MatcherClient(self.endpoints["command_endpoint"], context=self.cluster.context) as probe:
            request_id = probe.send("ping")
            while True:
                self._check_alive()
                try:
                    reply = probe.wait(request_id, timeout=0.05)
                except MatcherTimeout:
                    if time.monotonic() >= deadline:
                        raise HarnessError(f"matcher shard {self.shard_id} did not answer ping within "
                                           f"{timeout} s\n{self.log_text()}") from None
                    continue
                if not reply["ok"]:
                    raise HarnessError(f"ping was refused: {reply}\n{self.log_text()}")
                return reply["data"]

    def _check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            code = None if self.popen is None else self.popen.returncode
            raise HarnessError(f"matcher shard {self.shard_id} is not running (exit code {code})\n{self.log_text()}")

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(STOP_TIMEOUT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the process (a graceful stop) and return its exit code; SIGKILL at the deadline."""
        assert self.popen is not None
        if self.running:
            self.popen.terminate()
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT)
            raise HarnessError(f"matcher shard {self.shard_id} ignored SIGTERM for {timeout} s\n{self.log_text()}")

    def restart(self, graceful: bool = True) -> None:
        """Stop (SIGTERM, or SIGKILL when not graceful) and start again."""
        if graceful:
            code = self.terminate()
            if code != 0:
                raise HarnessError(f"matcher shard {self.shard_id} exited with {code}\n{self.log_text()}")
        else:
            self.kill()
        self.start()

    def close(self) -> None:
        """Close this process's sockets and stop it; a no-op when it never started."""
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.terminate()
            finally:
                if self.popen.poll() is None:
                    self.popen.kill()
                    self.popen.wait(STOP_TIMEOUT)

    def log_text(self, start: int = 0) -> str:
        """Return the process's log (every start appends), from byte `start` on."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # ---------------------------------------------------------------- sockets

    def client(self, timeout: float = 5.0, bot: bool = False,
               curve: tuple[bytes, bytes] | None = None) -> MatcherClient:
        """Return a DEALER client on the command ROUTER, or on the bot ROUTER with `curve` (public, secret)."""
        if curve is not None:
            public, secret = curve
            client = MatcherClient(self.endpoints["bot_endpoint"], timeout=timeout, context=self.cluster.context,
                                   curve=(self.bot_public_key, public, secret))
        else:
            endpoint = self.endpoints["bot_endpoint" if bot else "command_endpoint"]
            client = MatcherClient(endpoint, timeout=timeout, context=self.cluster.context)
        self._sockets.append(client)
        return client

    def subscriber(self, topic_prefix: bytes | str = b"md.", private: bool = False) -> zmq.Socket:
        """Return a SUB socket on the public (or private) PUB, subscribed to `topic_prefix`."""
        if isinstance(topic_prefix, str):
            topic_prefix = topic_prefix.encode()
        sub = self.cluster.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.SUBSCRIBE, topic_prefix)
        sub.connect(self.endpoints["private_endpoint" if private else "public_endpoint"])
        self._sockets.append(sub)
        return sub

    @property
    def bot_public_key(self) -> bytes:
        """Return the shard's CURVE server public key (Z85), written by the matcher on first start."""
        return (self.shard_dir / "curve.pub").read_bytes().strip()

    def journal_segments(self) -> list[Path]:
        return sorted(self.journal_dir.glob("journal-*.log"))

    def journal_snapshots(self) -> list[Path]:
        return sorted(self.journal_dir.glob("snapshot-*.snap"))


# -------------------------------------------------------------------- SUB helpers


def receive(sub: zmq.Socket, timeout: float) -> tuple[bytes, dict[str, Any]] | None:
    """Return the next (topic, body) from a SUB socket, or None after `timeout` seconds."""
    if not sub.poll(int(timeout * 1000)):
        return None
    topic, body = sub.recv_multipart()
    return topic, orjson.loads(body)


def wait_for_message(sub: zmq.Socket, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                     seen: list | None = None, what: str = "a message") -> dict[str, Any]:
    """Return the first message matching `predicate`, appending every message to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        item = receive(sub, remaining)
        if item is None:
            continue
        if seen is not None:
            seen.append(item[1])
        if predicate(item[1]):
            return item[1]


def wait_for_heartbeat(sub: zmq.Socket, pair: str, timeout: float = 10.0) -> dict[str, Any]:
    """Return the first heartbeat of `pair`: from then on the subscription is live."""
    return wait_for_message(sub, lambda message: message["type"] == "heartbeat" and message["pair"] == pair,
                            timeout, what=f"a heartbeat of {pair}")


def drain(sub: zmq.Socket, quiet: float = 0.0) -> list[dict[str, Any]]:
    """Return every message already queued (or arriving within `quiet` seconds of the last)."""
    messages = []
    while True:
        item = receive(sub, quiet)
        if item is None:
            return messages
        messages.append(item[1])


def wait_private_ready(sub: zmq.Socket, client: MatcherClient, account_id: int, asset: str,
                       amount: str, timeout: float = 10.0) -> int:
    """Deposit `amount` of `asset` until the private SUB sees the account's events; return the deposits made.

    The private PUB has no heartbeat, so the probe is a real, journaled deposit: callers
    account for `deposits x amount` in their balance expectations. Returns once the event
    of the last probe has arrived, so no probe event is left in the socket.
    """
    deadline = time.monotonic() + timeout
    deposits = 0
    while time.monotonic() < deadline:
        total = client.request("deposit", account_id=account_id, asset=asset, amount=amount)["total"]
        deposits += 1
        def is_last_probe(message: dict[str, Any]) -> bool:
            return any(balance["asset"] == asset and balance["total"] == total for balance in message["balances"])

        item = receive(sub, 0.1)
        if item is not None:
            # Live: make sure the last probe's own event is consumed too, so nothing is left behind.
            if not is_last_probe(item[1]):
                wait_for_message(sub, is_last_probe, max(deadline - time.monotonic(), 1.0),
                                 what="the last probe's event")
            return deposits
    raise AssertionError(f"the private subscription of account {account_id} never became live")


# -------------------------------------------------------------------- state helpers


def total_balances(client: MatcherClient, account_ids: Iterable[int]) -> dict[str, Decimal]:
    """Sum available + locked per asset over the given accounts."""
    totals: dict[str, Decimal] = {}
    for account_id in account_ids:
        for balance in client.request("balances", account_id=account_id):
            totals[balance["asset"]] = totals.get(balance["asset"], Decimal(0)) + Decimal(balance["total"])
    return totals


def book_state(client: MatcherClient, pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return every market's full snapshot without its timestamp (comparable across restarts)."""
    state = {}
    for pair in pairs:
        snapshot = client.request("snapshot", pair=pair)
        snapshot.pop("ts")
        state[pair] = snapshot
    return state


def account_state(client: MatcherClient, account_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Return balances and open orders of every given account."""
    return {
        account_id: {
            "balances": client.request("balances", account_id=account_id),
            "open_orders": client.request("open_orders", account_id=account_id),
        }
        for account_id in account_ids
    }


def apply_levels(side: dict[Decimal, Decimal], levels: list[list[str]]) -> None:
    """Apply absolute level sizes to a replica side; a zero size removes the level."""
    for price, size in levels:
        if Decimal(size) == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = Decimal(size)


def replica_from_snapshot(snapshot: dict[str, Any]) -> dict[str, dict[Decimal, Decimal]]:
    return {
        "bids": {Decimal(price): Decimal(size) for price, size in snapshot["bids"]},
        "asks": {Decimal(price): Decimal(size) for price, size in snapshot["asks"]},
    }
