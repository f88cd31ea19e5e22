"""Events out for admins: endpoints (list, create, edit, enable), the secret shown once (at creation and
rotation), each endpoint's recent deliveries, a re-send of one delivery and a test-send of a sample."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.admin.event_forms import EndpointForm
from mailadmin.admin.forms import ActionForm
from mailadmin.admin.views import bp
from mailadmin.auth.decorators import admin_required
from mailadmin.extensions import db
from mailadmin.models.events import EventDelivery
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.events import endpoints as endpoint_service


def _fields(form: EndpointForm) -> endpoint_service.EndpointFields:
    return endpoint_service.EndpointFields(form.url.data or "", form.description.data or "",
                                           tuple(form.event_types.data or ()), bool(form.active.data))


def _secret_page(endpoint, secret: str, rotated: bool):
    response = make_response(render_template("admin/event_secret.html", endpoint=endpoint, secret=secret,
                                             rotated=rotated))
    response.headers["Cache-Control"] = "no-store"  # the secret is shown once and must not linger in a cache
    return response


def _endpoint_or_404(endpoint_id: int):
    try:
        return endpoint_service.get_endpoint(endpoint_id)
    except ServiceError:
        abort(404)


@bp.route("/events")
@admin_required
def event_endpoints():
    """Every endpoint: URL, events, state (and why it was disabled)."""
    return render_template("admin/event_endpoints.html", endpoints=endpoint_service.list_endpoints())


@bp.route("/events/new", methods=["GET", "POST"])
@admin_required
def create_event_endpoint():
    """A new endpoint; its secret is shown once, on the page that answers the creation."""
    form = EndpointForm()
    if form.validate_on_submit():
        try:
            endpoint, secret = endpoint_service.create_endpoint(_fields(form), current_user)
        except ServiceError as exc:
            form.url.errors = [exc.message]
        else:
            return _secret_page(endpoint, secret, rotated=False)
    return render_template("admin/event_endpoint_form.html", form=form, endpoint=None)


@bp.route("/events/<int:endpoint_id>", methods=["GET", "POST"])
@admin_required
def event_endpoint(endpoint_id: int):
    """One endpoint: edit it (enabling clears why it was disabled), its recent deliveries, the actions."""
    endpoint = _endpoint_or_404(endpoint_id)
    form = EndpointForm(obj=endpoint)
    if form.validate_on_submit():
        try:
            endpoint_service.update_endpoint(endpoint.id, _fields(form), current_user)
        except ServiceError as exc:
            form.url.errors = [exc.message]
        else:
            flash(gettext("Endpoint saved."), "success")
            return redirect(url_for("admin.event_endpoint", endpoint_id=endpoint.id), code=303)
    return render_template("admin/event_endpoint_form.html", form=form, endpoint=endpoint,
                           deliveries=endpoint_service.recent_deliveries(endpoint.id), action_form=ActionForm())


@bp.route("/events/<int:endpoint_id>/rotate", methods=["POST"])
@admin_required
def rotate_event_secret(endpoint_id: int):
    """A new secret, shown once; the previous one keeps signing during the overlap."""
    endpoint = _endpoint_or_404(endpoint_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    secret = endpoint_service.rotate_secret(endpoint.id, current_user)
    return _secret_page(endpoint, secret, rotated=True)


@bp.route("/events/<int:endpoint_id>/test", methods=["POST"])
@admin_required
def test_event_endpoint(endpoint_id: int):
    """Queue a sample `endpoint.test` event for this endpoint."""
    endpoint = _endpoint_or_404(endpoint_id)
    if ActionForm().validate_on_submit():
        endpoint_service.send_test_event(endpoint.id, current_user)
        flash(gettext("A test event is on its way; its delivery appears below."), "success")
    return redirect(url_for("admin.event_endpoint", endpoint_id=endpoint.id), code=303)


@bp.route("/events/deliveries/<int:delivery_id>/resend", methods=["POST"])
@admin_required
def resend_event_delivery(delivery_id: int):
    """Send one delivery's event again (same event id) as a new delivery."""
    delivery = db.session.get(EventDelivery, delivery_id) or abort(404)
    if ActionForm().validate_on_submit():
        try:
            endpoint_service.resend_delivery(delivery.id, current_user)
        except ServiceError as exc:
            abort(404 if exc.kind is ErrorKind.NOT_FOUND else 400)
        flash(gettext("Event %(event)s queued again.", event=delivery.event.public_id), "success")
    return redirect(url_for("admin.event_endpoint", endpoint_id=delivery.endpoint_id), code=303)
