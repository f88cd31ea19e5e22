"""The web process during outages: a page that needs the database answers a clear 503 (never a
500 traceback), /healthz names the part that is down, and the outage is logged once when it starts
and once when it ends."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from mailadmin.extensions import db
from mailadmin.queue.outages import Service, outage_tracker, set_process_name
from tests.support.log_capture import capture_json_logs


@pytest.fixture
def database_down(app, monkeypatch):
    """Every statement fails as if the database server had gone away."""

    def refuse(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    set_process_name("web")
    monkeypatch.setattr(db.session, "execute", refuse)
    monkeypatch.setattr(db.session, "scalar", refuse)
    monkeypatch.setattr(db.session, "get", refuse)
    yield
    set_process_name("app")


def test_a_page_during_a_database_outage_is_a_clear_503(make_user, auth, client, request):
    make_user()
    auth.login()
    request.getfixturevalue("database_down")

    page = client.get("/")

    assert page.status_code == 503
    assert "Service temporarily unavailable. Please try again later." in page.get_data(as_text=True)
    assert page.headers["Retry-After"]
    assert "Traceback" not in page.get_data(as_text=True)


def test_healthz_names_the_database_when_it_is_down(client, database_down):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["down"] == ["database"]


def test_healthz_names_redis_when_it_is_down(private_redis, client):
    private_redis.stop()

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["down"] == ["redis"]


def test_a_web_outage_is_logged_once_when_it_starts_and_once_when_it_ends(private_redis, app):
    set_process_name("web")
    with capture_json_logs(app) as capture:
        client = app.test_client()
        private_redis.stop()
        for _ in range(3):
            assert client.get("/healthz").status_code == 503
        private_redis.start()
        assert client.get("/healthz").status_code == 200
    set_process_name("app")

    starts = capture.events("Redis unavailable")
    ends = capture.events("Redis available again")
    assert len(starts) == 1 and starts[0]["process"] == "web"
    assert len(ends) == 1 and ends[0]["outage_seconds"] >= 0
    assert not outage_tracker(Service.REDIS).down
