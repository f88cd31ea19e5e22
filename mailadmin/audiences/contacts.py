"""Contacts: a search (address, name, attribute key=value) and a contact's page."""

from __future__ import annotations

from flask import render_template, request
from flask_login import current_user

from mailadmin.audiences.blueprint import bp
from mailadmin.audiences.forms import MemberStatusForm
from mailadmin.audiences.lists import page_number
from mailadmin.audiences.refusals import or_refused
from mailadmin.auth.decorators import login_required
from mailadmin.services.audiences.access import ListAccess, may
from mailadmin.services.audiences.contacts import contact_page, search_contacts


@bp.get("/contacts")
@login_required
def contacts_page():
    """The contacts the viewer may see, searched."""
    search, page = request.args.get("q", ""), page_number()
    contacts, more = search_contacts(current_user, search, page)
    return render_template("audiences/contacts.html", contacts=contacts, more=more, page=page, search=search)


@bp.get("/contacts/<int:contact_id>")
@login_required
def contact(contact_id: int):
    """One contact: attributes, memberships with their history, campaigns sent, bounces, suppression."""
    details = or_refused(contact_page, current_user, contact_id)
    editable = {view.mailing_list.id for view in details.memberships
                if may(current_user, view.mailing_list, ListAccess.EDIT)}
    return render_template("audiences/contact.html", page=details, editable=editable,
                           status_form=MemberStatusForm())
