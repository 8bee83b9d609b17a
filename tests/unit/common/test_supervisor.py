"""Tests for common.supervisor: start, restart, stop on a signal, leave no orphans.

The supervisor installs signal handlers, so each test runs it in a real child process
(a small driver script) and talks to it with real signals. The supervised children are
tiny `python -c` programs that record their life in files: `<name>-<pid>.started` when
they are up, `<name>-<pid>.stopped` when SIGTERM reached them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from common.supervisor import Supervisor

CHILD = r"""
import os, select, signal, sys
directory, name, mode = sys.argv[1:]
pid = os.getpid()
if mode == "crash" or (mode == "crash-once" and not os.path.exists(f"{directory}/{name}.crashed")):
    open(f"{directory}/{name}.crashed", "w").close()
    open(f"{directory}/{name}-{pid}.started", "w").close()
    sys.exit(3)
def stop(signum, frame):
    if mode == "slow":  # a shutdown that takes a while, like a matcher flushing its journal
        select.select([], [], [], 0.5)
    open(f"{directory}/{name}-{pid}.stopped", "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stop)
print(f"{name} is up", flush=True)
open(f"{directory}/{name}-{pid}.started", "w").close()
while True:
    signal.pause()
"""

DRIVER = r"""
import sys
from pathlib import Path
import orjson
from common.logs import setup_logging
from common.supervisor import Supervisor
spec = orjson.loads(sys.argv[1])
setup_logging("info", "supervisor")
supervisor = Supervisor(**spec["options"])
for settings in spec["settings"].values():
    if "log_path" in settings:
        settings["log_path"] = Path(settings["log_path"])
for name, argv in spec["children"].items():
    supervisor.add(name, argv, **spec["settings"].get(name, {}))
def add_late_children():  # as `zmx up` adds the demo bots once the stack is up
    for name, argv in spec["late"].items():
        supervisor.add(name, argv, **spec["settings"].get(name, {}))
    return None
sys.exit(supervisor.run(on_tick=add_late_children if spec["late"] else None))
"""


class Driver:
    """A supervisor running in its own process, with the files its children leave."""

    def __init__(self, process: subprocess.Popen[bytes], directory: Path, log_path: Path) -> None:
        self.process = process
        self.directory = directory
        self.log_path = log_path

    def pids(self, name: str, state: str = "started") -> list[int]:
        return sorted(
            int(path.name.rsplit("-", 1)[1].split(".")[0])
            for path in self.directory.glob(f"{name}-*.{state}")
        )

    def log_lines(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.log_path.read_bytes().splitlines()]


@pytest.fixture
def start_driver(tmp_path: Path, repo_root: Path) -> Iterator[Callable[..., Driver]]:
    drivers: list[Driver] = []

    def start(children: dict[str, str], late: dict[str, str] | None = None,
              settings: dict[str, dict] | None = None, **options: float) -> Driver:
        def argv(name: str, mode: str) -> list[str]:
            return [sys.executable, "-c", CHILD, str(tmp_path), name, mode]

        spec = {
            "options": options,
            "children": {name: argv(name, mode) for name, mode in children.items()},
            "late": {name: argv(name, mode) for name, mode in (late or {}).items()},
            "settings": settings or {},
        }
        log_path = tmp_path / "supervisor.log"
        environment = dict(os.environ, PYTHONPATH=str(repo_root))
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", DRIVER, orjson.dumps(spec).decode()],
                env=environment,
                stderr=log,
            )
        driver = Driver(process, tmp_path, log_path)
        drivers.append(driver)
        return driver

    yield start
    # After a failed test: let the supervisor stop its children; if it cannot, kill it and
    # its children get SIGTERM from PR_SET_PDEATHSIG.
    for driver in drivers:
        if driver.process.poll() is None:
            driver.process.terminate()
            try:
                driver.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                driver.process.kill()
                driver.process.wait()


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_starts_children_and_stops_them_all_on_a_signal(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object], stop_signal: int
) -> None:
    driver = start_driver({"alpha": "steady", "beta": "steady"})
    wait_until(lambda: driver.pids("alpha") and driver.pids("beta"), what="both children")
    (alpha,), (beta,) = driver.pids("alpha"), driver.pids("beta")

    driver.process.send_signal(stop_signal)

    assert driver.process.wait(timeout=15) == 0
    assert driver.pids("alpha", "stopped") == [alpha]
    assert driver.pids("beta", "stopped") == [beta]
    assert is_gone(alpha) and is_gone(beta)
    assert driver.log_lines()[-1]["msg"] == "all children stopped"


def test_restarts_a_child_that_exits_with_an_error(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    driver = start_driver({"flaky": "crash-once", "steady": "steady"}, restart_delay=0.05)

    wait_until(lambda: len(driver.pids("flaky")) == 2, what="the restarted child")
    driver.process.send_signal(signal.SIGTERM)
    assert driver.process.wait(timeout=15) == 0

    crashed, restarted = driver.pids("flaky")
    assert driver.pids("flaky", "stopped") == [restarted]
    assert len(driver.pids("steady")) == 1
    restart_lines = [line for line in driver.log_lines() if line.get("returncode") is not None]
    assert len(restart_lines) == 1
    line = restart_lines[0]
    assert line["level"] == "error"
    assert line["process"] == "supervisor"
    assert line["child"] == "flaky"
    assert line["child_pid"] == crashed
    assert line["returncode"] == 3
    assert line["restart_in_seconds"] == 0.05
    assert "exited unexpectedly" in str(line["msg"])


def test_restart_delay_doubles_while_a_child_keeps_crashing(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    driver = start_driver({"broken": "crash"}, restart_delay=0.01, max_restart_delay=0.5)

    wait_until(lambda: len(driver.pids("broken")) >= 8, what="eight crashes")
    driver.process.send_signal(signal.SIGTERM)
    assert driver.process.wait(timeout=15) == 0

    delays = [line["restart_in_seconds"] for line in driver.log_lines() if "returncode" in line]
    assert delays[:7] == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5]


def test_kills_a_child_that_ignores_sigterm(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    driver = start_driver({"stubborn": "stubborn", "polite": "steady"}, stop_timeout=0.5)
    wait_until(lambda: driver.pids("stubborn") and driver.pids("polite"), what="both children")
    (stubborn,) = driver.pids("stubborn")

    driver.process.send_signal(signal.SIGTERM)

    assert driver.process.wait(timeout=15) == 0
    assert is_gone(stubborn)
    assert len(driver.pids("polite", "stopped")) == 1
    killed = [line for line in driver.log_lines() if line["level"] == "warning"]
    assert [line["child"] for line in killed] == ["stubborn"]


def test_second_signal_kills_at_once(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    driver = start_driver({"stubborn": "stubborn"}, stop_timeout=60)
    wait_until(lambda: driver.pids("stubborn"), what="the child")
    (stubborn,) = driver.pids("stubborn")

    driver.process.send_signal(signal.SIGINT)
    wait_until(
        lambda: any(line["msg"] == "stopping children" for line in driver.log_lines()),
        what="the supervisor to start stopping",
    )
    driver.process.send_signal(signal.SIGINT)

    assert driver.process.wait(timeout=15) == 0
    assert is_gone(stubborn)


def test_a_repeated_sigterm_still_stops_children_gracefully(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    """`make run` stopped by a SIGTERM to its process group passes a second SIGTERM on."""
    driver = start_driver({"slow": "slow"}, stop_timeout=60)
    wait_until(lambda: driver.pids("slow"), what="the child")

    driver.process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: any(line["msg"] == "stopping children" for line in driver.log_lines()),
        what="the supervisor to start stopping",
    )
    driver.process.send_signal(signal.SIGTERM)

    assert driver.process.wait(timeout=15) == 0
    assert len(driver.pids("slow", "stopped")) == 1
    assert not [line for line in driver.log_lines() if line["level"] == "warning"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_children_are_stopped_when_the_supervisor_is_killed(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object]
) -> None:
    driver = start_driver({"alpha": "steady", "beta": "steady"})
    wait_until(lambda: driver.pids("alpha") and driver.pids("beta"), what="both children")

    driver.process.kill()
    driver.process.wait(timeout=15)

    wait_until(
        lambda: driver.pids("alpha", "stopped") and driver.pids("beta", "stopped"),
        what="orphaned children to get SIGTERM",
    )


def test_children_stop_by_rank_highest_first_and_write_to_their_log_files(
    start_driver: Callable[..., Driver], wait_until: Callable[..., object], tmp_path: Path
) -> None:
    """A bot (rank 2) stops before the gateway (1), which stops before the matcher (0)."""
    driver = start_driver(
        {"matcher": "slow", "gateway": "slow"}, late={"bot": "slow"},
        settings={"matcher": {"stop_rank": 0, "log_path": str(tmp_path / "logs" / "matcher.log")},
                  "gateway": {"stop_rank": 1}, "bot": {"stop_rank": 2}})
    wait_until(lambda: all(driver.pids(name) for name in ("matcher", "gateway", "bot")),
               what="every child, including the one added by on_tick")

    driver.process.send_signal(signal.SIGTERM)

    assert driver.process.wait(timeout=15) == 0
    stopped_at = {name: next(tmp_path.glob(f"{name}-*.stopped")).stat().st_mtime_ns
                  for name in ("bot", "gateway", "matcher")}
    assert stopped_at["bot"] < stopped_at["gateway"] < stopped_at["matcher"]
    assert (tmp_path / "logs" / "matcher.log").read_text() == "matcher is up\n"
    assert b"matcher is up" not in driver.log_path.read_bytes()


def test_refuses_duplicate_names_and_empty_commands() -> None:
    supervisor = Supervisor()
    supervisor.add("matcher-0", [sys.executable, "-c", "pass"])

    with pytest.raises(ValueError, match="already registered"):
        supervisor.add("matcher-0", [sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="needs a command line"):
        supervisor.add("matcher-1", [])


def test_refuses_to_run_with_no_children() -> None:
    with pytest.raises(ValueError, match="no children"):
        Supervisor().run()
