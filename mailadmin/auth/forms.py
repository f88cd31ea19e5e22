"""Login and password forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length

from mailadmin.services.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    remember = BooleanField("Keep me logged in")


class ChangePasswordForm(FlaskForm):
    """The policy itself is checked by the users service, in its own words."""

    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)]
    )
    # InputRequired, not DataRequired: twelve spaces must reach the policy and get its own reason.
    new_password = PasswordField(
        "New password",
        validators=[InputRequired(), Length(max=MAX_PASSWORD_LENGTH)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters, and not a common password.",
    )
    confirm = PasswordField(
        "New password again",
        validators=[InputRequired(), EqualTo("new_password", message="The two new passwords differ.")],
    )
