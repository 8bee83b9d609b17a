"""Fixtures shared by every test: free ports, a data directory, polling with a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate!r}")
        time.sleep(interval)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Give the test a function that returns a currently unused loopback TCP port."""
    return _free_port


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """Give the test an empty zmx data directory of its own."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return data_dir


@pytest.fixture
def wait_until() -> Callable[..., object]:
    """Give the test `wait_until(predicate, timeout=10.0, what="...")`, a deadline poll."""
    return _wait_until


@pytest.fixture
def repo_root() -> Path:
    """Give the test the repository's root directory (for starting `python -m ...`)."""
    return REPO_ROOT
