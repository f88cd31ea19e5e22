"""A list's public subscription form, its confirmation link, and the owner's page to publish it.

Public (no login): `GET /subscribe/<public_id>` the hosted form; `POST /subscribe/<public_id>` a
sign-up — from the hosted form or from the embeddable snippet on another site, so it is
CSRF-exempt and guarded instead by a honeypot, a signed fill-time stamp (`form_guard`) and rate
limits per client address and per list (`limits.form_throttle`, fail-closed). The answer is the
same whether or not the address is known. `GET /subscribe/confirm/<token>` shows a button that
POSTs to the same URL to confirm: mail scanners fetch every link in a message, and a GET that
confirmed would subscribe people who never clicked.

Owner (login): `/subscribe/lists/<list_id>` publishes or withdraws the form and shows the snippet.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from loguru import logger
from sqlalchemy.exc import IntegrityError

from mailadmin.auth.decorators import login_required
from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.i18n import current_language
from mailadmin.limits.form_throttle import FORM_THROTTLED_MESSAGE, check_subscribe_allowed
from mailadmin.limits.throttle import THROTTLE_BACKEND_UNAVAILABLE, UNAVAILABLE_MESSAGE
from mailadmin.mail.confirmation import CONFIRMATION_TOKEN_MAX_AGE, BadConfirmationToken, ExpiredConfirmationToken
from mailadmin.models import MailingList
from mailadmin.services.audiences import subscriptions
from mailadmin.services.audiences.bounds import FORM_FIELD_MAX as FIELD_MAX
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.errors import ErrorKind
from mailadmin.subscribe.form_guard import (
    HONEYPOT_FIELD,
    STAMP_FIELD,
    StampVerdict,
    check_form_stamp,
    make_form_stamp,
)

bp = Blueprint("subscribe", __name__, url_prefix="/subscribe")


def _public_list(public_id: str) -> MailingList:
    mailing_list = subscriptions.published_form_list(public_id)
    if mailing_list is None:
        abort(404)
    return mailing_list


def _form(mailing_list: MailingList, status: int = 200, *, message: str | None = None, email: str = "",
          name: str = ""):
    stamp = make_form_stamp(get_settings().secret_key, mailing_list.public_id)
    return render_template("subscribe/form.html", mailing_list=mailing_list, stamp=stamp, message=message,
                           email=email, name=name, honeypot=HONEYPOT_FIELD, stamp_field=STAMP_FIELD), status


def _thanks(mailing_list: MailingList):
    # The same page for a new, a known and a dropped (bot) address: it depends on the list alone.
    return render_template("subscribe/thanks.html", mailing_list=mailing_list,
                           double=mailing_list.opt_in == "double")


@bp.get("/<public_id>")
def form(public_id: str):
    """The hosted subscription form of a published list."""
    return _form(_public_list(public_id))


def _refusal(mailing_list: MailingList, email: str, name: str):
    """The page for a submission the guards refuse, or None when it may go ahead (then it is counted)."""
    secret = get_settings().secret_key
    verdict = check_form_stamp(secret, mailing_list.public_id, request.form.get(STAMP_FIELD))
    if verdict is StampVerdict.MISSING:
        return _form(mailing_list, message=gettext("Please check your address and press Subscribe."), email=email, name=name)
    if verdict is not StampVerdict.OK:
        logger.bind(list_id=mailing_list.id, verdict=verdict.value).info("Subscription form refused")
        return _form(mailing_list, 400, message=gettext("That was quicker than we expected. Please press Subscribe again."),
                     email=email, name=name)
    throttled = check_subscribe_allowed(get_redis(), request.remote_addr, mailing_list.id)
    if throttled.is_throttled:
        if throttled.reason == THROTTLE_BACKEND_UNAVAILABLE:
            return render_template("subscribe/refused.html", message=gettext(UNAVAILABLE_MESSAGE)), 503
        return render_template("subscribe/refused.html", message=gettext(FORM_THROTTLED_MESSAGE)), 429
    return None


@bp.post("/<public_id>")
def sign_up(public_id: str):
    """A sign-up (CSRF-exempt: the snippet posts from other sites); see the module docstring for the guards."""
    mailing_list = _public_list(public_id)
    email = request.form.get("email", "")[:FIELD_MAX].strip()
    name = request.form.get("name", "")[:FIELD_MAX].strip()
    if request.form.get(HONEYPOT_FIELD):
        logger.bind(list_id=mailing_list.id, verdict="honeypot").info("Subscription form refused")
        return _thanks(mailing_list)
    refusal = _refusal(mailing_list, email, name)
    if refusal is not None:
        return refusal
    try:
        subscriptions.subscribe_from_form(mailing_list.id, email, name, current_language())
    except IntegrityError:
        # The same new address signed up twice at the same moment: the other request recorded it.
        logger.bind(list_id=mailing_list.id).info("Subscription form signed twice at once")
    except AudienceError as exc:
        if exc.kind is ErrorKind.NOT_FOUND:
            abort(404)
        return _form(mailing_list, 400, message=gettext("That is not an email address we can send to: %(why)s", why=exc.message),
                     email=email, name=name)
    return _thanks(mailing_list)


def _confirmation_error(exc: Exception):
    if isinstance(exc, ExpiredConfirmationToken):
        return render_template("subscribe/link_problem.html", expired=True, days=CONFIRMATION_TOKEN_MAX_AGE.days), 410
    return render_template("subscribe/link_problem.html", expired=False), 404


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """GET: a button to confirm (scanners fetch links); POST: confirm the membership (twice is harmless)."""
    if request.method == "GET":
        try:
            subscriptions.read_confirmation(token)
        except BadConfirmationToken as exc:
            return _confirmation_error(exc)
        return render_template("subscribe/confirm.html", token=token)
    try:
        result = subscriptions.confirm_subscription(token)
    except BadConfirmationToken as exc:
        return _confirmation_error(exc)
    except AudienceError:
        return _confirmation_error(BadConfirmationToken())
    return render_template("subscribe/confirmed.html", result=result)


# --- the list owner's page: publish the form, copy the snippet ------------------------------------


def _own_list_or_404(list_id: int) -> MailingList:
    """The list when the user may edit it (its owner, or an admin); another's list answers 404."""
    mailing_list = db.session.get(MailingList, list_id)
    if mailing_list is None or not (current_user.is_admin or mailing_list.owner_id == current_user.id):
        abort(404)
    return mailing_list


@bp.route("/lists/<int:list_id>", methods=["GET", "POST"])
@login_required
def publish(list_id: int):
    """The list's form: publish or withdraw it (POST, CSRF-checked), its address and the snippet to embed."""
    mailing_list = _own_list_or_404(list_id)
    if request.method == "POST":
        published = request.form.get("published") == "1"
        subscriptions.set_form_published(list_id, published, current_user)
        flash(gettext("The form is published.") if published else gettext("The form is withdrawn: its address answers 404."), "success")
        return redirect(url_for("subscribe.publish", list_id=list_id), code=303)
    form_url = f"{get_settings().public_url}/subscribe/{mailing_list.public_id}" if mailing_list.public_id else None
    snippet = render_template("subscribe/snippet.html", mailing_list=mailing_list, form_url=form_url,
                              honeypot=HONEYPOT_FIELD) if form_url else None
    return render_template("subscribe/publish.html", mailing_list=mailing_list, form_url=form_url, snippet=snippet)
