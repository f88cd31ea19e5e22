"""A list's page: its members (paged, searched), one member added, moved to another status or
removed (each change a history row), and the members' CSV export."""

from __future__ import annotations

import json

from flask import redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.audiences.blueprint import bp
from mailadmin.audiences.forms import AddMemberForm, ConfirmForm, MemberStatusForm
from mailadmin.audiences.lists import page_number
from mailadmin.audiences.refusals import back_with, or_refused, refused_form
from mailadmin.auth.decorators import login_required
from mailadmin.downloads import csv_download
from mailadmin.models.audience import ListMembership
from mailadmin.services.audiences import lists
from mailadmin.services.audiences.access import ListAccess, get_list_for, may
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.batches import read_in_batches


@bp.get("/lists/<int:list_id>")
@login_required
def list_page(list_id: int):
    """A list: its counts, its members (search by address, name or attribute key=value) and actions."""
    mailing_list = or_refused(get_list_for, current_user, list_id)
    search, status, page = request.args.get("q", ""), request.args.get("status", ""), page_number()
    rows, more = lists.members_page(list_id, search, status, page)
    summary = lists.list_summaries(current_user, list_id)[0]
    return render_template(
        "audiences/list.html", mailing_list=mailing_list, rows=rows, more=more, page=page, search=search,
        status=status, summary=summary, editable=may(current_user, mailing_list, ListAccess.EDIT),
        add_form=AddMemberForm(), status_form=MemberStatusForm(), confirm_form=ConfirmForm(),
    )


@bp.post("/lists/<int:list_id>/members")
@login_required
def add_member(list_id: int):
    """Put one address on the list."""
    back = url_for("audiences.list_page", list_id=list_id)
    form = AddMemberForm()
    if not form.validate_on_submit():
        return back_with(gettext("Give an email address (and at most 200 characters of name)."), back)
    try:
        contact, changed = lists.add_member(current_user, list_id, form.email.data, form.name.data, form.status.data)
    except AudienceError as exc:
        return refused_form(exc, back)
    return back_with(f"{contact.email} {'added' if changed else 'was already on the list'}.", back,
                     "success" if changed else "info")


@bp.post("/lists/<int:list_id>/members/<int:contact_id>/status")
@login_required
def change_member_status(list_id: int, contact_id: int):
    """Move one member to another status."""
    back = request.form.get("next") or url_for("audiences.list_page", list_id=list_id)
    if not back.startswith("/"):
        back = url_for("audiences.list_page", list_id=list_id)
    form = MemberStatusForm()
    if not form.validate_on_submit():
        return back_with(gettext("Choose subscribed, unconfirmed or unsubscribed."), back)
    try:
        changed = lists.change_member_status(current_user, list_id, contact_id, form.status.data)
    except AudienceError as exc:
        return refused_form(exc, back)
    return back_with(gettext("Status changed.") if changed else gettext("The status was already that."), back,
                     "success" if changed else "info")


@bp.post("/lists/<int:list_id>/members/<int:contact_id>/remove")
@login_required
def remove_member(list_id: int, contact_id: int):
    """Take one member off the list (it stays in the history as unsubscribed)."""
    back = url_for("audiences.list_page", list_id=list_id)
    if not ConfirmForm().validate_on_submit():
        return redirect(back, 303)
    try:
        lists.remove_member(current_user, list_id, contact_id)
    except AudienceError as exc:
        return refused_form(exc, back)
    return back_with(gettext("Removed from the list (recorded as unsubscribed)."), back, "success")


@bp.get("/lists/<int:list_id>/members.csv")
@login_required
def export_members(list_id: int):
    """Every member of the list as CSV, streamed batch by batch."""
    mailing_list = or_refused(get_list_for, current_user, list_id)
    rows = read_in_batches(lists.export_statement(list_id), ListMembership.id)
    return csv_download(_export_rows(rows), f"list-{mailing_list.id}-members.csv")


def _export_rows(rows):
    yield lists.EXPORT_HEADER
    for row in rows:
        _, email, name, status, attributes, joined, changed = row
        yield (email, name, status, json.dumps(attributes or {}, ensure_ascii=False, sort_keys=True),
               joined.isoformat(), changed.isoformat())
