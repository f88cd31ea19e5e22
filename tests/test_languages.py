"""Languages (SPEC "Languages"): English and Russian through one catalogue.

- The pages in CATALOGUED hold no user-visible literal outside the catalogue (templates: text and
  visible attributes outside `_()`; Python: flashes, Markup sentences and form labels).
- The Russian catalogue is complete (`msgfmt --check --statistics`: 0 untranslated, 0 fuzzy) and
  holds every string the code marks (a fresh `pybabel extract` finds nothing new).
- Russian plurals: 1 получатель, 2 получателя, 5 получателей — on the pages and in flashes.
- The language: the user's stored choice, else Accept-Language; public pages follow the browser;
  without a compiled catalogue everything is English.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import nodes

from mailadmin import create_app
from mailadmin.extensions import babel, db
from mailadmin.i18n import count_of, select_locale
from mailadmin.models import User
from mailadmin.models.moments import format_moment
from mailadmin.settings import PROJECT_ROOT
from tests import factories
from tests.support.catalogue import TRANSLATIONS
from tests.support.forms import csrf_token_from
from tests.support.system_packages import missing_system_package
from tests.support.web import flashes, logged_in_client, new_client

PACKAGE = PROJECT_ROOT / "mailadmin"
RUSSIAN = TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po"

# What is through the catalogue, relative to mailadmin/: a file, or a folder ("x/": every file under it).
# Every template, and every module that flashes, labels a form field or writes a refusal a page shows.
CATALOGUED = (
    "templates/",
    "errors/handlers.py",
    "campaigns/",
    "admin/",
    "audiences/",
    "subscribe/",
    "unsubscribe/",
    "auth/",
    "services/test_email.py",
    "services/languages.py",
    "services/audiences/",
    "services/events/endpoints.py",
    "services/events/addresses.py",
)


def catalogued_files(suffix: str) -> list[Path]:
    found: set[Path] = set()
    for entry in CATALOGUED:
        path = PACKAGE / entry
        found.update(path.rglob(f"*{suffix}") if entry.endswith("/") else [path] if path.suffix == suffix else [])
    return sorted(found)


# --- the checker: no user-visible literal outside the catalogue ----------------------------------------

WORDS = re.compile(r"[^\W\d_]{2,}")
# Attributes a person reads or hears; other attributes (class, href, data-*) are code.
VISIBLE_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "data-label"}
# Jinja calls whose string arguments are catalogue entries (or the catalogue itself).
CATALOGUE_CALLS = {"_", "gettext", "ngettext", "count_of"}
# Text that is a name, not a word of the product's language.
NOT_WORDS = {"mailadmin", "UTC", "MAILER_SMTP_MAX_PER_HOUR", "global_pause", "rate_limit", "email", "name",
             "flask", "app", "wsgi", "doctor", "JSON", "CSV"}


class _VisibleText(HTMLParser):
    """Text nodes and visible attribute values of a template whose Jinja tags were blanked out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []  # (where, text): "" for a text node, "input[placeholder]"
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code"):
            self._skip += 1
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value:
                self.found.append((f"{tag}[{name}]", value))

    def handle_endtag(self, tag):
        if tag in ("script", "style", "code") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.found.append(("", data))


# A block that holds an element's id, not text: {% block article_id %}preferences{% endblock %}.
_ID_BLOCK = re.compile(r"({%-?\s*block \w+_id\s*-?%})[^{]*({%-?\s*endblock)")


def _literal_html(app, source: str) -> str:
    """The template's literal HTML (Jinja's `data` tokens), each tag, expression and comment a space."""
    source = _ID_BLOCK.sub(r"\1\2", source)
    return "".join(value if kind == "data" else " " for _, kind, value in app.jinja_env.lex(source)
                   if kind == "data" or kind.endswith("_begin"))


_ATTRIBUTES_ONLY = re.compile(r'\s*([\w-]+="[^"]*"\s*)+')  # a macro writing attributes, not text
_ADDRESSES = re.compile(r"\S+@\S+")


def _literal_words(fragment: str) -> list[str]:
    if _ATTRIBUTES_ONLY.fullmatch(fragment):
        return []
    return [w for w in WORDS.findall(_ADDRESSES.sub(" ", fragment)) if w not in NOT_WORDS]


def _rendered_constants(expr: nodes.Node) -> list[nodes.Const]:
    """The string constants an output expression can print as they are: `{{ 'Save' if a else 'Create' }}`."""
    if isinstance(expr, nodes.Const) and isinstance(expr.value, str):
        return [expr]
    if isinstance(expr, nodes.CondExpr):
        return _rendered_constants(expr.expr1) + (_rendered_constants(expr.expr2) if expr.expr2 else [])
    if isinstance(expr, nodes.Concat):
        return [c for node in expr.nodes for c in _rendered_constants(node)]
    if isinstance(expr, (nodes.Add, nodes.Or, nodes.And)):
        return _rendered_constants(expr.left) + _rendered_constants(expr.right)
    if isinstance(expr, nodes.Filter) and expr.node is not None:
        return _rendered_constants(expr.node)
    return []


