"""Tests that need a system package (`make system-packages` installs them when it can): without it
they skip, naming the package — or fail where MAILADMIN_REQUIRE_SYSTEM_PACKAGES is set (CI), so a
missing package never passes unnoticed there."""

from __future__ import annotations

import os

import pytest


def missing_system_package(package: str, what: str) -> None:
    """Skip (or, in CI, fail) the running test: `what` is missing, apt package `package` provides it."""
    message = f"{what} is missing: apt-get install -y {package} (make test installs it when run as root)"
    if os.environ.get("MAILADMIN_REQUIRE_SYSTEM_PACKAGES"):
        pytest.fail(message)
    pytest.skip(message)
