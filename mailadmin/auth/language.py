"""The account page's language choice: a small form of its own (templates/auth/_language_form.html,
included by the account page) posting here. Stored on the user; empty follows the browser."""

from __future__ import annotations

from flask import Flask, flash, redirect, request, url_for
from flask_babel import gettext, refresh
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf

from mailadmin.auth.decorators import login_required
from mailadmin.auth.views import bp, safe_next_url
from mailadmin.i18n import LANGUAGE_NAMES, LANGUAGES
from mailadmin.services.languages import set_language

BROWSER = ""  # the choice "as my browser says": stored as NULL


class LanguageForm(FlaskForm):
    """One select: English, Russian, or whatever the browser asks for."""

    language = SelectField(
        _l("Language"),
        choices=[SelectChoice(BROWSER, _l("As my browser says")),
                 *(SelectChoice(code, LANGUAGE_NAMES[code]) for code in LANGUAGES)],
        validators=[AnyOf([BROWSER, *LANGUAGES])],
    )


def language_form() -> LanguageForm:
    """The form as the account page shows it: the user's current choice selected (a template global)."""
    form = LanguageForm(formdata=None)
    form.language.data = getattr(current_user, "language", None) or BROWSER
    return form


@bp.route("/account/language", methods=["POST"])
@login_required
def choose_language():
    """Store the choice, then back to the page the form was on, in the language just chosen."""
    form = LanguageForm()
    back = safe_next_url(request.form.get("next")) or url_for("auth.change_password")
    if not form.validate_on_submit():
        flash(gettext("Choose a language from the list."), "error")
        return redirect(back, code=303)
    changed = set_language(current_user, form.language.data or None)
    refresh()  # this request's language was picked before the choice: the flash speaks the new one
    flash(gettext("Language saved.") if changed else gettext("That was already your language; nothing changed."), "success")
    return redirect(back, code=303)


def init_app(app: Flask) -> None:
    """The account page's partial builds its form through this global (the account view stays as it is)."""
    app.add_template_global(language_form, "auth_language_form")
