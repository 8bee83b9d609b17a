"""Start `zmx gateway` (real gunicorn) in front of a MatcherCluster and talk to it over HTTP.

`GatewayProcess` writes its own configuration file: the cluster's (same data directory,
same shards and endpoints) plus the HTTP port, the admin token and `[gateway]` settings.
`HttpClient` is one keep-alive connection, so a test can pin requests to one gunicorn
worker (each connection is served by the worker that accepted it) and, with two of them
answering from different pids, prove that something holds across workers.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from tests.integration.harness import REPO_ROOT, HarnessError, MatcherCluster, _die_with_parent, free_ports

ADMIN_TOKEN = "integration-admin-token-0123456789"
READY_TIMEOUT = 30.0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return orjson.dumps(value).decode()  # JSON strings and arrays of strings are valid TOML here
    return repr(value)


_last_timestamp = 0
_timestamp_lock = threading.Lock()


def _fresh_timestamp() -> int:
    """Return the time in ms, later than any this process signed with before.

    Two identical requests signed in the same millisecond (the same call from two
    connections, say) would carry the same signature, and the gateway refuses the second
    as a replay: each request gets its own millisecond, as a real client's would.
    """
    global _last_timestamp
    with _timestamp_lock:
        _last_timestamp = max(int(time.time() * 1000), _last_timestamp + 1)
        return _last_timestamp


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def code(self) -> str | None:
        """The reject code of an error envelope."""
        return self.json["error"]["code"] if self.status >= 400 else None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:300]!r})"


class HttpClient:
    """One keep-alive HTTP connection; signs trader requests when given a key and secret."""

    def __init__(self, port: int, api_key: str | None = None, api_secret: str | None = None,
                 timeout: float = 30.0) -> None:
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def close(self) -> None:
        self.connection.close()

    def raw(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
        self.connection.request(method, target, body=body, headers=headers or {})
        response = self.connection.getresponse()
        data = response.read()
        return Response(response.status, {name.lower(): value for name, value in response.getheaders()}, data)

    def signed_headers(self, method: str, target: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        timestamp = _fresh_timestamp() if timestamp is None else timestamp
        message = f"{timestamp}{method}{target}".encode() + body
        signature = hmac.new(self.api_secret.encode(), message, hashlib.sha256).hexdigest()
        return {"X-API-Key": self.api_key, "X-Timestamp": str(timestamp), "X-Signature": signature,
                "Content-Type": "application/json"}

    def request(self, method: str, target: str, body: Any = None) -> Response:
        data = b"" if body is None else orjson.dumps(body)
        return self.raw(method, target, data, self.signed_headers(method, target, data))

    def admin(self, method: str, target: str, body: Any = None) -> Response:
        data = b"" if body is None else orjson.dumps(body)
        return self.raw(method, target, data, {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                               "Content-Type": "application/json"})

    def worker_pid(self) -> int:
        return self.raw("GET", "/health").json["pid"]


class GatewayProcess:
    """`python -m common.cli gateway` for a cluster, with its own log file."""

    def __init__(self, cluster: MatcherCluster, name: str = "gateway", admin_token: str | None = ADMIN_TOKEN,
                 **settings: Any) -> None:
        self.cluster = cluster
        self.name = name
        self.admin_token = admin_token
        self.settings = {"workers": 2, "threads": 4, **settings}
        self.config_path = cluster.directory / f"{name}.toml"
        self.log_path = cluster.directory / f"{name}.log"
        self.port = 0
        self.popen: subprocess.Popen | None = None
        self._clients: list[HttpClient] = []
        self._choose_port()

    def _choose_port(self) -> None:
        self.port, ws_port = free_ports(2)
        top = [f"http_port = {self.port}", f"ws_port = {ws_port}"]
        if self.admin_token is not None:
            top.append(f"admin_token = {orjson.dumps(self.admin_token).decode()}")
        table = ["", "[gateway]"] + [f"{key} = {_toml_value(value)}" for key, value in self.settings.items()]
        self.config_path.write_text("\n".join(top) + "\n" + self.cluster.config_path.read_text()
                                    + "\n".join(table) + "\n")

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        for attempt in range(3):
            try:
                return self._start(timeout)
            except HarnessError:
                in_use = "in use" in self.log_text() or "Address already" in self.log_text()
                self.stop()
                if attempt == 2 or not in_use:
                    raise
                self._choose_port()

    def _start(self, timeout: float) -> None:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("ZMX_") and name != "PROMETHEUS_MULTIPROC_DIR"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "common.cli", "--config", str(self.config_path), "gateway"]
        with open(self.log_path, "ab") as log:
            log.write(f"---- start: {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise HarnessError(f"gateway exited with {self.popen.returncode}\n{self.log_text()}")
            try:
                probe = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                probe.request("GET", "/api/v1/time")
                if probe.getresponse().status == 200:
                    probe.close()
                    return
                probe.close()
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise HarnessError(f"gateway did not answer within {timeout} s\n{self.log_text()}")
            time.sleep(0.05)

    def client(self, api_key: str | None = None, api_secret: str | None = None) -> HttpClient:
        client = HttpClient(self.port, api_key, api_secret)
        self._clients.append(client)
        return client

    def clients_on_distinct_workers(self, count: int = 2, timeout: float = 30.0) -> list[HttpClient]:
        """Return `count` connections, each served by a different worker.

        Which worker accepts a connection is up to the kernel and to which workers have
        booted, so on a loaded machine this may take a while: it tries until the deadline.
        """
        by_pid: dict[int, HttpClient] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client = self.client()
            pid = client.worker_pid()
            if pid in by_pid:
                client.close()
                time.sleep(0.01)
            else:
                by_pid[pid] = client
            if len(by_pid) == count:
                return list(by_pid.values())
        raise HarnessError(f"connections reached only workers {sorted(by_pid)} in {timeout} s")

    def create_trader(self, username: str, deposits: dict[str, str] | None = None) -> dict[str, Any]:
        admin = self.client()
        created = admin.admin("POST", "/api/v1/admin/traders", {"username": username})
        assert created.status == 201, created
        trader = created.json["data"]
        for asset, amount in (deposits or {}).items():
            deposited = admin.admin("POST", "/api/v1/admin/deposits",
                                    {"trader_id": trader["trader_id"], "asset": asset, "amount": amount})
            assert deposited.status == 201, deposited
        return trader

    def stop(self, timeout: float = 15.0) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)  # its own session: the master and its workers
            self.popen.wait(5)
            raise HarnessError(f"gateway ignored SIGTERM for {timeout} s\n{self.log_text()}") from None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"


_last_timestamp = 0


def _fresh_timestamp() -> int:
    """Milliseconds, never the same twice in this process: two identical requests signed in
    the same millisecond would have the same signature, and the second is refused as a replay
    (docs/rest-api.md); a real client signs each request with a fresh timestamp too."""
    global _last_timestamp
    _last_timestamp = max(int(time.time() * 1000), _last_timestamp + 1)
    return _last_timestamp