# A sentence rather than a CSS class or a key: a capital, a letter beyond ASCII, punctuation, or three words.
_SENTENCE = re.compile(r"[A-Z]|[^\x00-\x7f]|[.,:;!?…]|\w+\s+\w+\s+\w+")
# Macro arguments that end up on the page (pager(label=...), confirm pages' title and text).
_VISIBLE_KEYWORDS = {"label", "title", "text", "button", "placeholder", "description"}


def _untranslated_constants(app, template: Path) -> list[str]:
    """Strings a Jinja expression prints (or passes a macro as a visible argument) that are not catalogue entries."""
    tree = app.jinja_env.parse(template.read_text(encoding="utf-8"))
    shown = [c for output in tree.find_all(nodes.Output) for expr in output.nodes for c in _rendered_constants(expr)]
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name in CATALOGUE_CALLS):
            shown += [c for kw in call.kwargs if kw.key in _VISIBLE_KEYWORDS for c in _rendered_constants(kw.value)]
    return [c.value for c in shown
            if WORDS.search(c.value) and _SENTENCE.search(c.value) and "<" not in c.value and "{" not in c.value
            and c.value not in NOT_WORDS]


def template_problems(app, template: Path) -> list[str]:
    parser = _VisibleText()
    parser.feed(_literal_html(app, template.read_text(encoding="utf-8")))
    literal = [f"{where}={text.strip()}" if where else text.strip() for where, text in parser.found if _literal_words(text)]
    return literal + _untranslated_constants(app, template)


_LABELLED = re.compile(r"Field$")
_MESSAGE_KEYWORDS = {"message", "description", "invalid_value_message"}


def python_problems(path: Path) -> list[str]:
    """flash("..."), flash(f"..."), Markup("words"), SomeField("Label") and message="..." outside the catalogue."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []

    def literal(node) -> bool:
        if isinstance(node, ast.JoinedStr):  # an f-string with words of its own (not "{label}: {error}")
            return any(literal(part) for part in node.values if isinstance(part, ast.Constant))
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(WORDS.search(node.value))

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[0] if node.args else None
        if name == "flash" and first is not None and (literal(first) or (
                isinstance(first, ast.BinOp) and (literal(first.left) or literal(first.right)))):
            problems.append(f"{path.name}:{node.lineno}: flash of a literal")
        if name == "Markup" and isinstance(first, ast.Constant) and literal(first) and len(WORDS.findall(first.value)) > 1:
            problems.append(f"{path.name}:{node.lineno}: Markup sentence {first.value!r}")
        if _LABELLED.search(name) and first is not None and literal(first):
            problems.append(f"{path.name}:{node.lineno}: form label {ast.unparse(first)}")
        if name in ("InputRequired", "DataRequired", "FileRequired") and first is not None and literal(first):
            problems.append(f"{path.name}:{node.lineno}: validator message {ast.unparse(first)}")
        for keyword in node.keywords:
            if keyword.arg in _MESSAGE_KEYWORDS and literal(keyword.value):
                problems.append(f"{path.name}:{node.lineno}: {keyword.arg}= {ast.unparse(keyword.value)}")
    return problems


def test_the_catalogued_templates_hold_no_visible_literal_outside_the_catalogue(app):
    templates = catalogued_files(".html")
    assert len(templates) >= 30
    problems = {str(t.relative_to(PACKAGE)): p for t in templates if (p := template_problems(app, t))}
    assert problems == {}


def test_the_catalogued_modules_flash_and_label_only_through_the_catalogue():
    modules = catalogued_files(".py")
    assert len(modules) >= 15
    problems = [problem for module in modules for problem in python_problems(module)]
    assert problems == []


def test_the_checker_sees_a_literal_in_a_template_and_in_a_flash(app, tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<h1>{{ _("Campaigns") }}</h1><p>Hello there</p><input placeholder="Your name">'
                    '{{ "Save changes" if x else _("Create") }}<a title="{{ _(\'Fine\') }}">{{ n }}</a>')
    assert template_problems(app, page) == ["Hello there", "input[placeholder]=Your name", "Save changes"]
    module = tmp_path / "views.py"
    module.write_text('flash("Saved.", "success")\nflash(f"{n} removed", "info")\nflash(gettext("Ok."))\n'
                      'name = StringField("Campaign name")\nok = StringField(_l("Subject"))\n')
    assert [p.split(": ", 1)[1] for p in python_problems(module)] == [
        "flash of a literal", "flash of a literal", "form label 'Campaign name'"]


# --- the catalogue ------------------------------------------------------------------------------------


def test_msgfmt_finds_the_russian_catalogue_complete_with_nothing_fuzzy(tmp_path):
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        missing_system_package("gettext", "msgfmt")
    result = subprocess.run([msgfmt, "--check", "--statistics", "-o", str(tmp_path / "ru.mo"), str(RUSSIAN)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    statistics = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ translated messages\.", statistics), statistics  # no "fuzzy", no "untranslated"
    assert int(statistics.split()[0]) >= 500


def test_every_string_the_code_marks_is_in_the_russian_catalogue(tmp_path):
    """A fresh extraction (the Makefile's keywords) finds no msgid the .po lacks: `make translations` was run."""
    from babel.messages.pofile import read_po

    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    keywords = re.findall(r"-k (\S+)", makefile)
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
                    *[arg for k in keywords for arg in ("-k", k)], "-o", str(pot), "."],
                   cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=120)
    extracted = {m.id for m in read_po(pot.open("rb")) if m.id}
    with RUSSIAN.open("rb") as po:
        translated = {m.id for m in read_po(po) if m.id and m.string and (isinstance(m.string, str) or all(m.string))}
    assert sorted(map(str, extracted - translated)) == []


