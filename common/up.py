"""`zmx up`: the whole stack under one supervisor, watched until it is healthy.

The children are `matcher-<id>` (one per shard), `recorder`, `gateway` and `feed`; with the
demo, `bot-market-maker` and `bot-taker` join once the rest is up. Each child writes its
output (JSON log lines) to `<data_dir>/logs/<name>.log`; the terminal keeps the
supervisor's own lines, a progress line while the stack comes up, and the banner.

Until every child is ready, the progress line shows each one's newest log message (journal
replay, store migrations, recovery) or `ready`. Ready means:

- a matcher logged `matcher ready` (its snapshot and journal are replayed);
- the recorder logged `recorder ready` for every shard;
- the gateway's `GET /health` and the feed's `GET /health` answer 200;
- the demo market maker's quotes are in the book (`GET /api/v1/markets/<pair>/orderbook`).

Then the demo is set up (`common/demo.py`), its bots started, and the banner printed.
Children stop in reverse: bots, then gateway, feed and recorder, then the matchers, so
the bots cancel their quotes while they still can and the journals are flushed last.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

from common.config import Config
from common.supervisor import Supervisor

logger = logging.getLogger("zmx.up")

# stop_rank: higher stops first.
_BOT_RANK, _SERVICE_RANK, _MATCHER_RANK = 2, 1, 0
_PROGRESS_FIELDS = ("records", "replayed", "journal_seq", "version", "shard_id")
_TICK_SECONDS = 0.25
_SLOW_START_SECONDS = 60.0
_BOT_START_SECONDS = 30.0  # the banner does not wait longer for the demo market maker's quotes


def run_up(config: Config, config_path: str | None, demo: bool) -> int:
    """Start the stack, show its progress until it is up, then supervise it until a signal."""
    from gateway.keys import ensure_admin_token

    # Made here, before any child starts, so every process and the banner agree on it.
    admin_token, _ = ensure_admin_token(config)
    command = [sys.executable, "-m", "common.cli"]
    if config_path is not None:
        command += ["--config", os.path.abspath(config_path)]
    startup = Startup(config, command, admin_token, demo)
    return startup.supervisor.run(on_tick=startup.tick)


class _Watched:
    """One child as the startup display sees it: its log's new lines and whether it is ready."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        # Lines from earlier runs of `zmx up` are not this run's progress.
        self.offset = log_path.stat().st_size if log_path.exists() else 0
        self.partial = b""
        self.status = "starting"
        self.ready = False

    def new_lines(self) -> list[dict]:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for raw in complete:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # not one of our JSON log lines (a library printing)
            if isinstance(line, dict) and isinstance(line.get("msg"), str):
                lines.append(line)
        return lines


