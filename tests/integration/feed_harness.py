"""Start real `zmx feed` processes next to a MatcherCluster and talk to them over real WebSockets.

`FeedProcess` writes its own TOML (the cluster's file plus `ws_port` and a `[feed]`
section), runs `python -m common.cli --config ... feed` with its output in a log file,
and waits until `GET /health` answers. `FeedClient` is a synchronous WebSocket client
(websockets.sync) with deadline-bounded waits; `BookFollower` rebuilds a book from a
snapshot plus diffs and checks that every diff's first_seq is the previous seq + 1.
Nothing here sleeps to paper over a race: every wait polls with a deadline.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.harness import REPO_ROOT, MatcherCluster, _die_with_parent, free_ports

READY_TIMEOUT = 30.0


class FeedProcess:
    """One `zmx feed` child process for a cluster."""

    def __init__(self, cluster: MatcherCluster, name: str = "feed", settings: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.name = name
        self.settings = {"conflation_ms": 50, **(settings or {})}
        self.env = dict(env or {})
        self.port = free_ports(1)[0]
        self.config_path = cluster.directory / f"{name}.toml"
        self.log_path = cluster.directory / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def _write_config(self) -> None:
        lines = [f"ws_port = {self.port}", f"http_port = {self.port + 1 if self.port < 65535 else self.port - 1}"]
        text = self.cluster.config_path.read_text()
        feed = ["", "[feed]"] + [f"{key} = {value!r}" for key, value in self.settings.items()]
        self.config_path.write_text("\n".join(lines) + "\n" + text + "\n".join(feed) + "\n")

    def start(self, timeout: float = READY_TIMEOUT) -> "FeedProcess":
        self._write_config()
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.update(self.env)
        command = [sys.executable, "-m", "common.cli", "--config", str(self.config_path), "feed"]
        with open(self.log_path, "ab") as log:
            log.write(f"---- start: {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.wait_ready(timeout)
        return self

    def health(self) -> dict[str, Any] | None:
        """Return GET /health, or None while the feed does not answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            return orjson.loads(response.read()) if response.status == 200 else None
        except OSError:
            return None
        finally:
            connection.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT, live: int | None = None) -> dict[str, Any]:
        """Wait until /health answers (and, with `live`, until that many markets are in sync)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen is None or self.popen.poll() is not None:
                raise AssertionError(f"{self.name} is not running\n{self.log_text()}")
            health = self.health()
            if health is not None and (live is None or health["live"] >= live):
                return health
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} not ready within {timeout} s: {health}\n{self.log_text()}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def client(self, **options: Any) -> "FeedClient":
        return FeedClient(self.url, **options)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"{self.name} ignored SIGTERM\n{self.log_text()}") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"


class FeedClient:
    """A synchronous WebSocket client of the feed; every wait has a deadline."""

    def __init__(self, url: str, **options: Any) -> None:
        self.connection: ClientConnection = connect(url, open_timeout=10, compression=None, legacy=True, **options)
        self.received: list[dict[str, Any]] = []

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "FeedClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, op: str, **fields: Any) -> None:
        self.connection.send(orjson.dumps({"op": op, **fields}).decode())

    def send_raw(self, data: str | bytes) -> None:
        self.connection.send(data)

    def receive(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """Return the next message, or None after `timeout` seconds."""
        try:
            frame = self.connection.recv(timeout=timeout)
        except TimeoutError:
            return None
        message = orjson.loads(frame)
        self.received.append(message)
        return message

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                 what: str = "a message", seen: list | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            message = self.receive(remaining)
            if message is None:
                continue
            if seen is not None:
                seen.append(message)
            if predicate(message):
                return message

    def request(self, op: str, reply: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send an op and return the first reply whose op is `reply` or "error"."""
        self.send(op, **fields)
        return self.wait_for(lambda message: message.get("op") in (reply, "error"), timeout, what=f"{reply} reply")

    def subscribe(self, *channels: str, timeout: float = 10.0) -> dict[str, Any]:
        reply = self.request("subscribe", "subscribed", timeout, channels=list(channels))
        assert reply["op"] == "subscribed", reply
        return reply

    def closed(self, timeout: float = 10.0) -> ConnectionClosed:
        """Read until the server closes the connection; return the close exception."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = self.connection.recv(timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                return closed
            self.received.append(orjson.loads(frame))
        raise AssertionError(f"the connection was not closed within {timeout} s")


class BookFollower:
    """A client-side book: a snapshot, then diffs that must chain (first_seq = previous seq + 1)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.seq: int | None = None
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.snapshots = 0
        self.diffs = 0

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply a data message of this channel; return False for anything else."""
        if message.get("channel") != self.channel:
            return False
        if message["type"] == "snapshot":
            data = message["data"]
            assert data["seq"] == message["seq"]
            self.seq = message["seq"]
            self.bids = {Decimal(price): Decimal(size) for price, size in data["bids"]}
            self.asks = {Decimal(price): Decimal(size) for price, size in data["asks"]}
            self.snapshots += 1
            return True
        assert message["type"] == "diff", message
        assert self.seq is not None, "a diff before any snapshot"
        assert message["first_seq"] == self.seq + 1, (message["first_seq"], self.seq)
        assert message["seq"] >= message["first_seq"]
        for levels, side in ((message["data"]["bids"], self.bids), (message["data"]["asks"], self.asks)):
            for price, size in levels:
                if Decimal(size) == 0:
                    assert Decimal(price) in side, f"deleting a level the client does not hold: {price}"
                    del side[Decimal(price)]
                else:
                    side[Decimal(price)] = Decimal(size)
        self.seq = message["seq"]
        self.diffs += 1
        return True

    def levels(self, depth: int | None = None) -> dict[str, list[list[Decimal]]]:
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return {"bids": [list(level) for level in bids], "asks": [list(level) for level in asks]}


def snapshot_levels(snapshot: dict[str, Any], depth: int | None = None) -> dict[str, list[list[Decimal]]]:
    """Return a matcher snapshot's levels as Decimals (comparable with BookFollower.levels)."""
    bids = [[Decimal(price), Decimal(size)] for price, size in snapshot["bids"]]
    asks = [[Decimal(price), Decimal(size)] for price, size in snapshot["asks"]]
    if depth is not None:
        bids, asks = bids[:depth], asks[:depth]
    return {"bids": bids, "asks": asks}
