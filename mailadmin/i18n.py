"""Languages: which one a request is answered in, and the catalogue helpers every layer may use.

English and Russian (SPEC "Languages"). A logged-in user's stored choice (`users.language`) wins;
without one — and on the public pages, which nobody logs in to — the browser's `Accept-Language`
picks the best match; English when nothing matches or outside a request (jobs, the CLI).
The catalogues live in mailadmin/translations (messages.po; the compiled .mo is built at install
by `make translations`): without a compiled catalogue every page is in English, the msgids.
Log messages, event names, API error types and CLI output are interfaces and stay English.
"""

from __future__ import annotations

import json

from babel.numbers import format_decimal
from flask import Flask, has_request_context, request
from flask_babel import get_locale, get_translations, refresh
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from mailadmin.extensions import babel

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
# How each language names itself in the account page's choice.
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}
# Pages for the people on the lists, not for the app's users: they follow the browser even when the
# visitor happens to be logged in (SPEC "Languages"). Blueprints whole, or single endpoints.
PUBLIC_BLUEPRINTS = frozenset({"unsubscribe"})
PUBLIC_ENDPOINTS = frozenset({"subscribe.form", "subscribe.sign_up", "subscribe.confirm"})
# Programs' endpoints answer in English whatever the client's Accept-Language: their problem details
# are an interface (errors/problems.py's MACHINE_PATHS); the API's reference page is for people.
MACHINE_PATHS = ("/api", "/webhooks", "/metrics", "/healthz")
PEOPLES_ENDPOINTS_UNDER_MACHINE_PATHS = frozenset({"api_docs"})


def N_(message: str) -> str:
    """Mark a message for the catalogue without translating it now: a constant that is also an interface's
    English (an API problem's detail) is translated where a page shows it, with `gettext(CONSTANT)`."""
    return message


def select_locale() -> str:
    """The user's stored choice, else the browser's best match among LANGUAGES, else English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    if (any(request.path == prefix or request.path.startswith(prefix + "/") for prefix in MACHINE_PATHS)
            and request.endpoint not in PEOPLES_ENDPOINTS_UNDER_MACHINE_PATHS):
        return DEFAULT_LANGUAGE
    if request.blueprint in PUBLIC_BLUEPRINTS or request.endpoint in PUBLIC_ENDPOINTS:
        return _browser_language()
    try:
        stored = getattr(current_user, "language", None)
    except SQLAlchemyError:  # the database is down: the 503 page follows the browser
        stored = None
    return stored if stored in LANGUAGES else _browser_language()


def _browser_language() -> str:
    """The best match of the request's Accept-Language among LANGUAGES, else English."""
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def current_language() -> str:
    """"en" or "ru": the language of the current request (English outside one)."""
    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES else DEFAULT_LANGUAGE


def number(value: int | float) -> str:
    """A count as the viewer's language writes it: "1,204" in English, "1 204" in Russian."""
    return format_decimal(value, locale=get_locale() or DEFAULT_LANGUAGE)


def decimal1(value: float) -> str:
    """"2.5" in English, "2,5" in Russian: a rate with one decimal."""
    return format_decimal(value, format="0.0", locale=get_locale() or DEFAULT_LANGUAGE)


def count_of(count: int, singular: str, plural: str, **variables: object) -> str:
    """ngettext whose `%(num)s` is the count written for the locale (flask_babel's `ngettext` writes
    it bare): count_of(1204, "%(num)s recipient", "%(num)s recipients") == "1,204 recipients"; in
    Russian "1 получатель", "2 получателя", "5 получателей", "1 204 получателя". pybabel extracts it
    (the Makefile's `-k count_of:2,3`)."""
    return get_translations().ungettext(singular, plural, count) % {"num": number(count), **variables}


def stored_form(msgid: str, **params: str | int) -> str:
    """How a job stores a message that carries values (an import row's refusal, an endpoint's
    disabled_reason): `{"msgid": ..., "params": {...}}`, the English msgid (marked with N_) and its
    values, so a page shows it in the viewer's language (`stored_message`) and a file or a log in
    English (`stored_english`). Integers are written for the language at display time."""
    return json.dumps({"msgid": msgid, "params": params}, ensure_ascii=False)


def _parsed(text: str) -> tuple[str, dict] | None:
    """(msgid, params) of a `stored_form`, None for plain text (older rows, parameterless messages)."""
    if not text.startswith('{"msgid"'):
        return None
    try:
        data = json.loads(text)
        msgid, params = data["msgid"], data["params"]
    except (ValueError, KeyError, TypeError):
        return None
    return (msgid, params) if isinstance(msgid, str) and isinstance(params, dict) else None


def _filled(template: str, params: dict, write_number) -> str:
    values = {key: write_number(value) if isinstance(value, int) and not isinstance(value, bool) else value
              for key, value in params.items()}
    return template % values


def _english_number(value: int) -> str:
    return format_decimal(value, locale=DEFAULT_LANGUAGE)


def stored_english(text: str) -> str:
    """A stored message in English, whichever form it was stored in (for the CSV files and the API)."""
    parsed = _parsed(text) if text else None
    if parsed is None:
        return text
    try:
        return _filled(parsed[0], parsed[1], _english_number)
    except (KeyError, ValueError, TypeError):
        return parsed[0]


def stored_message(text: str) -> str:
    """A message stored by a job in the viewer's language: a `stored_form` translated then filled in; plain
    English text translated when it is exactly a catalogue msgid, else as it is — plain text is never
    %-formatted (it may hold an address with a "%")."""
    if not text:
        return text
    parsed = _parsed(text)
    if parsed is None:
        return get_translations().ugettext(text)
    msgid, params = parsed
    try:
        return _filled(get_translations().ugettext(msgid), params, number)
    except (KeyError, ValueError, TypeError):  # a translation that does not fit the values: the English
        return stored_english(text)


def init_i18n(app: Flask) -> None:
    """Bind Flask-Babel (times stay in the viewer's zone: models/moments.py) and the template helpers."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    babel.init_app(app, locale_selector=select_locale)
    # Flask-Babel keeps the language it picked in `g`, which outlives a request when an app context is
    # shared (tests, a job rendering several mails): each request picks its own.
    app.before_request(refresh)
    app.add_template_global(current_language, "current_language")
    app.add_template_filter(number, "number")
    app.add_template_filter(decimal1, "decimal1")
    app.add_template_global(count_of, "count_of")
    app.add_template_global(stored_message, "stored_message")
