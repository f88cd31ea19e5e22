"""Per-test settings: environment overrides applied before the app (and its worker processes) are built."""

from __future__ import annotations

import pytest


def with_env(**overrides: str):
    """Mark a test to run with these environment overrides; the test lists the `engine_env` fixture first."""
    return pytest.mark.parametrize("engine_env", [overrides], indirect=True, ids=["env"])
