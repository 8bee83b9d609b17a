"""Missing test dependencies: a skip on a developer's machine, a failure under CI.

CI (`CI=true`) must never pass by skipping what it is there to run (the PostgreSQL store,
the browser test), so there a missing dependency fails the test.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for `reason`, or fail it under CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)
