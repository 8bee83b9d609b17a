"""The Locust files of loadtest/ run headless against a real `zmx up` with no failure and write their reports."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import REPO_ROOT
from tests.integration.up_harness import UpStack
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "LOAD-USDT"


def locust(locustfile: str, host: str, seconds: int, users: int, out: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "loadtest" / locustfile), "--headless",
               "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", host, "--pair", PAIR,
               "--html", str(out / "report.html"), "--csv", str(out / "stats"), "--only-summary", *options]
    out.mkdir()
    return subprocess.Popen(command, cwd=out, stdout=(out / "locust.log").open("wb"), stderr=subprocess.STDOUT)


def finish(run: subprocess.Popen, out: Path) -> dict[str, dict[str, str]]:
    """Wait for a Locust run; return its statistics by "TYPE name" after checking it failed nothing."""
    code = run.wait(60)
    log = (out / "locust.log").read_text(errors="replace")
    assert code == 0, f"locust exited with {code}\n{log[-5000:]}"
    with open(out / "stats_stats.csv", newline="") as stats_file:
        stats = {f"{row['Type']} {row['Name']}".strip(): row for row in csv.DictReader(stats_file)}
    assert stats["Aggregated"]["Failure Count"] == "0", log[-5000:]
    assert "<html" in (out / "report.html").read_text()[:2000].lower()
    return stats


def test_rest_and_websocket_locustfiles_run_headless_without_failures(tmp_path: Path) -> None:
    runs: list[subprocess.Popen] = []
    (tmp_path / "stack").mkdir()
    with UpStack(tmp_path / "stack", gateway={"workers": 1, "threads": 4}) as stack:
        try:
            runs.append(locust("locust_rest.py", f"http://127.0.0.1:{stack.http_port}", 8, 8, tmp_path / "rest",
                               "--admin-token", stack.admin_token))
            # The REST run creates the market; the subscribers need it to exist.
            poll_until(lambda: stack.request("GET", f"/api/v1/markets/{PAIR}/ticker")[0] == 200, 20,
                       "the REST run to create the market")
            runs.append(locust("locust_ws.py", f"ws://127.0.0.1:{stack.ws_port}", 5, 5, tmp_path / "ws"))
            websocket_stats = finish(runs[1], tmp_path / "ws")
            rest_stats = finish(runs[0], tmp_path / "rest")
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait(10)
    for name in ("POST /api/v1/account/orders", "PATCH /api/v1/account/orders/{order_id}",
                 "DELETE /api/v1/account/orders/{order_id}", "GET /api/v1/markets/{pair}/orderbook"):
        assert int(rest_stats[name]["Request Count"]) > 0, (name, rest_stats)
    # The subscribers saw the REST run's orders and trades, each diff continuing the last.
    assert int(websocket_stats["WS subscribe"]["Request Count"]) == 5
    assert int(websocket_stats["WS orderbook diff"]["Request Count"]) > 0
    assert int(websocket_stats["WS trades update"]["Request Count"]) > 0
