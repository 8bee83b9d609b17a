"""Wait for a condition with a deadline, the one polling helper every test uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "", interval: float = 0.01) -> Any:
    """Return the first truthy result of `predicate`; raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate!r}")
        time.sleep(interval)
