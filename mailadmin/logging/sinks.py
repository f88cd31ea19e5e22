"""The one sink `setup_logging` installs: JSON (one object per line, the production default) or
pretty text; each formats and masks the exception itself."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from datetime import UTC
from typing import Any, TextIO

from mailadmin import pii
from mailadmin.logging.policy import no_mask, text_masker, to_text

_CORE_KEYS = ("timestamp", "level", "logger", "message", "exception")
_TEXT_EXTRAS_FIELD = "_mailadmin_text_extras"  # rendered extras of the pretty sink

Sink = TextIO | Callable[[str], Any] | None


def writer_for(sink: Sink) -> Callable[[str], None]:
    """A function writing one finished record (text ending with a newline) to `sink`."""
    if sink is None:
        # Looked up per record: gunicorn, RQ and pytest may replace sys.stdout after set-up.
        def write_stdout(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        return write_stdout
    if hasattr(sink, "write"):
        stream = sink

        def write_stream(text: str) -> None:
            stream.write(text)
            if hasattr(stream, "flush"):
                stream.flush()

        return write_stream
    if callable(sink):
        return lambda text: sink(text.rstrip("\n"))
    raise TypeError(f"sink must be a stream or a callable, got {type(sink).__name__}")


def _exception_fields(record: dict[str, Any], mask: Callable[[str], str]) -> dict[str, str] | None:
    """type, value and traceback text of the record's exception, masked; None when there is none."""
    exception = record["exception"]
    if exception is None or exception.type is None:
        return None
    type_, value, tb = exception
    module = getattr(type_, "__module__", "builtins")
    name = getattr(type_, "__qualname__", str(type_))
    return {
        "type": name if module == "builtins" else f"{module}.{name}",
        "value": mask(to_text(value)),
        "traceback": mask("".join(traceback.format_exception(type_, value, tb))),
    }


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON object written for a (patched) loguru record."""
    mask = text_masker(record["level"].no, pii.get_active_policy()) or no_mask
    payload: dict[str, Any] = {
        "timestamp": record["time"].astimezone(UTC).isoformat(timespec="microseconds"),
        "level": record["level"].name,
        "logger": record["name"],
        "message": record["message"],
    }
    for key, value in record["extra"].items():
        if key == _TEXT_EXTRAS_FIELD:
            continue
        payload[f"extra_{key}" if key in _CORE_KEYS else key] = value
    exception = _exception_fields(record, mask)
    if exception is not None:
        payload["exception"] = exception
    return payload


class JsonSink:
    """Writes one JSON object per line; the exception is formatted and masked here."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, message: Any) -> None:
        line = json.dumps(json_record(message.record), ensure_ascii=False, default=to_text)
        self._write(line + "\n")


class TextSink:
    """Writes loguru's formatted text after masking it whole (message, extras and traceback)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, message: Any) -> None:
        mask = text_masker(message.record["level"].no, pii.get_active_policy()) or no_mask
        self._write(mask(str(message)))


_PRETTY_TEMPLATE = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS!UTC}</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan> - <level>{message}</level>{extra[" + _TEXT_EXTRAS_FIELD + "]}\n{exception}"
)


def _render_extra(value: Any) -> str:
    """logfmt-style value: bare when plain, else JSON-quoted.

    Quoting matters: the text sink masks its whole output again, and `key=jo***@x.org` would be
    read as one address whose local part is "key=jo***" ("=" is legal there), while
    `key="jo***@x.org"` masks to itself.
    """
    if isinstance(value, str) and value and not any(char.isspace() or char in '="@' for char in value):
        return value
    return json.dumps(value, ensure_ascii=False, default=to_text)


def pretty_format(record: dict[str, Any]) -> str:
    """Loguru format function of the text sink: extras appended as key=value."""
    extras = [f"{key}={_render_extra(value)}" for key, value in record["extra"].items() if key != _TEXT_EXTRAS_FIELD]
    record["extra"][_TEXT_EXTRAS_FIELD] = (" | " + " ".join(extras)) if extras else ""
    return _PRETTY_TEMPLATE
