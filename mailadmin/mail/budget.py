"""The budget of one render of a manager's template: time, operations and sizes.

Templates are untrusted (SPEC): a render that runs longer than `RENDER_SECONDS`, performs more
than `MAX_OPERATIONS` steps or produces more than `MAX_OUTPUT_CHARS` fails with
`TemplateBudgetExceeded` ("template exceeded its budget"). The sandbox in `templates.py` calls
`tick()` on every loop iteration, call, attribute/item lookup, intercepted operator and output
chunk, so a runaway render is interrupted within milliseconds of its deadline, in any thread
(no signals). The size checks here run before a value is built, so `'a' * 10**9` never
allocates a gigabyte; they hold even when no render is active (Jinja folds constants at compile
time).
"""

from __future__ import annotations

import math
import operator
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# "A fraction of a second" and "a few hundred kilobytes" (SPEC, "Templates are untrusted"). A real
# campaign template renders in about a millisecond with a few hundred operations.
RENDER_SECONDS = 0.5
MAX_OPERATIONS = 200_000
MAX_OUTPUT_CHARS = 300_000  # subject, text and HTML of one message together
MAX_VALUE_CHARS = MAX_OUTPUT_CHARS  # any one string or list a template builds on the way
MAX_INT_BITS = 4_096  # a 1,233-digit number; enough for any arithmetic a message needs
MAX_JSON_INDENT = 16

BUDGET_MESSAGE = "template exceeded its budget"


class TemplateBudgetExceeded(Exception):
    """A render went over its budget. Deliberately not a ValueError: Jinja's `int`/`float`
    filters swallow ValueError, and a budget error must never be swallowed."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{BUDGET_MESSAGE}: {why}")
        self.why = why


class RenderBudget:
    """Time, operations and output characters one message's render may use."""

    def __init__(
        self,
        seconds: float = RENDER_SECONDS,
        max_operations: int = MAX_OPERATIONS,
        max_output_chars: int = MAX_OUTPUT_CHARS,
    ) -> None:
        self.seconds = seconds
        self.max_operations = max_operations
        self.max_output_chars = max_output_chars
        self.deadline = time.monotonic() + seconds
        self.operations = 0
        self.output_chars = 0

    def tick(self, operations: int = 1) -> None:
        """Count operations and check the clock; raises once the budget is spent."""
        self.operations += operations
        if self.operations > self.max_operations:
            raise TemplateBudgetExceeded(f"more than {self.max_operations:,} operations")
        if time.monotonic() > self.deadline:
            raise TemplateBudgetExceeded(f"rendering took longer than {self.seconds:g} s")

    def add_output(self, chars: int) -> None:
        """Count rendered characters (and the time spent producing them)."""
        self.output_chars += chars
        if self.output_chars > self.max_output_chars:
            raise TemplateBudgetExceeded(f"the message is longer than {self.max_output_chars:,} characters")
        self.tick()


_current_budget: ContextVar[RenderBudget | None] = ContextVar("mailadmin_render_budget", default=None)


@contextmanager
def render_budget(budget: RenderBudget | None = None) -> Iterator[RenderBudget]:
    """Make `budget` (a fresh default one when None) the active budget for the renders inside."""
    budget = budget or RenderBudget()
    token = _current_budget.set(budget)
    try:
        yield budget
    finally:
        _current_budget.reset(token)


def tick(operations: int = 1) -> None:
    """Charge the active render budget, if any."""
    budget = _current_budget.get()
    if budget is not None:
        budget.tick(operations)


def render_within_budget(chunks: Iterator[str]) -> str:
    """Join a template's `generate()` output, charging each chunk to the active budget."""
    budget = _current_budget.get()
    parts = []
    for chunk in chunks:
        if budget is not None:
            budget.add_output(len(chunk))
        parts.append(chunk)
    return "".join(parts)


def counted(iterable: Any) -> Iterator[Any]:
    """Iterate while charging one operation per item: every `{% for %}` goes through this."""
    for item in iterable:
        tick()
        yield item


# --- sizes ------------------------------------------------------------------------------------


def _refuse_size(chars: float) -> None:
    if chars > MAX_VALUE_CHARS:
        raise TemplateBudgetExceeded(f"a value of more than {MAX_VALUE_CHARS:,} characters")


def value_weight(value: Any, depth: int = 0) -> int:
    """Roughly how many characters `value` prints as: a list of one long string repeated counts each copy."""
    if isinstance(value, str):
        return len(value)
    if depth >= 3 or not isinstance(value, (list, tuple, dict)):
        return 1
    items = value.items() if isinstance(value, dict) else ((item, "") for item in value)
    return len(value) + sum(value_weight(k, depth + 1) + value_weight(v, depth + 1) for k, v in items)