class Startup:
    """The children of the stack and the tick that watches them come up."""

    def __init__(self, config: Config, command: list[str], admin_token: str, demo: bool) -> None:
        self.config = config
        self.command = command
        self.admin_token = admin_token
        self.demo = demo
        self.logs = config.data_dir / "logs"
        self.supervisor = Supervisor()
        self.watched: dict[str, _Watched] = {}
        self.recorder_shards: set[int] = set()
        self.demo_setup = None
        self.demo_started: float | None = None
        self.started = time.monotonic()
        self.terminal = sys.stdout.isatty()
        self.shown = ""
        self.shown_at = 0.0
        self.warned_slow = False
        for shard in config.shards:
            self._add(f"matcher-{shard.shard_id}", ["matcher", "--shard", str(shard.shard_id)], _MATCHER_RANK)
        for name in ("recorder", "gateway", "feed"):
            self._add(name, [name], _SERVICE_RANK)
        local = "127.0.0.1"
        self.http_host = local if config.gateway.host in ("0.0.0.0", "::") else config.gateway.host
        self.ws_host = local if config.feed.host in ("0.0.0.0", "::") else config.feed.host

    def _add(self, name: str, arguments: list[str], stop_rank: int) -> None:
        log_path = self.logs / f"{name}.log"
        self.supervisor.add(name, [*self.command, *arguments], log_path=log_path, stop_rank=stop_rank)
        self.watched[name] = _Watched(name, log_path)

    # ---------------------------------------------------------------- the tick

    def tick(self) -> float | None:
        """Update every child's state and the display; set up the demo once the stack is up."""
        for watched in self.watched.values():
            if not watched.ready:
                self._update(watched)
        waiting = [watched for watched in self.watched.values() if not watched.ready]
        if not waiting:
            if self.demo and self.demo_setup is None:
                self._start_demo()
                return _TICK_SECONDS
            self._finish()
            return None
        if self.demo_started is not None and time.monotonic() - self.demo_started > _BOT_START_SECONDS and all(
                watched.name.startswith("bot-") for watched in waiting):
            self._finish()
            self._print("warning: " + ", ".join(
                f"{watched.name} is not ready yet ({watched.status}; output in {watched.log_path})"
                for watched in waiting))
            return None
        self._show()
        return _TICK_SECONDS

    def _update(self, watched: _Watched) -> None:
        for line in watched.new_lines():
            message = line["msg"]
            if watched.name == "recorder" and message == "recorder ready":
                self.recorder_shards.add(line.get("shard_id"))
            details = ", ".join(f"{field} {line[field]}" for field in _PROGRESS_FIELDS if field in line)
            watched.status = f"{message} ({details})" if details else message
            if watched.name.startswith("matcher-") and message == "matcher ready":
                watched.ready = True
        name = watched.name
        if name == "recorder":
            watched.ready = self.recorder_shards >= {shard.shard_id for shard in self.config.shards}
        elif name == "gateway":
            watched.ready = self._http_ok(self.http_host, self.config.http_port, "/health")
        elif name == "feed":
            watched.ready = self._http_ok(self.ws_host, self.config.ws_port, "/health")
        elif name == "bot-market-maker":
            watched.ready = self._quoted(self.demo_setup.pair)
        if watched.ready:
            watched.status = "ready"

    def _http_get(self, host: str, port: int, path: str) -> tuple[int, bytes] | None:
        connection = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()

    def _http_ok(self, host: str, port: int, path: str) -> bool:
        answer = self._http_get(host, port, path)
        return answer is not None and answer[0] == 200

    def _quoted(self, pair: str) -> bool:
        answer = self._http_get(self.http_host, self.config.http_port, f"/api/v1/markets/{pair}/orderbook?depth=1")
        if answer is None or answer[0] != 200:
            return False
        book = orjson.loads(answer[1])["data"]
        return bool(book["bids"]) and bool(book["asks"])

    # ---------------------------------------------------------------- the demo

    def _start_demo(self) -> None:
        from common.demo import DemoError, ensure_demo

        self._show(force="setting up the demo market and traders")
        try:
            self.demo_setup = ensure_demo(self.config)
        except DemoError as error:
            logger.error("demo not started: %s", error)
            self.demo = False
            return
        self.demo_started = time.monotonic()
        setup = self.demo_setup
        for name, arguments in setup.bot_commands().items():
            self._add(name, arguments, _BOT_RANK)
        self.watched["bot-taker"].ready = True  # it trades at random times; nothing to wait for

    # ---------------------------------------------------------------- the display

    def _line(self) -> str:
        return "zmx starting: " + " · ".join(
            f"{watched.name} {watched.status}" for watched in self.watched.values())

    def _show(self, force: str | None = None) -> None:
        line = force or self._line()
        now = time.monotonic()
        if not self.warned_slow and now - self.started > _SLOW_START_SECONDS:
            self.warned_slow = True
            waiting = [watched for watched in self.watched.values() if not watched.ready]
            self._print("still waiting for " + ", ".join(
                f"{watched.name} (output in {watched.log_path})" for watched in waiting))
        if self.terminal:
            width = shutil.get_terminal_size().columns
            sys.stdout.write("\r\033[K" + line[: max(width - 1, 20)])
            sys.stdout.flush()
        elif line != self.shown and (force or now - self.shown_at >= 1.0):
            print(line, flush=True)
            self.shown, self.shown_at = line, now

    def _print(self, text: str) -> None:
        if self.terminal:
            sys.stdout.write("\r\033[K")
        print(text, flush=True)

    def _finish(self) -> None:
        seconds = time.monotonic() - self.started
        self._print(banner(self.config, self.admin_token, self.demo_setup, seconds, self.logs))


def banner(config: Config, admin_token: str, demo, seconds: float, logs: Path) -> str:
    """The lines `zmx up` prints once the stack is up."""
    http = f"http://{config.gateway.host}:{config.http_port}"
    lines = [
        f"zmx is up in {seconds:.1f} s; data in {config.data_dir}, process output in {logs}",
        f"  market page {http}/",
        f"  REST API    {http}/api/v1   (Swagger UI {http}/docs)",
        f"  WebSocket   ws://{config.feed.host}:{config.ws_port}/ws",
        f"  admin token  {admin_token}",
    ]
    if demo is not None:
        trader = demo.trader
        lines += [
            f"  demo market {demo.pair}, quoted by bot-market-maker and traded by bot-taker",
            f"  demo trader {trader['username']} (trader_id {trader['trader_id']})",
            f"    api key     {trader['api_key']}",
            f"    api secret  {trader['api_secret']}",
        ]
    for shard in config.shards:
        lines += [
            f"  matcher shard {shard.shard_id} (markets: {', '.join(shard.markets)})",
            f"    commands  {shard.command_endpoint}  ROUTER for gateways and feeds",
            f"    bots      {shard.bot_endpoint}  ROUTER for co-located bots (CURVE)",
            f"    public    {shard.public_endpoint}  PUB market data",
            f"    private   {shard.private_endpoint}  PUB account events (internal)",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)
