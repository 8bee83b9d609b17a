"""Run a whole stack with `zmx up --no-demo` (or with its demo) on free ports and talk to it over HTTP.

`UpStack` writes a configuration file (its own data directory, HTTP and WebSocket ports,
one shard on free ZeroMQ ports, one gunicorn worker, plus any settings a test adds), runs
`python -m common.cli --config ... up --no-demo` with its output in a log file, waits for
the banner `zmx up` prints once every process is ready, and reads the admin token from it.

As a context manager it also proves the stack stops cleanly: `zmx up` exits 0 on SIGTERM
and no process it ever ran is left (`remember_processes` notes them as they come and go,
including the workers of a gateway master that was killed). `children_by_kind` names the
supervisor's direct children by their command (`matcher --shard 0`, `recorder`,
`gateway`, `feed`, and whatever kinds `zmx up` gains later).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil

from tests.integration.gateway_harness import _toml_value
from tests.integration.harness import REPO_ROOT, _die_with_parent, free_ports
from tests.polling import poll_until

ENDPOINT_KEYS = ("command_endpoint", "public_endpoint", "bot_endpoint", "private_endpoint")


def request(port: int, path: str, headers: dict[str, str] | None = None, body: object = None,
            method: str = "GET") -> tuple[int, dict]:
    """Send one request to 127.0.0.1:`port`; return the status and the decoded JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        payload = orjson.dumps(body) if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def healthy(port: int) -> bool:
    try:
        return request(port, "/health")[0] == 200
    except OSError:
        return False


class UpStack:
    """`zmx up --no-demo` in `directory`; `sections` adds settings, e.g. gateway={"threads": 2}.

    With `demo=True` the stack runs `zmx up` with its demo market, traders and bots.
    """

    def __init__(self, directory: Path, demo: bool = False, **sections: dict[str, Any]) -> None:
        self.demo = demo
        self.directory = directory
        self.http_port, self.ws_port, *ports = free_ports(2 + len(ENDPOINT_KEYS))
        self.config_path = directory / "zmx.toml"
        self.log_path = directory / "up.log"
        sections = {"gateway": {"workers": 1, "threads": 2}, **sections}
        lines = [f"data_dir = {_toml_value(str(directory / 'data'))}", f"http_port = {self.http_port}",
                 f"ws_port = {self.ws_port}"]
        for section, settings in sections.items():
            lines += ["", f"[{section}]"] + [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
        lines += ["", "[[shards]]", "shard_id = 0", 'markets = ["*"]']
        lines += [f"{key} = {_toml_value(f'tcp://127.0.0.1:{port}')}" for key, port in zip(ENDPOINT_KEYS, ports)]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.endpoints = {key: f"tcp://127.0.0.1:{port}" for key, port in zip(ENDPOINT_KEYS, ports)}
        self.popen: subprocess.Popen | None = None
        self.admin: dict[str, str] = {}
        self.seen: dict[int, psutil.Process] = {}

    @property
    def admin_token(self) -> str:
        return self.admin["Authorization"].removeprefix("Bearer ")

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def start(self, timeout: float = 60.0) -> "UpStack":
        env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "common.cli", "--config", str(self.config_path), "up",
                 *([] if self.demo else ["--no-demo"])],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        banner = poll_until(
            lambda: self._check_running() and re.search(rb"admin token +(\S+)", self.log_path.read_bytes()),
            timeout, "zmx up to print its banner once every process is ready")
        assert healthy(self.http_port)
        self.admin = {"Authorization": f"Bearer {banner.group(1).decode()}"}
        return self

    def _check_running(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"zmx up exited with {self.popen.returncode}\n{self.log_text()[-5000:]}")
        return True

    def request(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict]:
        return request(self.http_port, path, headers, body, method)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def children_by_kind(self) -> dict[str, psutil.Process]:
        """The supervisor's running children by kind: the command after `--config PATH`."""
        kinds = {}
        for process in psutil.Process(self.popen.pid).children():
            self.seen.setdefault(process.pid, process)
            try:
                command = process.cmdline()
                if "--config" in command and process.status() != psutil.STATUS_ZOMBIE:
                    kinds[" ".join(command[command.index("--config") + 2:])] = process
            except psutil.NoSuchProcess:
                continue
        return kinds

    def remember_processes(self) -> None:
        """Note every process of the stack now running, so that leaving the context proves each one ended."""
        try:
            for process in self.children():
                self.seen.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            pass

    def leftovers(self) -> list[int]:
        """The processes noted by `remember_processes` that still run."""
        left = []
        for pid, process in self.seen.items():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left

    def create_trader(self, username: str, deposits: dict[str, str]) -> dict[str, Any]:
        """Create a trader through the admin API and fund it; return its id, key and secret."""
        status, created = self.request("POST", "/api/v1/admin/traders", {"username": username}, self.admin)
        assert status == 201, created
        trader = created["data"]
        for asset, amount in deposits.items():
            status, deposited = self.request("POST", "/api/v1/admin/deposits", {
                "trader_id": trader["trader_id"], "asset": asset, "amount": amount}, self.admin)
            assert status == 201, deposited
        return trader

    def stop(self, timeout: float = 60.0) -> int:
        """Send SIGTERM and return the exit code (killing it if it does not stop in time)."""
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            raise AssertionError(f"zmx up ignored SIGTERM\n{self.log_text()[-5000:]}") from None

    def __enter__(self) -> "UpStack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        self.remember_processes()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.remember_processes()
        code = self.stop()
        if exc_type is None:
            assert code == 0, f"zmx up exited with {code}\n{self.log_text()[-5000:]}"
            poll_until(lambda: not self.leftovers(), 15, f"the stack's processes to end: {self.leftovers()}")
        else:
            for pid in self.leftovers():  # the test failed already: make sure nothing stays behind
                self.seen[pid].kill()

    def error_lines(self, limit: int = 40) -> str:
        """The newest `limit` log lines at level error or above of each child (each with its traceback)."""
        found = []
        for path in sorted((self.directory / "data" / "logs").glob("*.log")):
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if '"level":"error"' in line or '"level":"critical"' in line]
            found += [f"{path.name}: {line}" for line in lines[-limit:]]
        return "\n".join(found)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
