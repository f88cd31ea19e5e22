"""The playbook's Prometheus files: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), each alert links an existing playbook entry, and the rules, the Grafana
dashboard and the observability pack's PromQL use only metrics `/metrics` exposes."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.env import with_env
from tests.support.playbook import heading_anchors
from tests.support.prometheus import METRICS_TOKEN, PLAYBOOK, promtool, sample_names

ALERTS = PLAYBOOK / "alerts.yml"
DASHBOARD = PLAYBOOK / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bmailadmin_[a-z_]+[a-z]\b")


@pytest.fixture
def exposed(engine_env, app) -> set[str]:
    """Every sample name a scrape of an empty install exposes."""
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    return sample_names(response.get_data(as_text=True))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_alert_rules_pass_promtool_check_rules():
    checked = promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alert_rules_pass_their_promtool_unit_tests():
    tested = promtool("test", "rules", str(PLAYBOOK / "alerts_test.yml"))

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_links_an_entry_of_the_on_call_playbook():
    text = ALERTS.read_text(encoding="utf-8")
    alerts = re.findall(r"- alert: (\w+)", text)
    links = re.findall(r"runbook_url: playbook/ONCALL\.md#(\S+)", text)

    assert len(alerts) == len(links) >= 15
    assert set(links) <= heading_anchors(PLAYBOOK / "ONCALL.md")


@with_env(MAILER_METRICS_TOKEN=METRICS_TOKEN)
def test_the_rules_dashboard_and_pack_use_only_metrics_the_endpoint_exposes(exposed):
    observability = (PLAYBOOK / "OBSERVABILITY.md").read_text(encoding="utf-8")
    promql = "\n".join(re.findall(r"```promql\n(.*?)```", observability, re.S))
    used = {
        "alerts.yml": set(METRIC_NAME.findall(ALERTS.read_text(encoding="utf-8"))),
        "grafana-dashboard.json": set(METRIC_NAME.findall("\n".join(dashboard_expressions()))),
        "OBSERVABILITY.md": set(METRIC_NAME.findall(promql)),
    }

    assert {where: names - exposed for where, names in used.items()} == {where: set() for where in used}
    assert all(used.values())
    dashboard_titles = {panel["title"] for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]}
    for wanted in ("Sends per minute", "Failures per minute by class", "Deferrals by reason (per hour)",
                   "Quota: used and limit in the rolling hour", "RQ queue depth", "Workers and scheduler",
                   "Bounces and complaints (per hour)"):
        assert wanted in dashboard_titles