def checked_size(value: Any) -> Any:
    """`value` itself, unless it is a string or collection over the size cap."""
    if isinstance(value, (str, list, tuple, dict)):
        _refuse_size(value_weight(value))
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateBudgetExceeded(f"a number larger than {MAX_INT_BITS} bits")
        return
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and _is_int(times):
            _refuse_size(value_weight(sequence) * max(times, 0))


def _check_power(base: Any, exponent: Any) -> None:
    if _is_int(base) and _is_int(exponent) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise TemplateBudgetExceeded(f"a number larger than {MAX_INT_BITS} bits")


# A printf width/precision (`%9999999d`, `%.*f`) or a str.format one (`{:>9999999}`).
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:[^{}\d]*(\d+)?(?:[,_]?\.(\d+))?[^{}]*\}")


def check_format_widths(template: Any, args: Any = ()) -> None:
    """Refuse a printf or str.format string whose widths would build a huge string."""
    if not isinstance(template, str):
        return
    widths = [w for match in _PERCENT_SPEC.finditer(template) for w in match.groups() if w]
    widths += [w for match in _BRACE_SPEC.finditer(template) for w in match.groups() if w]
    if "*" in widths:
        values = args if isinstance(args, (tuple, list)) else (args,)
        widths = [str(v) for v in values if _is_int(v)] + [w for w in widths if w != "*"]
    if any(int(w) > MAX_VALUE_CHARS for w in widths if w.lstrip("-").isdigit()):
        raise TemplateBudgetExceeded(f"a format width over {MAX_VALUE_CHARS:,} characters")


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "**": operator.pow,
    "%": operator.mod,
    "+": operator.add,
}
INTERCEPTED_BINOPS = frozenset(_BINOPS)


def budgeted_binop(name: str, left: Any, right: Any) -> Any:
    """`left <name> right` for the operators that can build huge values, checked before and after."""
    tick()
    if name == "*":
        _check_product(left, right)
    elif name == "**":
        _check_power(left, right)
    elif name == "%":
        check_format_widths(left, right)
    return checked_size(_BINOPS[name](left, right))


def estimated_replace_size(text: str, old: str, new: str, count: int | None = None) -> int:
    """Length of `text.replace(old, new, count)` without building it."""
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def check_string_method(method: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a call of a `str` method that would build a string over the size cap."""
    owner = getattr(method, "__self__", None)
    if owner is None and hasattr(method, "__wrapped__"):  # the sandbox's wrapped str.format
        owner = getattr(method.__wrapped__, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and _is_int(args[0]):
        _refuse_size(args[0])
    elif name == "expandtabs":
        tab = args[0] if args and _is_int(args[0]) else kwargs.get("tabsize", 8)
        _refuse_size(len(owner) + owner.count("\t") * max(int(tab), 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = args[2] if len(args) > 2 and _is_int(args[2]) else None
        _refuse_size(estimated_replace_size(owner, args[0], args[1], count))
    elif name in ("format", "format_map"):
        check_format_widths(owner, args)


def checked_join_items(separator: str, items: Any) -> list:
    """The items of `separator.join(items)` as a list, refused when the joined string would be too long."""
    items = list(counted(items))
    _refuse_size(sum(value_weight(item) for item in items) + len(separator) * max(len(items) - 1, 0))
    return items


def _width(value: Any) -> int:
    return len(value) if isinstance(value, str) else value if _is_int(value) else 0


def _replace_precheck(eval_ctx: Any, text: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        _refuse_size(estimated_replace_size(text, old, new, count if _is_int(count) else None))


def _indent_precheck(text: Any, width: Any = 4, first: bool = False, blank: bool = False) -> None:
    _refuse_size(_width(width) * (str(text).count("\n") + 1))


def _tojson_precheck(eval_ctx: Any, value: Any, indent: Any = None) -> None:
    if _width(indent) > MAX_JSON_INDENT:
        raise TemplateBudgetExceeded(f"a JSON indent over {MAX_JSON_INDENT}")


# Jinja filters that can build a value much larger than their input: name -> check of the arguments.
FILTER_PRECHECKS: dict[str, Callable[..., None]] = {
    "replace": _replace_precheck,
    "center": lambda value, width=80: _refuse_size(_width(width)),
    "indent": _indent_precheck,
    "format": lambda value, *args, **kwargs: check_format_widths(value, args),
    "tojson": _tojson_precheck,
}
