"""Prometheus in the tests: the Debian package's `prometheus` and `promtool`, the metrics token the
tests use, and a scrape parsed into samples."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.system_packages import missing_system_package

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
METRICS_TOKEN = "metrics-token-" + "t" * 24
PLAYBOOK = Path(__file__).resolve().parents[2] / "playbook"


def require(binary: str) -> str:
    """The binary's path, or skip (fail in CI) naming Debian's `prometheus` package."""
    if not os.access(binary, os.X_OK):
        missing_system_package("prometheus", binary)
    return binary


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run promtool; the result keeps its output for the assertion message."""
    return subprocess.run([require(PROMTOOL), *args], input=stdin, capture_output=True, text=True, timeout=60)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, for every sample of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value in a scrape (KeyError when absent)."""
    return samples(text)[(name, tuple(sorted(labels.items())))]


def sample_names(text: str) -> set[str]:
    """Every sample name a scrape exposes (`_total`, `_bucket`, `_sum`, `_count` included)."""
    return {name for name, _labels in samples(text)}
