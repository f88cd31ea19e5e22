"""Campaign personalization: subject and bodies are Jinja templates run in a sandbox.

Managers write the templates, so they are untrusted code: they run in an
`ImmutableSandboxedEnvironment` where touching an unsafe attribute (anything
starting with `_`, mutating methods of lists and dicts, ...) raises instead of
rendering as an empty string, and `validate_campaign_templates()` catches both
syntax errors and such violations when the campaign is saved, not when the
10,000th message is built.

Every render runs on a budget (`mailadmin.mail.budget`): time, operations, output and value
sizes. The sandbox charges each call, lookup and intercepted operator (`*`, `**`, `%`, `+`);
each `{% for %}` iterates through a counting wrapper and each `~` result is size-checked (both
added to the parsed tree before compiling). At save, nested loops over large constant ranges are
refused without running them, and the sample render must fit the budget.

Merge fields are `email`, `name` and every extra column of the import, at top
level (`{{ company }}`). A field a recipient does not have renders as "".
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, meta, nodes, pass_context, pass_eval_context
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.filters import FILTERS, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from mailadmin.mail import budget
from mailadmin.mail.budget import BUDGET_MESSAGE, RenderBudget, TemplateBudgetExceeded

__all__ = ["BUDGET_MESSAGE", "CampaignTemplates", "TemplateBudgetExceeded", "TemplateProblem"]

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
    """The stock sandbox renders a forbidden attribute as ""; ours refuses it outright, and
    charges every call, lookup and size-building operator to the render budget."""

    intercepted_binops = budget.INTERCEPTED_BINOPS

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} value is not allowed")

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget.tick()
        budget.check_string_method(obj, args, kwargs)
        if getattr(obj, "__name__", "") == "join" and isinstance(getattr(obj, "__self__", None), str) and args:
            args = (budget.checked_join_items(obj.__self__, args[0]), *args[1:])
        return budget.checked_size(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget.tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return budget.budgeted_binop(operator, left, right)


def _budgeted_filter(func: Any, precheck: Any = None) -> Any:
    """`func` charged to the render budget, its result size-checked, `precheck` run on its arguments first."""

    @wraps(func)  # keeps Jinja's pass_eval_context/pass_environment marker
    def budgeted(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        if precheck is not None:
            precheck(*args, **kwargs)
        return budget.checked_size(func(*args, **kwargs))

    return budgeted


@pass_context
def _counted_loop(context: Context, iterable: Any) -> Any:
    """Every `{% for %}` iterates through this (pass_context keeps Jinja from folding it at compile time)."""
    return budget.counted(iterable)


@pass_context
def _checked_value(context: Context, value: Any) -> Any:
    """Every `~` result and list/dict literal goes through this: doubling a string stops at the cap."""
    budget.tick()
    return budget.checked_size(value)


_LOOP_FILTER = "mailadmin_counted_loop"
_VALUE_FILTER = "mailadmin_checked_value"


def _through(node: nodes.Expr, filter_name: str) -> nodes.Filter:
    return nodes.Filter(node, filter_name, [], [], None, None, lineno=node.lineno)


class _BudgetChecks(NodeTransformer):
    """Routes every loop through `_counted_loop` and every `~` and literal through `_checked_value`."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _through(node.iter, _LOOP_FILTER)
        return node

    def _checked(self, node: nodes.Expr) -> nodes.Filter:
        self.generic_visit(node)
        return _through(node, _VALUE_FILTER)

    visit_Concat = visit_List = visit_Dict = _checked


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> str:
    """Jinja's `join`, refused before joining when the result would be over the size cap."""
    items = budget.checked_join_items(str(d), value) if attribute is None else list(budget.counted(value))
    return budget.checked_size(sync_do_join(eval_ctx, items, d, attribute))


