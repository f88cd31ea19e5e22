"""Prometheus in the tests: the Debian package's `prometheus` and `promtool`, the metrics token the
tests use, and a scrape parsed into samples."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.parse
import urllib.request
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


class PrometheusServer:
    """A real Prometheus (Debian's) scraping `target` every second with the metrics token, with the
    playbook's alert rules loaded; its own config and data directory under `workdir`, a free port."""

    def __init__(self, target: str, workdir: Path) -> None:
        require(PROMETHEUS)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{PLAYBOOK / 'alerts.yml'}]\n"
            "scrape_configs:\n"
            "  - job_name: mailadmin\n"
            "    metrics_path: /metrics\n"
            f"    authorization: {{type: Bearer, credentials: {METRICS_TOKEN}}}\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n",
            encoding="utf-8",
        )
        self.command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}"]
        self.process = None

    def api(self, path: str, **params: str) -> dict:
        """One Prometheus HTTP API call's `data` (AssertionError when it says it failed)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def scalar(self, promql: str) -> float | None:
        """The single value of an instant query, None when it returns nothing."""
        result = self.api("query", query=promql)["result"]
        return float(result[0]["value"][1]) if result else None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