# --- plurals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "english", "russian"), [
    (1, "1 recipient", "1 получатель"),
    (2, "2 recipients", "2 получателя"),
    (5, "5 recipients", "5 получателей"),
    (11, "11 recipients", "11 получателей"),
    (21, "21 recipients", "21 получатель"),
    (1204, "1,204 recipients", "1\u00a0204 получателя"),
])
def test_counts_read_in_each_language_with_its_own_plural_forms(app, count, english, russian):
    for language, expected in (("en", english), ("ru", russian)):
        with app.app_context(), app.test_request_context(headers={"Accept-Language": language}):
            assert count_of(count, "%(num)s recipient", "%(num)s recipients") == expected


def test_moments_name_their_month_in_the_viewers_language(app):
    moment = datetime(2026, 12, 7, 20, 4, 16, tzinfo=UTC)
    for language, expected in (("en", "7 Dec 2026, 20:04 UTC"), ("ru", "7 дек. 2026, 20:04 UTC")):
        with app.app_context(), app.test_request_context(headers={"Accept-Language": language}):
            assert format_moment(moment) == expected
    assert format_moment(moment) == "7 Dec 2026, 20:04 UTC"  # outside a request: English (the CLI, logs)


def _campaign_with(owner: User, count: int, name: str):
    return factories.create_campaign(owner, count, name=name)


def test_the_campaign_list_and_a_draft_say_their_counts_in_russian(app, manager):
    for count, name in ((1, "Одна"), (2, "Две"), (5, "Пять")):
        _campaign_with(manager, count, name)
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru-RU,ru;q=0.9,en;q=0.5"

    listing = client.get("/campaigns").get_data(as_text=True)

    assert '<html lang="ru">' in listing
    assert "<h1>Рассылки</h1>" in listing and "Новая рассылка" in listing
    for phrase in ("1 получатель<", "2 получателя<", "5 получателей<"):
        assert phrase in listing


def test_a_flash_counts_in_russian(app, manager):
    campaign = _campaign_with(manager, 3, "Три")
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    recipient_ids = re.findall(r"/recipients/(\d+)/remove", page)

    response = client.post(f"/campaigns/{campaign.id}/recipients/{recipient_ids[0]}/remove",
                           data={"csrf_token": csrf_token_from(page)}, follow_redirects=True)

    assert ("success", "Получатель удалён. Осталось 2 получателя.") in flashes(response.get_data(as_text=True))


# --- which language ---------------------------------------------------------------------------------------


def test_the_login_page_follows_the_browser(client):
    assert "<h1>Войти</h1>" in client.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9"}).get_data(as_text=True)
    assert "<h1>Log in</h1>" in client.get("/login", headers={"Accept-Language": "de-DE,fr;q=0.8"}).get_data(as_text=True)
    assert "<h1>Log in</h1>" in client.get("/login").get_data(as_text=True)


