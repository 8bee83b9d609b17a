"""Run every benchmark of the project and write what each printed into docs/benchmarks.md.

    python loadtest/run_all.py                      # everything, default arguments (20-30 minutes)
    python loadtest/run_all.py --quick              # shorter runs (a few minutes), rougher figures
    python loadtest/run_all.py --only matcher --only locust
    python loadtest/run_all.py --list               # what would run, with the exact commands

Benchmarks: every `loadtest/bench_*.py` (named after it: `bench_matcher.py` is `matcher`),
run as `python loadtest/bench_NAME.py` with its own defaults, or with the shorter arguments
of QUICK_ARGUMENTS under `--quick` (a script that has no entry there runs with its
defaults either way); and `locust`: a `zmx up --no-demo` stack on free ports in a
temporary directory, loadtest/locust_rest.py and loadtest/locust_ws.py run against it at
the same time (the subscribers follow the market the REST users trade), their statistics
read from Locust's CSV files, their HTML reports kept in `--reports` (default
`loadtest/reports/`, not committed).

docs/benchmarks.md is written by hand: the figures there come with their method and the
verdicts of the profiles. run_all.py owns one section of it only, between the
`<!-- run_all.py: begin -->` and `<!-- run_all.py: end -->` lines (appended at the end of
the page when missing), and inside it one block per benchmark, between
`<!-- run_all.py: begin NAME -->` and `<!-- run_all.py: end NAME -->`. A run replaces the
blocks of the benchmarks it ran and keeps the others, so `--only` refreshes one block.
Each block records the machine, the date, the git commit (and whether the tree had
uncommitted changes), the command, the exit status, the duration and the load average
before and after: on a shared machine the load average says how far to trust the figures.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    sys.path.insert(0, str(REPO_ROOT))

from loadtest.bench_zmq import cpu_model, free_ports  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
SECTION_BEGIN, SECTION_END = "<!-- run_all.py: begin -->", "<!-- run_all.py: end -->"
BLOCK = re.compile(r"<!-- run_all\.py: begin (?P<name>[\w-]+) -->\n.*?<!-- run_all\.py: end (?P=name) -->\n",
                   re.DOTALL)
SECTION_INTRO = """## Latest figures from run_all.py

