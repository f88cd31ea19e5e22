"""Login and password forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length

from mailadmin.services.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from mailadmin.services.users import UserError


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    remember = BooleanField(_l("Keep me logged in"))


class ChangePasswordForm(FlaskForm):
    """The policy itself is checked by the users service, in its own words."""

    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )
    # InputRequired, not DataRequired: twelve spaces must reach the policy and get its own reason.
    new_password = PasswordField(
        _l("New password"),
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        description=_l("At least %(num)s characters, and not a common password.", num=MIN_PASSWORD_LENGTH),
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[InputRequired(), EqualTo("new_password", message=_l("The two new passwords differ."))],
    )


def submit_user_form(form: FlaskForm, action: Callable[[], Any]) -> tuple[bool, Any, str | None]:
    """(done, what `action` returned, refusal): `action` runs on a valid POST only.

    The users service's refusal (duplicate email, bad address, weak password) is its own words,
    shown on the page as they are.
    """
    if not form.validate_on_submit():
        return False, None, None
    try:
        return True, action(), None
    except UserError as exc:
        return False, None, str(exc)


def user_form_page(template: str, form: FlaskForm, problem: str | None):
    """The form again, with its problem; 400 after a refused POST."""
    return render_template(template, form=form, problem=problem), 400 if request.method == "POST" else 200