def test_the_users_stored_choice_wins_over_the_browser(app, manager):
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    account = client.get("/account/password").get_data(as_text=True)
    assert 'id="language-form"' in account and "Язык" in account

    response = client.post("/account/language", data={"language": "en", "csrf_token": csrf_token_from(account),
                                                      "next": "/account/password"}, follow_redirects=True)

    assert ("success", "Language saved.") in flashes(response.get_data(as_text=True))
    assert db.session.get(User, manager.id).language == "en"
    assert "<h1>Campaigns</h1>" in client.get("/campaigns").get_data(as_text=True)  # Accept-Language says ru

    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en-US"
    token = csrf_token_from(client.get("/account/password").get_data(as_text=True))
    response = client.post("/account/language", data={"language": "ru", "csrf_token": token}, follow_redirects=True)
    assert ("success", "Язык сохранён.") in flashes(response.get_data(as_text=True))
    assert "<h1>Рассылки</h1>" in client.get("/campaigns").get_data(as_text=True)

    token = csrf_token_from(client.get("/account/password").get_data(as_text=True))
    client.post("/account/language", data={"language": "", "csrf_token": token})
    db.session.expire_all()
    assert db.session.get(User, manager.id).language is None  # back to following the browser
    assert "<h1>Campaigns</h1>" in client.get("/campaigns").get_data(as_text=True)


def test_a_language_the_product_does_not_speak_is_refused(app, manager):
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    token = csrf_token_from(client.get("/account/password").get_data(as_text=True))
    response = client.post("/account/language", data={"language": "xx", "csrf_token": token}, follow_redirects=True)
    assert ("error", "Choose a language from the list.") in flashes(response.get_data(as_text=True))
    assert db.session.get(User, manager.id).language is None


def test_without_requests_the_language_is_english(app):
    with app.app_context():
        assert select_locale() == "en"
        assert count_of(2, "%(num)s recipient", "%(num)s recipients") == "2 recipients"


def test_without_a_compiled_catalogue_the_pages_are_english(app_env, _schema, tmp_path):
    bare = create_app({**app_env, "SETUP_LOGGING": False, "BABEL_TRANSLATION_DIRECTORIES": str(tmp_path)})
    cache = babel.domain_instance.cache  # Flask-Babel caches catalogues per process, whichever app loaded them
    cache.clear()
    try:
        page = new_client(bare).get("/login", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    finally:
        cache.clear()
    assert '<html lang="ru">' in page and "<h1>Log in</h1>" in page


def test_every_admin_page_answers_in_russian(app, admin, manager):
    started = factories.create_started_campaign(manager, 3)
    client = logged_in_client(app, factories.ADMIN_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    headings = {
        "/admin/sending": "<h1>Отправка</h1>",
        "/admin/operations": "<h1>Эксплуатация</h1>",
        "/admin/suppressions": "<h1>Стоп-лист</h1>",
        "/admin/audit": "<h1>Журнал действий</h1>",
        "/admin/users": "<h1>Пользователи</h1>",
        "/admin/users/new": "<h1>Новый пользователь</h1>",
        f"/campaigns/{started.id}": "Рассылки",
        f"/campaigns/{started.id}/cancel": "Отменить рассылку «",
    }
    for path, heading in headings.items():
        page = client.get(path).get_data(as_text=True)
        assert heading in page, path
        assert '<html lang="ru">' in page
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert "Рассылка запущена" in audit and re.search(r"\d+ событи[еяй]", audit)


def test_wtforms_own_messages_come_in_russian(app, admin):
    client = logged_in_client(app, factories.ADMIN_EMAIL)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"
    token = csrf_token_from(client.get("/admin/users/new").get_data(as_text=True))

    page = client.post("/admin/users/new", data={"csrf_token": token, "email": "", "password": "", "role": "manager"})

    text = page.get_data(as_text=True)
    assert "Обязательное поле." in text  # WTForms' DataRequired, from WTForms' own Russian catalogue
    assert "This field is required." not in text


def test_error_pages_speak_the_browsers_language_and_problem_details_stay_english(client):
    page = client.get("/no-such-page", headers={"Accept-Language": "ru"})
    assert page.status_code == 404 and "404 · Не найдено" in page.get_data(as_text=True)
    assert "404 · Not Found" in client.get("/no-such-page", headers={"Accept-Language": "en"}).get_data(as_text=True)
    problem = client.get("/api/no-such-thing", headers={"Accept-Language": "ru"})
    assert problem.status_code == 404 and problem.json["title"] == "Not Found"


def test_public_pages_follow_the_browser_even_for_a_logged_in_user(app, manager):
    client = logged_in_client(app, factories.MANAGER_EMAIL)
    token = csrf_token_from(client.get("/account/password").get_data(as_text=True))
    client.post("/account/language", data={"language": "en", "csrf_token": token})
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru"

    assert '<html lang="ru">' in client.get("/u/not-a-token").get_data(as_text=True)  # a recipient's page
    assert '<html lang="en">' in client.get("/campaigns").get_data(as_text=True)  # the app: the stored choice
