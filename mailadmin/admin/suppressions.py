"""The suppression list for admins: search, add, remove with a reason, CSV import/export, erase a person."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.admin.forms import (
    AddSuppressionsForm,
    ErasePersonForm,
    ExportPersonForm,
    ImportSuppressionsForm,
    RemoveSuppressionForm,
    SuppressionFilterForm,
)
from mailadmin.admin.views import bp
from mailadmin.auth.decorators import admin_required
from mailadmin.downloads import csv_download
from mailadmin.i18n import count_of, number
from mailadmin.models.suppression import SOURCE_ADMIN, SOURCE_IMPORT
from mailadmin.services import person_export, privacy
from mailadmin.services import suppressions as suppression_service
from mailadmin.services.csv_upload import decode_upload

T = TypeVar("T")


def _search(form: SuppressionFilterForm) -> suppression_service.SuppressionFilter:
    since = until = None
    if form.date_from.data and not form.date_from.errors:
        since = datetime.combine(form.date_from.data, time(), UTC)
    if form.date_to.data and not form.date_to.errors:
        until = datetime.combine(form.date_to.data + timedelta(days=1), time(), UTC)
    return suppression_service.SuppressionFilter(
        query=(form.q.data or "").strip(), reason=form.reason.data or "", source=form.source.data or "",
        since=since, until=until,
    )


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


@bp.route("/suppressions")
@admin_required
def suppressions():
    """Search the suppression list; forms to add, import, export, remove and erase."""
    form = SuppressionFilterForm(request.args)
    form.validate()
    page = _page_number()
    rows, total = suppression_service.search_suppressions(_search(form), page)
    filters = {key: value for key, value in request.args.items() if key != "page" and value}
    return render_template(
        "admin/suppressions.html", form=form, rows=rows, total=total, page=page, filters=filters,
        pages=max(1, -(-total // suppression_service.PAGE_SIZE)), add_form=AddSuppressionsForm(),
        import_form=ImportSuppressionsForm(), remove_form=RemoveSuppressionForm(), erase_form=ErasePersonForm(),
        export_person_form=ExportPersonForm(prefix="person"),
    )


def _report_rows(added: int, already: int, refused: list[str]) -> None:
    flash(count_of(added, "%(num)s address added to the suppression list, %(already)s already there.",
                   "%(num)s addresses added to the suppression list, %(already)s already there.",
                   already=number(already)), "success")
    if refused:
        more = gettext(" … and %(count)s more.", count=number(len(refused) - 10)) if len(refused) > 10 else ""
        shown = " ".join(refused[:10]) + more
        flash(count_of(len(refused), "%(num)s row refused. %(rows)s", "%(num)s rows refused. %(rows)s", rows=shown), "error")


def _back_with_errors(form):
    """Back to the list, each field's error flashed."""
    for field in form:
        for error in field.errors:
            flash(f"{field.label.text}: {error}", "error")
    return redirect(url_for("admin.suppressions"))


def _suppress_rows(form, text_of, source: str, *, one_reason: bool = False):
    """Suppress the addresses read from `text_of()` once the form is valid; rows without a valid
    reason get the form's."""
    if not form.validate_on_submit():
        return _back_with_errors(form)
    rows = suppression_service.read_address_rows(text_of(), form.reason.data)
    if one_reason:
        rows.addresses = [(address, form.reason.data) for address, _ in rows.addresses]
    added, already = suppression_service.add_address_rows(rows, form.note.data or "", current_user, source=source)
    _report_rows(added, already, rows.refused)
    return redirect(url_for("admin.suppressions"))


@bp.route("/suppressions/add", methods=["POST"])
@admin_required
def add_suppressions():
    """Add one or many pasted addresses, all with the form's reason."""
    form = AddSuppressionsForm()
    return _suppress_rows(form, lambda: form.addresses.data, SOURCE_ADMIN, one_reason=True)


@bp.route("/suppressions/import", methods=["POST"])
@admin_required
def import_suppressions():
    """Import a CSV (email[,reason])."""
    form = ImportSuppressionsForm()
    return _suppress_rows(form, lambda: decode_upload(form.file.data.read()), SOURCE_IMPORT)


@bp.route("/suppressions/export.csv")
@admin_required
def export_suppressions():
    """The matching entries as CSV, streamed (the filters are read now, the rows while it streams)."""
    form = SuppressionFilterForm(request.args)
    form.validate()
    return csv_download(suppression_service.export_rows(_search(form)), "suppressions.csv")


@bp.route("/suppressions/<int:suppression_id>/remove", methods=["POST"])
@admin_required
def remove_suppression(suppression_id: int):
    """Remove one entry; the reason goes to the audit log."""
    form = RemoveSuppressionForm()
    back = request.form.get("next") or url_for("admin.suppressions")
    if not back.startswith("/admin/suppressions"):
        back = url_for("admin.suppressions")
    if not form.validate_on_submit():
        flash(gettext("Say why the address may receive mail again."), "error")
        return redirect(back)
    try:
        suppression_service.remove_suppression(suppression_id, form.why.data, current_user)
    except suppression_service.SuppressionError as exc:
        flash(exc.message, "error")
        return redirect(back)
    flash(gettext("Removed from the suppression list. The reason is in the audit log."), "success")
    return redirect(back)


def _for_one_person(form: ErasePersonForm | ExportPersonForm, action: Callable[[str, Any], T]) -> tuple[T | None, Any]:
    """`action(address, current_user)` for the address a valid form names: (its result, None), or
    (None, the way back to the list with the form's errors or the service's refusal flashed)."""
    if not form.validate_on_submit():
        return None, _back_with_errors(form)
    try:
        return action(form.email.data, current_user), None
    except suppression_service.SuppressionError as exc:
        flash(exc.message, "error")
        return None, redirect(url_for("admin.suppressions"))


@bp.route("/suppressions/erase", methods=["POST"])
@admin_required
def erase_person():
    """Replace every stored copy of an address by its hash; it stays suppressed."""
    report, refused = _for_one_person(ErasePersonForm(), privacy.erase_person)
    if refused is not None:
        return refused
    flash(gettext(
        "Person erased: %(recipients)s, %(suppressions)s and %(events)s now hold only the address's hash; "
        "%(contacts)s and %(memberships)s with their history are deleted. It stays suppressed.",
        recipients=count_of(report.recipients, "%(num)s recipient row", "%(num)s recipient rows"),
        suppressions=count_of(report.suppressions, "%(num)s suppression entry", "%(num)s suppression entries"),
        events=count_of(report.audit_events, "%(num)s audit event", "%(num)s audit events"),
        contacts=count_of(report.contacts, "%(num)s contact", "%(num)s contacts"),
        memberships=count_of(report.memberships, "%(num)s list membership", "%(num)s list memberships"),
    ), "success")
    return redirect(url_for("admin.suppressions"))


@bp.route("/suppressions/person.json", methods=["POST"])
@admin_required
def export_person():
    """Everything stored about one address, as a JSON download (a POST: the address stays out of URLs and logs)."""
    document, refused = _for_one_person(ExportPersonForm(prefix="person"), person_export.export_person)
    if refused is not None:
        return refused
    body = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": 'attachment; filename="person.json"', "Cache-Control": "no-store"})
