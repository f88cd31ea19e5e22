"""Importing a CSV into a list: the upload form, the progress/result page (polled as JSON by
static/audience_import.js) and the rejected rows as CSV."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response, flash, jsonify, redirect, render_template, stream_with_context, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.audiences.blueprint import bp
from mailadmin.audiences.forms import ListImportForm
from mailadmin.audiences.refusals import or_refused, refused_page
from mailadmin.auth.decorators import login_required
from mailadmin.extensions import get_settings
from mailadmin.i18n import stored_message
from mailadmin.services.audiences import import_store
from mailadmin.services.audiences.access import ListAccess, get_list_for
from mailadmin.services.audiences.import_store import FileKind
from mailadmin.services.audiences.imports import begin_import, import_for
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.errors import ErrorKind


@bp.route("/lists/<int:list_id>/import", methods=["GET", "POST"])
@login_required
def import_into_list(list_id: int):
    """Upload a CSV; it is checked at once and imported by a background job."""
    mailing_list = or_refused(get_list_for, current_user, list_id, ListAccess.EDIT)
    form = ListImportForm()
    status = 200
    if form.validate_on_submit():
        upload = form.file.data
        if not upload or not upload.filename:
            flash(gettext("Choose a CSV file to import."), "error")
            status = 400
        else:
            try:
                record = begin_import(current_user, list_id, upload.stream, upload.filename, form.mode.data,
                                      form.status.data)
            except AudienceError as exc:
                flash(exc.message, "error")
                status = 400
            else:
                return redirect(url_for("audiences.import_page", import_id=record.id), 303)
    return render_template("audiences/import.html", form=form, mailing_list=mailing_list,
                           max_upload_mb=get_settings().max_upload_mb), status


@bp.get("/imports/<import_id>")
@login_required
def import_page(import_id: str):
    """An import's progress bar, then its result with the rejected rows by spreadsheet row."""
    record = or_refused(import_for, current_user, import_id)
    mailing_list = or_refused(get_list_for, current_user, record.list_id)
    return render_template("audiences/import_result.html", record=record, mailing_list=mailing_list)


@bp.get("/imports/<import_id>/progress.json")
@login_required
def import_progress(import_id: str):
    """Where the import stands, for the page's progress bar."""
    record = or_refused(import_for, current_user, import_id)
    data = asdict(record)
    data.pop("errors")
    data["message"] = stored_message(record.message)  # the job stores it to be read in any language
    return jsonify({**data, "percent": record.percent, "finished": record.finished})


@bp.get("/imports/<import_id>/rejected.csv")
@login_required
def rejected_rows(import_id: str):
    """The rejected rows with their row number and reason, to fix and import again."""
    record = or_refused(import_for, current_user, import_id)
    if not import_store.exists(record.id, FileKind.REJECTED):
        refused_page(AudienceError(gettext("This import has no rejected rows (yet)."), ErrorKind.NOT_FOUND))
    # Chunk by chunk from the database: the request's context (and its session) lives while it streams.
    return Response(stream_with_context(import_store.chunks(record.id, FileKind.REJECTED)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="import-{record.id[:8]}-rejected.csv"',
                             "Cache-Control": "no-store"})
