"""Segment pages: the list of a manager's segments, the form-built editor with its live count and sample,
save and delete. Another manager's segment answers 404; a refused filter is shown with the message
that names its condition (400), never a 500.

The editor works without JavaScript (every button submits the form and the page answers with the
rows, the count and the sample); static/segment-editor.js adds rows in place and asks
`segments.preview` for the count whenever a field changes.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.audiences.segment_form import (
    GROUPS,
    OPERATIONS,
    TYPES,
    Row,
    filter_from_form,
    rows_of,
    with_blank_row,
)
from mailadmin.auth.decorators import login_required
from mailadmin.extensions import db
from mailadmin.models.audience import Segment
from mailadmin.services.audiences import segments as service
from mailadmin.services.errors import ErrorKind, ServiceError

bp_segments = Blueprint("segments", __name__, url_prefix="/audiences/segments")
EMPTY_FILTER = {"match": "all", "conditions": [{"field": "attribute", "op": "eq", "name": "", "value": ""}]}


def init_app(app: Flask) -> None:
    """Register the segment pages."""
    app.register_blueprint(bp_segments)


def _segment_or_404(segment_id: int) -> Segment:
    try:
        return service.get_segment_for(current_user, segment_id)
    except ServiceError as error:
        if error.kind == ErrorKind.NOT_FOUND:
            abort(404)
        raise


@bp_segments.route("")
@login_required
def index():
    """The segments the user may see."""
    segments = list(db.session.scalars(service.visible_segments(current_user)))
    return render_template("audiences/segments.html", segments=segments)


@bp_segments.route("/new", methods=["GET", "POST"])
@login_required
def new():
    """A new segment in the editor."""
    return _editor(None)


@bp_segments.route("/<int:segment_id>", methods=["GET", "POST"])
@login_required
def edit(segment_id: int):
    """A saved segment in the editor."""
    return _editor(_segment_or_404(segment_id))


def _removed_row() -> int | None:
    action = request.form.get("action", "")
    return int(action[len("remove-"):]) if action.startswith("remove-") and action[7:].isdigit() else None


def _editor(segment: Segment | None):
    """GET shows the segment; POST applies the pressed button: add a row or a group, remove a row,
    update the count, or save."""
    name = segment.name if segment else ""
    filter_json = segment.filter if segment else EMPTY_FILTER
    status = 200
    if request.method == "POST":
        action = request.form.get("action", "preview")
        name = request.form.get("name", "")
        filter_json = filter_from_form(request.form, drop=_removed_row())
        if action == "save":
            try:
                saved = service.save_segment(current_user, name, filter_json, segment.id if segment else None)
            except ServiceError as error:
                flash(gettext("The segment was not saved. %(why)s", why=error.message), "error")
                status = 400
            else:
                flash(gettext("Segment “%(name)s” saved.", name=saved.name), "success")
                return redirect(url_for("segments.edit", segment_id=saved.id), 303)
    preview, problem = _preview(filter_json)  # the blank row a button adds below is no condition yet
    if request.form.get("action") in ("add", "add-group"):
        filter_json = with_blank_row(filter_json, new_group=request.form["action"] == "add-group")
    rows, matches = rows_of(filter_json)
    return render_template(
        "audiences/segment_form.html", segment=segment, name=name, match=filter_json.get("match", "all"),
        rows=rows, matches=matches, groups=GROUPS, operations=OPERATIONS, types=TYPES, preview=preview,
        problem=problem, blank_row=Row(number="__N__", label=gettext("New condition")), lists=list(db.session.scalars(service.usable_lists(current_user))),
    ), status


def _preview(filter_json: dict) -> tuple[service.SegmentPreview | None, str | None]:
    try:
        return service.preview(filter_json, current_user), None
    except ServiceError as error:
        return None, error.message


@bp_segments.route("/preview")
@login_required
def preview():
    """JSON for the editor: the live count and a sample of 10, or the refusal naming the condition (400)."""
    result, problem = _preview(filter_from_form(request.args))
    if result is None:
        return jsonify(error=problem), 400
    return jsonify(count=result.count, sample=[{"email": c.email, "name": c.name} for c in result.sample])


@bp_segments.route("/<int:segment_id>/delete", methods=["POST"])
@login_required
def delete(segment_id: int):
    """Delete a segment (the campaigns that target it lose that target)."""
    segment = _segment_or_404(segment_id)
    service.delete_segment(current_user, segment.id)
    flash(gettext("Segment “%(name)s” deleted.", name=segment.name), "success")
    return redirect(url_for("segments.index"), 303)