def _budgeted_filters() -> dict[str, Any]:
    filters = {name: _budgeted_filter(func) for name, func in FILTERS.items()}
    for name, precheck in budget.FILTER_PRECHECKS.items():
        filters[name] = _budgeted_filter(FILTERS[name], precheck)
    filters["join"] = _join
    filters[_LOOP_FILTER] = _counted_loop
    filters[_VALUE_FILTER] = _checked_value
    return filters


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def _make_env(autoescape: bool) -> _MailSandbox:
    env = _MailSandbox(
        autoescape=autoescape,
        undefined=ChainableUndefined,
        finalize=_none_as_empty,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.filters = _budgeted_filters()
    env.globals.pop("lipsum", None)  # lipsum(n) builds n paragraphs; no campaign needs it
    return env


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
    if isinstance(exc, (SecurityError, TemplateBudgetExceeded)):
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


def _constant_range_length(expr: nodes.Expr) -> int | None:
    """len(range(...)) when a loop iterates over `range` with constant arguments, else None."""
    if not (isinstance(expr, nodes.Call) and isinstance(expr.node, nodes.Name) and expr.node.name == "range"):
        return None
    if expr.kwargs or expr.dyn_args or expr.dyn_kwargs:
        return None
    try:
        arguments = [arg.as_const(nodes.EvalContext(_TEXT_ENV)) for arg in expr.args]
        return len(range(*arguments))
    except Exception:  # not constant (nodes.Impossible), or not a valid range: the render decides
        return None


def _nested_loop_problems(field: str, node: nodes.Node, outer: int = 1) -> list[TemplateProblem]:
    """Loops nested over large constant ranges, found without running them (`outer`: runs of the enclosing loops)."""
    if not isinstance(node, nodes.For):
        return [p for child in node.iter_child_nodes() for p in _nested_loop_problems(field, child, outer)]
    runs = outer * (_constant_range_length(node.iter) or 1)
    if runs > budget.MAX_OPERATIONS:
        message = (f"{BUDGET_MESSAGE}: nested loops would run {runs:,} times "
                   f"(at most {budget.MAX_OPERATIONS:,} steps per message)")
        return [TemplateProblem(field, message, node.lineno)]
    inside = [p for child in node.body for p in _nested_loop_problems(field, child, runs)]
    beside = [p for child in (node.iter, node.test, *node.else_) if child is not None
              for p in _nested_loop_problems(field, child, outer)]
    return inside + beside


def _parse_for_render(field: str, source: str) -> nodes.Template:
    """Parse `source` and add the budget checks to its tree (syntax errors as TemplateProblem)."""
    env = _env_for(field)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(field, exc.message or "syntax error", exc.lineno) from None
    tree = _BudgetChecks().visit(tree)
    tree.set_environment(env)
    return tree


def _render_part(template: Template, fields: Mapping[str, Any]) -> str:
    """One template rendered within the active budget (output counted as it streams)."""
    return budget.render_within_budget(template.generate(fields))


def validate_campaign_templates(
    subject: str, body_text: str, body_html: str | None, *, sample: Mapping[str, Any] | None = None
) -> list[TemplateProblem]:
    """Every problem found in the three templates: syntax, sandbox violations, render errors."""
    sample = dict(sample) if sample is not None else sample_fields()
    problems: list[TemplateProblem] = []
    sources = {"subject": subject or "", "body_text": body_text or "", "body_html": body_html or ""}
    if "\n" in sources["subject"] or "\r" in sources["subject"]:
        problems.append(TemplateProblem("subject", "the subject must be a single line"))
    compiled: dict[str, Template] = {}
    for field, source in sources.items():
        try:
            tree = _env_for(field).parse(source)
        except TemplateSyntaxError as exc:
            problems.append(TemplateProblem(field, exc.message or "syntax error", exc.lineno))
            continue
        static = _unsafe_attributes(field, tree) or _nested_loop_problems(field, tree)
        if static:
            problems.extend(static)
            continue
        compiled[field] = _compile(field, source)
    # One budget for the whole sample message, exactly as at send time.
    with budget.render_budget():
        for field, template in compiled.items():
            try:
                rendered = _render_part(template, sample)
            except Exception as exc:  # any error a manager's template can raise is reported, not raised
                problems.append(_render_error(field, exc))
                continue
            if field == "subject" and ("\n" in rendered or "\r" in rendered) and "\n" not in sources[field]:
                problems.append(TemplateProblem("subject", "the subject renders to more than one line"))
    return problems


def _compile(field: str, source: str) -> Template:
    """Compile one template with the budget checks in its tree."""
    return _env_for(field).from_string(_parse_for_render(field, source))


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

    def render(self, fields: Mapping[str, Any], render_budget: RenderBudget | None = None) -> RenderedParts:
        """Render subject, text and HTML for one recipient's merge fields, within one budget.

        Raises TemplateBudgetExceeded ("template exceeded its budget: ...") when the message
        takes too long, too many steps or too many characters.
        """
        with budget.render_budget(render_budget):
            return RenderedParts(
                _render_part(self._subject, fields),
                _render_part(self._text, fields),
                _render_part(self._html, fields) if self._html is not None else None,
            )
