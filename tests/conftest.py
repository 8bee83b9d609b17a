"""Fixtures shared by every test: free ports, a data directory, polling with a deadline."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.polling import poll_until

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    return poll_until


@pytest.fixture
def repo_root() -> Path:
    """Give the test the repository's root directory (for starting `python -m ...`)."""
    return REPO_ROOT
