"""The suite's one polling helper: wait on a condition with a deadline, never sleep-and-hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll `condition` until it returns something truthy and return that; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message or condition}")
        time.sleep(interval)
