"""Run a set of child processes, restart the ones that die, stop them all on a signal.

`zmx up` is a `Supervisor` with one child per process of the stack. Each child runs in its
own process group, so a Ctrl-C in the terminal reaches only the supervisor, which then
sends SIGTERM to every child exactly once, waits up to `stop_timeout` seconds and sends
SIGKILL to whatever is left. A second Ctrl-C (SIGINT) while stopping kills at once; a
repeated SIGTERM does not, since it is usually one stop request delivered twice (by `make`,
or by a service manager signalling the whole process group, which escalates itself). On
Linux each child also gets SIGTERM if the supervisor itself dies (`PR_SET_PDEATHSIG`), so a
`kill -9` of the supervisor leaves no orphans behind.

A child that exits while the supervisor is running is restarted after `restart_delay`
seconds; the delay doubles while the child keeps dying young (it ran for less than
`max_restart_delay`) and resets once it stays up. The loop sleeps in `select()` on a
self-pipe that SIGCHLD, SIGINT and SIGTERM write to, so it wakes for exactly those events
(and for the `on_tick` callback, which `zmx up` uses to watch the stack come up and to add
children once it has).

Children stop in groups by `stop_rank`, highest first, each group getting up to
`stop_timeout` seconds: bots leave before the gateways they trade through, and matchers
flush their journals last. A child with a `log_path` writes its stdout and stderr to that
file (appended), not to the supervisor's terminal.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger("zmx.supervisor")

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Child:
    __slots__ = ("name", "argv", "log_path", "stop_rank", "process", "started_at", "restart_at",
                 "restart_delay")

    def __init__(self, name: str, argv: list[str], log_path: Path | None, stop_rank: int,
                 restart_delay: float) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.stop_rank = stop_rank
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.restart_delay = restart_delay


class Supervisor:
    """Start named child processes, keep them running and stop them together."""

    def __init__(
        self,
        *,
        stop_timeout: float = 10.0,
        restart_delay: float = 1.0,
        max_restart_delay: float = 30.0,
    ) -> None:
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self._children: dict[str, _Child] = {}
        self._stop_requested = False
        self._kill_requested = False

    def add(self, name: str, argv: Sequence[str], *, log_path: Path | None = None, stop_rank: int = 0) -> None:
        """Register a child: started by `run`, or at once when added from `on_tick` while running."""
        if name in self._children:
            raise ValueError(f"a child named {name!r} is already registered")
        if not argv:
            raise ValueError(f"child {name!r} needs a command line")
        self._children[name] = _Child(name, list(argv), log_path, stop_rank, self.restart_delay)

    def pids(self) -> dict[str, int]:
        """Return the process id of every running child by name."""
        return {
            child.name: child.process.pid
            for child in self._children.values()
            if child.process is not None and child.process.returncode is None
        }

    def run(self, on_tick: Callable[[], float | None] | None = None) -> int:
        """Start every child, supervise them until SIGINT or SIGTERM, then stop them all.

        `on_tick` is called once the children are started and then again after as many
        seconds as it returns, until it returns None.
        """
        if not self._children:
            raise ValueError("no children to supervise")
        wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_read, False)
        os.set_blocking(wakeup_write, False)
        previous_wakeup_fd = signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
        previous_handlers = {
            signum: signal.signal(signum, handler)
            for signum, handler in [
                (signal.SIGINT, self._on_stop_signal),
                (signal.SIGTERM, self._on_stop_signal),
                (signal.SIGCHLD, _ignore_signal),
            ]
        }
        try:
            for child in self._children.values():
                self._start(child)
            self._supervise(wakeup_read, on_tick)
            self._stop_all(wakeup_read)
        finally:
            self._kill_remaining()
            signal.set_wakeup_fd(previous_wakeup_fd)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            os.close(wakeup_read)
            os.close(wakeup_write)
        logger.info("all children stopped")
        return 0

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_requested and signum == signal.SIGINT:
            self._kill_requested = True
        self._stop_requested = True

    def _start(self, child: _Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        output = None
        if child.log_path is not None:
            child.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(child.log_path, "ab")
        try:
            child.process = subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                process_group=0,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        finally:
            if output is not None:
                output.close()
        logger.info(
            "started %s", child.name, extra={"child": child.name, "child_pid": child.process.pid}
        )

    def _supervise(self, wakeup_read: int, on_tick: Callable[[], float | None] | None) -> None:
        next_tick = time.monotonic() if on_tick is not None else None
        while not self._stop_requested:
            now = time.monotonic()
            if next_tick is not None and now >= next_tick:
                delay = on_tick()
                next_tick = None if delay is None else time.monotonic() + delay
                now = time.monotonic()
            for child in list(self._children.values()):
                if child.process is None and child.restart_at is None:  # added by on_tick
                    self._start(child)
                elif child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                elif child.process is not None and child.process.poll() is not None:
                    self._schedule_restart(child, child.process, now)
            deadlines = [
                child.restart_at
                for child in self._children.values()
                if child.restart_at is not None
            ]
            if next_tick is not None:
                deadlines.append(next_tick)
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            _wait_for_wakeup(wakeup_read, timeout)

    def _schedule_restart(
        self, child: _Child, process: subprocess.Popen[bytes], now: float
    ) -> None:
        returncode = process.returncode
        uptime = now - child.started_at
        if uptime >= self.max_restart_delay:
            child.restart_delay = self.restart_delay
        delay = child.restart_delay
        child.restart_delay = min(child.restart_delay * 2, self.max_restart_delay)
        child.restart_at = now + delay
        logger.error(
            "%s exited unexpectedly; restarting in %.1f s%s",
            child.name,
            delay,
            f" (its output: {child.log_path})" if child.log_path is not None else "",
            extra={
                "child": child.name,
                "child_pid": process.pid,
                "returncode": returncode,
                "uptime_seconds": round(uptime, 3),
                "restart_in_seconds": delay,
            },
        )

    def _stop_all(self, wakeup_read: int) -> None:
        for rank in sorted({child.stop_rank for child in self._children.values()}, reverse=True):
            running = [
                child.process
                for child in self._children.values()
                if child.stop_rank == rank and child.process is not None and child.process.poll() is None
            ]
            if not running:
                continue
            logger.info("stopping children", extra={"running": [process.pid for process in running]})
            for process in running:
                _send(process, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while not self._kill_requested:
                running = [process for process in running if process.poll() is None]
                remaining = deadline - time.monotonic()
                if not running or remaining <= 0:
                    break
                _wait_for_wakeup(wakeup_read, remaining)

    def _kill_remaining(self) -> None:
        for child in self._children.values():
            process = child.process
            if process is None or process.poll() is not None:
                continue
            logger.warning(
                "%s did not stop in time; killing it",
                child.name,
                extra={"child": child.name, "child_pid": process.pid},
            )
            _send(process, signal.SIGKILL)
            process.wait()


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Do nothing: the handler exists only so that SIGCHLD reaches the wake-up pipe."""


def _wait_for_wakeup(wakeup_read: int, timeout: float | None) -> None:
    readable, _, _ = select.select([wakeup_read], [], [], timeout)
    if readable:
        try:
            while os.read(wakeup_read, 512):
                pass
        except BlockingIOError:
            pass


def _send(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """Return a pre-exec hook that makes the child get SIGTERM when the parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc: Any = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook
