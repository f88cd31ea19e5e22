"""Campaign personalization: subject and bodies are Jinja templates run in a sandbox.

Managers write the templates, so they are untrusted code: they run in an
`ImmutableSandboxedEnvironment` where touching an unsafe attribute (anything
starting with `_`, mutating methods of lists and dicts, ...) raises instead of
rendering as an empty string, and `validate_campaign_templates()` catches both
syntax errors and such violations when the campaign is saved, not when the
10,000th message is built.

Merge fields are `email`, `name` and every extra column of the import, at top
level (`{{ company }}`). A field a recipient does not have renders as "".
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIELD_LABELS = {"subject": "Subject", "body_text": "Text body", "body_html": "HTML body"}
# Jinja names the code of templates built with from_string() "<template>"; the
# rewritten traceback frames then carry the template's own line numbers.
_TEMPLATE_FILENAME = "<template>"
_COLUMN_JUNK = re.compile(r"[^0-9a-z_]+")


class TemplateProblem(Exception):
    """One problem in one of a campaign's three templates, with the line when known."""

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        super().__init__(field, message, line)
        self.field = field
        self.line = line
        self.message = message

    def __str__(self) -> str:
        label = FIELD_LABELS.get(self.field, self.field)
        where = f"{label}, line {self.line}" if self.line else label
        return f"{where}: {self.message}"


class _MailSandbox(ImmutableSandboxedEnvironment):
    """The stock sandbox renders a forbidden attribute as ""; ours refuses it outright."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is not allowed")


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _make_env(autoescape: bool) -> _MailSandbox:
    return _MailSandbox(
        autoescape=autoescape,
        undefined=ChainableUndefined,
        finalize=_none_as_empty,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )


_TEXT_ENV = _make_env(autoescape=False)
_HTML_ENV = _make_env(autoescape=True)


def _env_for(field: str) -> _MailSandbox:
    return _HTML_ENV if field == "body_html" else _TEXT_ENV


def merge_field_name(column: str) -> str:
    """The merge-field name of an import column: "First name" -> "first_name"."""
    return _COLUMN_JUNK.sub("_", column.strip().lower()).strip("_")


def recipient_fields(email: str, name: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge fields of one recipient: extra columns (names normalized), then `email` and `name` on top."""
    fields: dict[str, Any] = {}
    for column, value in (extra or {}).items():
        key = merge_field_name(str(column))
        if key:
            fields[key] = value
    fields["email"] = email
    fields["name"] = name or ""
    return fields


def sample_fields(extra_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Fields of a made-up recipient for previews and save-time validation."""
    extra = {key: f"Sample {key.replace('_', ' ')}" for key in extra_keys}
    return recipient_fields("jane@example.com", "Jane Doe", extra)


def referenced_fields(source: str) -> set[str]:
    """Names of the merge fields a template uses (empty set for a template that does not parse)."""
    try:
        return set(meta.find_undeclared_variables(_TEXT_ENV.parse(source or "")))
    except TemplateSyntaxError:
        return set()


def _line_of(exc: BaseException) -> int | None:
    """The template line where a render-time error happened, from Jinja's rewritten traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == _TEMPLATE_FILENAME:
            line = frame.lineno
    return line


def _render_error(field: str, exc: Exception) -> TemplateProblem:
    if isinstance(exc, SecurityError):
        message = str(exc)
    elif isinstance(exc, TemplateError):
        message = exc.message or type(exc).__name__
    else:
        message = f"{exc}" if str(exc) else type(exc).__name__
        message = f"error while rendering: {message}"
    return TemplateProblem(field, message, _line_of(exc))


def _unsafe_attributes(field: str, tree: nodes.Template) -> list[TemplateProblem]:
    """Underscore attributes anywhere in the template, even in branches the sample render skips."""
    problems = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            attribute = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attribute = node.arg.value
        else:
            continue
        if attribute.startswith("_"):
            problems.append(TemplateProblem(field, f"access to attribute {attribute!r} is not allowed", node.lineno))
    return problems


def validate_campaign_templates(
    subject: str, body_text: str, body_html: str | None, *, sample: Mapping[str, Any] | None = None
) -> list[TemplateProblem]:
    """Every problem found in the three templates: syntax, sandbox violations, render errors."""
    sample = dict(sample) if sample is not None else sample_fields()
    problems: list[TemplateProblem] = []
    sources = {"subject": subject or "", "body_text": body_text or "", "body_html": body_html or ""}
    if "\n" in sources["subject"] or "\r" in sources["subject"]:
        problems.append(TemplateProblem("subject", "the subject must be a single line"))
    for field, source in sources.items():
        env = _env_for(field)
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(field, exc.message or "syntax error", exc.lineno))
            continue
        static = _unsafe_attributes(field, tree)
        if static:
            problems.extend(static)
            continue
        try:
            rendered = env.from_string(source).render(sample)
        except Exception as exc:  # any error a manager's template can raise is reported, not raised
            problems.append(_render_error(field, exc))
            continue
        if field == "subject" and ("\n" in rendered or "\r" in rendered) and "\n" not in source:
            problems.append(TemplateProblem("subject", "the subject renders to more than one line"))
    return problems


def _compile(field: str, source: str) -> Template:
    try:
        return _env_for(field).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", exc.lineno) from None


@dataclass(frozen=True, slots=True)
class RenderedParts:
    """One recipient's personalized subject, text body and HTML body (None when there is none)."""

    subject: str
    text: str
    html: str | None


class CampaignTemplates:
    """A campaign's three templates, compiled once and rendered per recipient."""

    def __init__(self, subject: str, body_text: str, body_html: str | None = None) -> None:
        self.subject_source = subject or ""
        self.body_text_source = body_text or ""
        self.body_html_source = body_html or None
        self._subject = _compile("subject", self.subject_source)
        self._text = _compile("body_text", self.body_text_source)
        self._html = _compile("body_html", self.body_html_source) if self.body_html_source else None

    @property
    def has_html(self) -> bool:
        return self._html is not None

    def render(self, fields: Mapping[str, Any]) -> RenderedParts:
        """Render subject, text and HTML for one recipient's merge fields."""
        return RenderedParts(
            self._subject.render(fields),
            self._text.render(fields),
            self._html.render(fields) if self._html is not None else None,
        )
