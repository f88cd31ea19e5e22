"""Machine endpoints (webhooks, the API, /metrics, /healthz) answer errors as RFC 9457 problem
details, whatever the client accepts; pages answer people with an error page. One helper decides."""

from __future__ import annotations

import pytest

from mailadmin.errors.problems import is_machine_endpoint


@pytest.mark.parametrize(("path", "machine"), [
    ("/webhooks/ses", True), ("/webhooks", True), ("/api/v1/campaigns", True), ("/metrics", True),
    ("/healthz", True), ("/", False), ("/admin/suppressions/import", False), ("/campaigns/1/results.csv", False),
    ("/webhooksx", False), ("/apiary", False), ("/metrics-page", False),
])
def test_machine_endpoints_are_decided_by_their_path(app, path, machine):
    assert is_machine_endpoint(path) is machine


def test_an_unknown_machine_path_is_a_404_problem_even_for_a_browser(client):
    response = client.get("/api/v1/nothing", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404 and response.json["title"] == "Not Found"
    assert set(response.json) == {"type", "title", "status", "detail"}


def test_a_wrong_method_on_a_machine_endpoint_is_a_405_problem_with_allow(client):
    response = client.delete("/healthz")
    assert (response.status_code, response.mimetype) == (405, "application/problem+json")
    assert "GET" in response.headers["Allow"]


def test_a_page_still_answers_people_with_the_error_page(client):
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert (response.status_code, response.mimetype) == (404, "text/html")