Written by `python loadtest/run_all.py` ([loadtest.md](loadtest.md#all-benchmarks-at-once-run_allpy));
everything above this section is written by hand. Each block is the raw output of one
benchmark with when, where and how it ran; `--quick` blocks use shorter runs and are
rougher. On a shared machine read the load average before trusting a figure (the 1-minute
figure also counts the tail of the benchmark that ran just before).
"""

# Shorter runs for --quick: each finishes in well under a minute.
QUICK_ARGUMENTS = {
    "matcher": ["--orders", "50000", "--repeat", "1"],
    "zmq": ["--orders", "50000", "--seconds", "5"],
    "journal": ["--seconds", "0.3"],
    "store": ["--orders", "10000", "--fills", "100000", "--queries", "1000"],
    "feed": ["--clients", "100", "--seconds", "5", "--prefill", "500"],
    "gateway": ["--seconds", "3"],
    "bot": ["--seconds", "3"],
}
LOCUST = {  # users, spawn rate, seconds of the REST run; users and seconds of the WebSocket run
    "full": {"rest_users": 50, "rate": 10, "seconds": 60, "ws_users": 50, "ws_seconds": 50},
    "quick": {"rest_users": 10, "rate": 10, "seconds": 15, "ws_users": 10, "ws_seconds": 10},
}
LOCUST_PAIR = "LOAD-USDT"
TIMEOUT_SECONDS = {"full": 3600, "quick": 600}


class BenchmarkError(Exception):
    """A benchmark could not be run (its block says why)."""


@dataclass
class Result:
    name: str
    commands: list[str]
    exit_code: int
    seconds: float
    output: str
    load_before: tuple[float, ...]
    load_after: tuple[float, ...] = field(default_factory=os.getloadavg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (QUICK_ARGUMENTS, a short Locust run)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this benchmark (repeatable): matcher, zmq, ..., locust")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the page to update (docs/benchmarks.md)")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "loadtest" / "reports",
                        help="where Locust's HTML reports go")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and their commands, run nothing")
    arguments = parser.parse_args()
    mode = "quick" if arguments.quick else "full"
    names = [path.stem.removeprefix("bench_") for path in sorted((REPO_ROOT / "loadtest").glob("bench_*.py"))]
    names.append("locust")
    if arguments.only:
        unknown = sorted(set(arguments.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(names)})")
        names = [name for name in names if name in arguments.only]
    if arguments.list:
        for name in names:
            print(f"{name}: {' '.join(bench_command(name, mode)) if name != 'locust' else 'two Locust runs against zmx up'}")
        return 0
    failed = []
    for name in names:
        print(f"==== {name}", flush=True)
        load_before, started = os.getloadavg(), time.monotonic()
        try:
            result = run_locust(mode, arguments.reports) if name == "locust" else run_script(name, mode)
        except BenchmarkError as error:
            result = Result(name, [], 1, time.monotonic() - started, f"run_all.py: {error}", load_before)
        if result.exit_code != 0:
            failed.append(name)
        update_page(arguments.output, name, render(result, mode, arguments.output))
        print(f"==== {name}: exit {result.exit_code} after {result.seconds:.0f} s; {arguments.output} updated",
              flush=True)
    if failed:
        print(f"failed: {', '.join(failed)} (their blocks say how)", file=sys.stderr)
    return 1 if failed else 0


def bench_command(name: str, mode: str) -> list[str]:
    extra = QUICK_ARGUMENTS.get(name, []) if mode == "quick" else []
    return [sys.executable, f"loadtest/bench_{name}.py", *extra]


def run_script(name: str, mode: str) -> Result:
    command = bench_command(name, mode)
    load_before, started = os.getloadavg(), time.monotonic()
    exit_code, output = run_logged(command, TIMEOUT_SECONDS[mode])
    return Result(name, [shown(command)], exit_code, time.monotonic() - started, output, load_before)


def run_logged(command: list[str], timeout: float, cwd: Path = REPO_ROOT) -> tuple[int, str]:
    """Run a command, echoing its output as it comes; return (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    # Its own session, so that a timeout stops the benchmark and every process it started.
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    deadline = time.monotonic() + timeout
    lines = []
    try:
        for line in process.stdout:
            sys.stdout.write(line)
            lines.append(line)
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(command, timeout)
        return process.wait(max(1.0, deadline - time.monotonic())), "".join(lines)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return -signal.SIGKILL, "".join(lines) + f"\n(run_all.py: stopped after {timeout} s)\n"


def shown(command: list[str]) -> str:
    """A command as a reader would type it from the repository (`python`, not this interpreter's path)."""
    return " ".join("python" if part == sys.executable else part.replace(f"{REPO_ROOT}{os.sep}", "")
                    for part in command)


# ---------------------------------------------------------------- Locust against zmx up


def run_locust(mode: str, reports: Path) -> Result:
    settings = LOCUST[mode]
    reports.mkdir(parents=True, exist_ok=True)
    load_before, started = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zmx-run-all-") as scratch:
        directory = Path(scratch)
        stack, http_port, ws_port = start_stack(directory)
        try:
            token = (directory / "data" / "gateway" / "admin.token").read_text().strip()
            rest = locust_command("locust_rest.py", f"http://127.0.0.1:{http_port}", settings["rest_users"],
                                  settings["rate"], settings["seconds"], reports / "locust-rest.html",
                                  directory / "rest")
            websocket = locust_command("locust_ws.py", f"ws://127.0.0.1:{ws_port}", settings["ws_users"],
                                       settings["ws_users"], settings["ws_seconds"], reports / "locust-ws.html",
                                       directory / "ws")
            rest_run = subprocess.Popen([*rest, "--admin-token", token], cwd=REPO_ROOT,
                                        stdout=(directory / "rest.log").open("wb"), stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: status(http_port, f"/api/v1/markets/{LOCUST_PAIR}/ticker") == 200, 60,
                         "the REST run to create its market")
                ws_code, ws_output = run_logged(websocket, settings["ws_seconds"] + 120)
                rest_code = rest_run.wait(settings["seconds"] + 120)
            finally:
                if rest_run.poll() is None:
                    rest_run.kill()
                    rest_run.wait()
        finally:
            stop_stack(stack)
        output = "\n".join([
            f"REST: {settings['rest_users']} users (one trader each), exit {rest_code}",
            locust_table(directory / "rest_stats.csv"),
            "", f"WebSocket: {settings['ws_users']} subscribers, exit {ws_code}",
            locust_table(directory / "ws_stats.csv"),
        ])
        if rest_code != 0:
            output += "\n\nREST run log (tail):\n" + (directory / "rest.log").read_text(errors="replace")[-3000:]
        if ws_code != 0:
            output += "\n\nWebSocket run log (tail):\n" + ws_output[-3000:]
    commands = [shown([*rest, "--admin-token", "TOKEN"]), shown(websocket)]
    return Result("locust", commands, rest_code or ws_code, time.monotonic() - started, output, load_before)


def locust_command(locustfile: str, host: str, users: int, rate: int, seconds: int, html: Path,
                   csv_prefix: Path) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", f"loadtest/{locustfile}", "--headless", "-u", str(users),
            "-r", str(rate), "-t", f"{seconds}s", "--host", host, "--pair", LOCUST_PAIR, "--html", str(html),
            "--csv", str(csv_prefix), "--only-summary"]


def locust_table(path: Path) -> str:
    """Locust's CSV statistics as a fixed-width table (milliseconds)."""
    try:
        with open(path, newline="") as stats:
            rows = list(csv.DictReader(stats))
    except OSError as error:
        return f"(no statistics: {error})"
    header = ("request", "count", "failures", "req/s", "p50", "p95", "p99", "max")
    lines = [header] + [
        (f"{row['Type']} {row['Name']}".strip(), row["Request Count"], row["Failure Count"],
         f"{float(row['Requests/s']):.1f}", row["50%"], row["95%"], row["99%"], row["100%"])
        for row in rows]
    width = max(len(line[0]) for line in lines)
    return "\n".join(f"{line[0]:<{width}}  " + "  ".join(f"{value:>8}" for value in line[1:]) for line in lines)


def start_stack(directory: Path) -> tuple[subprocess.Popen, int, int]:
    """`zmx up --no-demo` on free ports with its data in `directory`; return it and its HTTP and WS ports."""
    http_port, ws_port, *ports = free_ports(6)
    endpoints = zip(("command_endpoint", "public_endpoint", "bot_endpoint", "private_endpoint"), ports)
    config = directory / "zmx.toml"
    config.write_text(
        f"data_dir = {json.dumps(str(directory / 'data'))}\nhttp_port = {http_port}\nws_port = {ws_port}\n"
        '[[shards]]\nshard_id = 0\nmarkets = ["*"]\n'
        + "".join(f'{key} = "tcp://127.0.0.1:{port}"\n' for key, port in endpoints))
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
    stack = subprocess.Popen([sys.executable, "-m", "common.cli", "--config", str(config), "up", "--no-demo"],
                             cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=(directory / "up.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stack.poll() is not None or status(http_port, "/health") == 200, 60, "zmx up")
    except BaseException:
        stop_stack(stack)
        raise
    if stack.poll() is not None:
        raise BenchmarkError(f"zmx up exited with {stack.returncode}:\n{(directory / 'up.log').read_text()[-3000:]}")
    return stack, http_port, ws_port


def stop_stack(stack: subprocess.Popen) -> None:
    if stack.poll() is None:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()


def status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------- docs/benchmarks.md


def render(result: Result, mode: str, page: Path) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commands = "\n".join(f"    {command}" for command in result.commands)
    output = result.output.rstrip("\n").replace("```", "'''")
    return (
        f"<!-- run_all.py: begin {result.name} -->\n"
        f"### {result.name}{' (quick)' if mode == 'quick' else ''}\n\n"
        f"{when}, commit {git_commit(page)}; {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, {platform.python_implementation()} {platform.python_version()}; "
        f"exit {result.exit_code} after {result.seconds:.0f} s; load average (1, 5, 15 min) "
        f"{loads(result.load_before)} before, {loads(result.load_after)} after.\n\n"
        f"{commands}\n\n```text\n{output}\n```\n"
        f"<!-- run_all.py: end {result.name} -->\n"
    )


def loads(values: tuple[float, ...]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def git_commit(page: Path) -> str:
    """HEAD, and whether the tree differs from it (apart from the page being written)."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    page = page.resolve()
    outside = [f":(exclude){page.relative_to(REPO_ROOT)}"] if page.is_relative_to(REPO_ROOT) else []
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *outside)
    return f"{commit} (with uncommitted changes)" if changed else commit


def update_page(path: Path, name: str, block: str) -> None:
    """Replace benchmark `name`'s block in the generated section of the page (creating either if missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION_BEGIN}\n{SECTION_INTRO}{SECTION_END}\n"
    head, rest = text.split(SECTION_BEGIN + "\n", 1)
    section, tail = rest.split(SECTION_END + "\n", 1) if SECTION_END + "\n" in rest else (rest, "")
    blocks = {match["name"]: match[0] for match in BLOCK.finditer(section)}
    blocks[name] = block
    path.write_text(head + SECTION_BEGIN + "\n" + SECTION_INTRO + "".join(
        "\n" + blocks[key] for key in sorted(blocks, key=block_order)) + SECTION_END + "\n" + tail)


def block_order(name: str) -> tuple[bool, str]:
    return name == "locust", name


if __name__ == "__main__":
    sys.exit(main())
