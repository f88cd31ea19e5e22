"""The lists page (counts by status, growth), a new list, a list's settings and its deletion."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from mailadmin.audiences.blueprint import bp
from mailadmin.audiences.forms import ConfirmForm, ListForm
from mailadmin.audiences.refusals import or_refused, refused_form
from mailadmin.auth.decorators import login_required
from mailadmin.services.audiences import lists
from mailadmin.services.audiences.access import ListAccess, get_list_for
from mailadmin.services.audiences.bounds import GROWTH_DAYS
from mailadmin.services.audiences.memberships import AudienceError


@bp.get("/")
@login_required
def index():
    """Audiences start at the lists."""
    return redirect(url_for("audiences.lists_page"))


@bp.get("/lists")
@login_required
def lists_page():
    """Every list the viewer may see, with its members by status and its growth."""
    return render_template("audiences/lists.html", summaries=lists.list_summaries(current_user),
                           growth_days=GROWTH_DAYS)


@bp.route("/lists/new", methods=["GET", "POST"])
@login_required
def new_list():
    """Create a list owned by the viewer."""
    form = ListForm()
    if form.validate_on_submit():
        try:
            created = lists.create_list(current_user, form.name.data, form.description.data, form.opt_in.data,
                                        shared=form.shared.data)
        except AudienceError as exc:
            flash(exc.message, "error")
        else:
            flash(gettext("List %(name)s created.", name=created.name), "success")
            return redirect(url_for("audiences.list_page", list_id=created.id), 303)
    return render_template("audiences/list_form.html", form=form, mailing_list=None), 400 if form.errors else 200


@bp.route("/lists/<int:list_id>/edit", methods=["GET", "POST"])
@login_required
def edit_list(list_id: int):
    """Change a list's name, description, opt-in (an admin: its shared switch)."""
    mailing_list = or_refused(get_list_for, current_user, list_id, ListAccess.EDIT)
    form = ListForm(obj=mailing_list)
    if form.validate_on_submit():
        try:
            lists.update_list(current_user, list_id, form.name.data, form.description.data, form.opt_in.data,
                              shared=form.shared.data if current_user.is_admin else None)
        except AudienceError as exc:
            flash(exc.message, "error")
        else:
            flash(gettext("List saved."), "success")
            return redirect(url_for("audiences.list_page", list_id=list_id), 303)
    return render_template("audiences/list_form.html", form=form, mailing_list=mailing_list)


@bp.post("/lists/<int:list_id>/delete")
@login_required
def delete_list(list_id: int):
    """Delete a list and its memberships (the contacts stay)."""
    back = url_for("audiences.list_page", list_id=list_id)
    if not ConfirmForm().validate_on_submit():
        return redirect(back, 303)
    try:
        name = lists.delete_list(current_user, list_id)
    except AudienceError as exc:
        return refused_form(exc, back)
    flash(gettext("List %(name)s deleted; its contacts are kept.", name=name), "success")
    return redirect(url_for("audiences.lists_page"), 303)


def page_number() -> int:
    """The ?page= of a paged view (1 when missing or not a number)."""
    return request.args.get("page", 1, type=int) or 1
