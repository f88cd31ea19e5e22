"""The events-out admin pages: endpoints created and edited by admins only, the secret shown once,
rotation, recent deliveries, re-send and test-send; every form carries and needs its CSRF token."""

from __future__ import annotations

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models.events import EventDelivery, EventEndpoint, OutboxEvent
from tests.support.forms import path_for, post_form
from tests.support.receiver import EventReceiver

URL = "http://127.0.0.1:9/hooks"


def create(admin_client, url=URL, types=("recipient.bounced", "campaign.finished"), **kwargs):
    return post_form(admin_client, path_for("admin.create_event_endpoint"),
                     {"url": url, "description": "CRM", "event_types": list(types), "active": "y"}, **kwargs)


def test_an_admin_creates_an_endpoint_and_sees_its_secret_once(app, admin_client):
    page = create(admin_client)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    endpoint = db.session.scalar(select(EventEndpoint))
    assert endpoint.secret in page.get_data(as_text=True) and endpoint.secret.startswith("whsec_")
    assert endpoint.event_types == ["recipient.bounced", "campaign.finished"]
    listing = admin_client.get(path_for("admin.event_endpoints")).get_data(as_text=True)
    detail = admin_client.get(path_for("admin.event_endpoint", endpoint_id=endpoint.id)).get_data(as_text=True)
    assert URL in listing and endpoint.secret not in listing and endpoint.secret not in detail


def test_an_unusable_url_is_refused_with_the_reason(app, admin_client):
    page = create(admin_client, url="ftp://example.com/x")
    assert "must start with https:// or http://" in page.get_data(as_text=True)
    assert db.session.scalar(select(EventEndpoint)) is None


def test_managers_may_not_see_or_change_endpoints(app, manager_client):
    assert manager_client.get(path_for("admin.event_endpoints")).status_code == 403
    assert manager_client.get(path_for("admin.create_event_endpoint")).status_code == 403


def test_a_form_without_its_csrf_token_is_refused(app, admin_client):
    app.config["WTF_CSRF_ENABLED"] = True
    response = admin_client.post(path_for("admin.create_event_endpoint"),
                                 data={"url": URL, "event_types": ["recipient.bounced"]})
    assert response.status_code == 400
    assert db.session.scalar(select(EventEndpoint)) is None


def test_rotation_shows_a_new_secret_once_and_keeps_the_old_one_signing(app, admin_client):
    create(admin_client)
    endpoint = db.session.scalar(select(EventEndpoint))
    old = endpoint.secret
    page_url = path_for("admin.event_endpoint", endpoint_id=endpoint.id)
    page = post_form(admin_client, path_for("admin.rotate_event_secret", endpoint_id=endpoint.id), page_url=page_url)
    db.session.expire_all()
    endpoint = db.session.get(EventEndpoint, endpoint.id)
    assert endpoint.secret != old and endpoint.previous_secret == old
    assert endpoint.secret in page.get_data(as_text=True)


def test_test_send_delivers_a_sample_and_the_delivery_shows_with_its_response(app, admin_client, app_env):
    receiver = EventReceiver().start()
    try:
        page = create(admin_client, url=receiver.url)
        endpoint = db.session.scalar(select(EventEndpoint))
        receiver.secret = endpoint.secret
        page_url = path_for("admin.event_endpoint", endpoint_id=endpoint.id)
        post_form(admin_client, path_for("admin.test_event_endpoint", endpoint_id=endpoint.id), page_url=page_url)
        from mailadmin.jobs.events import deliver_due_events

        assert deliver_due_events() == 1
        assert receiver.types() == ["endpoint.test"] and receiver.bad_signatures == 0
        page = admin_client.get(page_url).get_data(as_text=True)
        assert "endpoint.test" in page and "HTTP 204" in page and 'data-status="delivered"' in page
        delivery = db.session.scalar(select(EventDelivery))
        post_form(admin_client, path_for("admin.resend_event_delivery", delivery_id=delivery.id), page_url=page_url)
        assert deliver_due_events() == 1
        assert len(receiver.received) == 2 and len(receiver.events) == 1  # the same webhook-id: deduplicated
        assert db.session.scalar(select(OutboxEvent.type)) == "endpoint.test"
    finally:
        receiver.stop()


def test_enabling_a_disabled_endpoint_clears_why_it_was_disabled(app, admin_client):
    create(admin_client)
    endpoint = db.session.scalar(select(EventEndpoint))
    db.session.execute(EventEndpoint.__table__.update().values(active=False, disabled_reason="Disabled automatically"))
    db.session.commit()
    page_url = path_for("admin.event_endpoint", endpoint_id=endpoint.id)
    assert "Disabled automatically" in admin_client.get(page_url).get_data(as_text=True)
    post_form(admin_client, page_url, {"url": URL, "event_types": ["recipient.bounced"], "active": "y"})
    db.session.expire_all()
    endpoint = db.session.get(EventEndpoint, endpoint.id)
    assert endpoint.active and endpoint.disabled_reason is None and endpoint.event_types == ["recipient.bounced"]


def test_the_events_pages_answer_in_russian_when_the_browser_asks_for_it(app, admin_client):
    russian = {"Accept-Language": "ru-RU,ru;q=0.9"}
    refused = create(admin_client, url="ftp://example.com/x", headers=russian).get_data(as_text=True)
    assert "URL должен начинаться с https:// или http://." in refused and "<h1>Новый эндпоинт</h1>" in refused
    secret_page = create(admin_client, headers=russian).get_data(as_text=True)
    assert "<h1>Эндпоинт создан</h1>" in secret_page and "показывается только один раз" in secret_page
    listing = admin_client.get(path_for("admin.event_endpoints"), headers=russian).get_data(as_text=True)
    assert "<h1>Исходящие события</h1>" in listing and "Новый эндпоинт" in listing and URL in listing
    assert "recipient.bounced, campaign.finished" in listing  # event types are names, never translated
    assert "<h1>Events out</h1>" in admin_client.get(path_for("admin.event_endpoints")).get_data(as_text=True)
