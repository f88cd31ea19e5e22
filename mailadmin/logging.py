"""Loguru set-up: one sink (JSON or pretty text), stdlib interception and the PII policy.

`setup_logging(settings)` is called by the app factory and by `worker.py`'s `main()`, never at
import. It replaces every loguru sink with ONE sink (stdout by default) and installs a patcher
that every record passes through, whatever its origin (our code, Flask/werkzeug, gunicorn, RQ,
rq-scheduler, SQLAlchemy, Alembic — the stdlib loggers are routed into loguru, and Python
warnings such as SQLAlchemy's SAWarning arrive as "py.warnings" records).

JSON (``LOG_FORMAT=json``, the production default) is one object per line::

    {"timestamp": "2026-11-22T10:00:00.123456+00:00", "level": "INFO",
     "logger": "mailadmin.jobs.send", "message": "Email sent successfully",
     "campaign_id": 7, "email_domain": "company.com", "email_hash": "3f1c...", ...,
     "exception": {"type": "...", "value": "...", "traceback": "..."}}

Bound/extra fields sit at top level (an extra field named like a core key is written as
``extra_<name>``); ``exception`` appears only when the record carries one.

PII policy (SPEC "Logging"), enforced by the patcher on the message, on every extra field (nested
dicts and lists too) and by the sinks on the exception text and traceback:

* A full address appears only in DEBUG records and only when ``MAILER_LOG_FULL_EMAILS`` is true.
* The PII fields follow `mailadmin.pii.allowed_pii_fields` (INFO: domain, masked, hash;
  WARNING/ERROR: masked, domain).
* ``MAILER_LOG_PII_LEVEL`` (default ERROR) is the minimum level at which an address found in
  free text (a message, an exception, any other field) is shown masked (``jo***@company.com``);
  below it such an address keeps only its domain (``***@company.com``).
* WARNING and above never carry ``email_hash``; fields named ``email``, ``recipient_email`` or
  ``to`` holding a full address are dropped where the full address is not allowed, and replaced
  by the PII fields the level allows (unless the record already has them).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from datetime import time as clock_time
from enum import Enum
from typing import Any, TextIO

import click
from flask import Flask, Response, g, has_request_context, request
from loguru import logger

from mailadmin import pii

# Stdlib loggers routed into loguru explicitly: some (gunicorn) do not propagate to the root
# logger and carry their own handlers, which would print around the PII policy.
INTERCEPTED_LOGGERS = (
    "werkzeug",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "rq",
    "rq.worker",
    "rq.job",
    "rq_scheduler",
    "rq_scheduler.scheduler",
    "sqlalchemy",
    "alembic",
    "flask_migrate",
)
# SQLAlchemy logs every statement at INFO when echo is on; only its warnings belong in our logs.
# RQ and rq-scheduler write several DEBUG lines a second while idle ("Checking for scheduled
# jobs..."): even in development they start at INFO, so that make run's output stays readable.
QUIET_LOGGERS = {
    "sqlalchemy": logging.WARNING,
    "rq": logging.INFO,
    "rq.worker": logging.INFO,
    "rq.job": logging.INFO,
    "rq_scheduler": logging.INFO,
    "rq_scheduler.scheduler": logging.INFO,
}

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER_NAME = "mailadmin.request"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Fields whose value, when it is a full address, is dropped where the full address is not allowed.
FULL_ADDRESS_FIELDS = ("email", "recipient_email", "to")
_OWN_MESSAGE_ID = re.compile(r"<campaign-\d{1,18}\.recipient-\d{1,18}\.[0-9a-f]{12}@[A-Za-z0-9.-]{1,253}>")
# Fields whose values look like addresses by design but name nobody, kept as they are when (and only
# when) they have exactly their expected shape: the product's own Message-IDs (so a send can be
# matched with the provider's logs) and `get_pii_log_fields`' already-masked address.
TRUSTED_FIELD_SHAPES: dict[str, Callable[[str], bool]] = {
    "smtp_message_id": lambda value: _OWN_MESSAGE_ID.fullmatch(value) is not None,
    "email_masked": lambda value: pii.mask_email(value) == value,
}
_CORE_KEYS = ("timestamp", "level", "logger", "message", "exception")
_LOGGER_NAME_FIELD = "_mailadmin_logger_name"  # set by the stdlib bridge, popped by the patcher
_TEXT_EXTRAS_FIELD = "_mailadmin_text_extras"  # rendered extras of the pretty sink
_MAX_DEPTH = 8
_INFO_NO = pii.LEVEL_NUMBERS["INFO"]

Sink = TextIO | Callable[[str], Any] | None


# --- the policy, applied to one record -------------------------------------------------------


def _text_masker(levelno: int, policy: pii.PiiPolicy) -> Callable[[str], str] | None:
    """How addresses in text of a record at `levelno` are shown; None when they may stay whole."""
    if policy.full_emails and levelno < _INFO_NO:
        return None
    replace = pii.mask_email if levelno >= pii.level_number(policy.pii_level) else pii.redact_email
    return lambda text: pii.mask_emails_in_text(text, replace)


def mask_text_for_level(text: str, level: str | int, policy: pii.PiiPolicy | None = None) -> str:
    """`text` with its addresses shown as a record of `level` may show them (active policy by default)."""
    masker = _text_masker(pii.level_number(level), policy or pii.get_active_policy())
    return masker(text) if masker else text


def _json_safe(value: Any, mask: Callable[[str], str], depth: int = 0) -> Any:
    """`value` as JSON-compatible data with every string (keys included) passed through `mask`."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return mask(value)
    if depth >= _MAX_DEPTH:
        return mask(_to_text(value))
    if isinstance(value, dict):
        return {mask(str(key)): _json_safe(item, mask, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(item, mask, depth + 1) for item in value]
    if isinstance(value, (datetime, date, clock_time)):
        return value.isoformat()
    if isinstance(value, Enum):
        return _json_safe(value.value, mask, depth + 1)
    if isinstance(value, (bytes, bytearray)):
        return mask(bytes(value).decode("utf-8", "replace"))
    return mask(_to_text(value))


def _to_text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}>"


def _identity(text: str) -> str:
    return text


def _request_fields() -> dict[str, Any]:
    """request_id and user_id of the current request, when `init_request_logging` is active."""
    if not has_request_context() or "request_id" not in g:
        return {}
    # flask-login caches the user it loaded in g._login_user; reading it never triggers a query.
    user = g.get("_login_user")
    user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    return {"request_id": g.request_id, "user_id": user_id}


def enforce_pii_policy(record: dict[str, Any]) -> None:
    """Loguru patcher: apply the active PII policy to the message and the extra fields of `record`."""
    policy = pii.get_active_policy()
    levelno = record["level"].no
    extra = record["extra"]
    stdlib_name = extra.pop(_LOGGER_NAME_FIELD, None)
    if stdlib_name:
        record["name"] = stdlib_name
    for key, value in _request_fields().items():
        extra.setdefault(key, value)

    allowed = pii.allowed_pii_fields(levelno, full_emails_allowed=policy.full_emails)
    mask = _text_masker(levelno, policy) or _identity
    record["message"] = mask(record["message"])

    cleaned: dict[str, Any] = {}
    dropped_address: str | None = None
    for key, value in extra.items():
        holds_address = isinstance(value, str) and pii.is_email(value)
        if key in pii.PII_FIELDS and key not in allowed:
            if holds_address and dropped_address is None:
                dropped_address = value
            continue
        if key in FULL_ADDRESS_FIELDS and holds_address and "email" not in allowed:
            dropped_address = dropped_address or value
            continue
        trusted = TRUSTED_FIELD_SHAPES.get(key)
        if trusted is not None and isinstance(value, str) and trusted(value):
            cleaned[key] = value
            continue
        cleaned[mask(str(key))] = _json_safe(value, mask)
    if dropped_address is not None and not any(name in cleaned for name in pii.PII_FIELDS):
        cleaned.update(
            pii.safe_email_for_logging(
                dropped_address,
                levelno,
                salt=policy.hash_salt,
                full_emails_allowed=policy.full_emails,
            )
        )
    record["extra"] = cleaned


def _no_patch(record: dict[str, Any]) -> None:
    """Stands in for "no patcher": loguru's configure() cannot unset one."""


# --- sinks -----------------------------------------------------------------------------------


def _writer(sink: Sink) -> Callable[[str], None]:
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
        "value": mask(_to_text(value)),
        "traceback": mask("".join(traceback.format_exception(type_, value, tb))),
    }


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON object written for a (patched) loguru record."""
    mask = _text_masker(record["level"].no, pii.get_active_policy()) or _identity
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


class _JsonSink:
    """Writes one JSON object per line; the exception is formatted and masked here."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, message: Any) -> None:
        line = json.dumps(json_record(message.record), ensure_ascii=False, default=_to_text)
        self._write(line + "\n")


class _TextSink:
    """Writes loguru's formatted text after masking it whole (message, extras and traceback)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def __call__(self, message: Any) -> None:
        mask = _text_masker(message.record["level"].no, pii.get_active_policy()) or _identity
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
    return json.dumps(value, ensure_ascii=False, default=_to_text)


def _pretty_format(record: dict[str, Any]) -> str:
    """Loguru format function of the text sink: extras appended as key=value."""
    extras = [f"{key}={_render_extra(value)}" for key, value in record["extra"].items() if key != _TEXT_EXTRAS_FIELD]
    record["extra"][_TEXT_EXTRAS_FIELD] = (" | " + " ".join(extras)) if extras else ""
    return _PRETTY_TEMPLATE


# --- stdlib logging --------------------------------------------------------------------------


class InterceptHandler(logging.Handler):
    """Routes stdlib logging records into loguru (the loguru documentation's recipe)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno

        # Find the caller from where the logged message originated.
        frame, depth = inspect.currentframe(), 0
        while frame:
            filename = frame.f_code.co_filename
            is_logging = filename == logging.__file__
            is_frozen = "importlib" in filename and "_bootstrap" in filename
            if depth > 0 and not (is_logging or is_frozen):
                break
            frame = frame.f_back
            depth += 1

        try:
            message = record.getMessage()
        except Exception:
            # logging.Handler.handleError would print msg and args to stderr, unmasked.
            message = f"{_to_text(record.msg)} (log arguments could not be formatted)"
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] is not None else None
        logger.opt(depth=depth, exception=exc_info).bind(**{_LOGGER_NAME_FIELD: record.name}).log(level, message)


def _install_stdlib_interception(levelno: int) -> None:
    # Python warnings (SQLAlchemy's SAWarning among them) become "py.warnings" records.
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, InterceptHandler)]:
        root.removeHandler(handler)
    root.addHandler(InterceptHandler())
    root.setLevel(levelno)
    for name in INTERCEPTED_LOGGERS:
        stdlib_logger = logging.getLogger(name)
        stdlib_logger.handlers = []
        stdlib_logger.propagate = True
        # RQ's worker.work(logging_level=...) sets its own level and handlers; take them back.
        stdlib_logger.setLevel(QUIET_LOGGERS.get(name, logging.NOTSET))


def _remove_stdlib_interception() -> None:
    logging.captureWarnings(False)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, InterceptHandler)]:
        root.removeHandler(handler)


# --- public set-up ---------------------------------------------------------------------------


def setup_logging(settings: Any, *, sink: Sink = None, level: str | int | None = None) -> None:
    """Replace every loguru sink with one sink configured from `settings`; safe to call again.

    `sink`: a text stream (default: sys.stdout) or a callable receiving each record's text.
    `level`: the lowest level written (default: DEBUG in development, INFO in production).
    """
    development = settings.app_env == "development"
    level_no = pii.level_number(level if level is not None else ("DEBUG" if development else "INFO"))
    pii.set_active_policy(pii.PiiPolicy.from_settings(settings))

    logger.remove()
    logger.configure(patcher=enforce_pii_policy)
    write = _writer(sink)
    if settings.log_format == "json":
        # Our sink formats the exception itself (never shows local variables), so loguru's own
        # formatting, which it runs anyway, is kept cheap.
        logger.add(
            _JsonSink(write), level=level_no, format="{message}", backtrace=False, diagnose=False, colorize=False
        )
    else:
        stream = sys.stdout if sink is None else sink
        colorize = development and bool(getattr(stream, "isatty", lambda: False)())
        # diagnose prints local variables (recipient addresses) into tracebacks: development only,
        # and even then the sink masks the text it writes.
        logger.add(
            _TextSink(write),
            level=level_no,
            format=_pretty_format,
            colorize=colorize,
            backtrace=development,
            diagnose=development,
        )
    _install_stdlib_interception(level_no)
    _install_uncaught_hooks(settings.log_format == "json")


def reset_logging() -> None:
    """Undo `setup_logging`: no loguru sink, no patcher, no stdlib bridge, default PII policy."""
    logger.remove()
    logger.configure(patcher=_no_patch)
    _remove_stdlib_interception()
    _remove_uncaught_hooks()
    pii.set_active_policy(pii.PiiPolicy())


# --- uncaught exceptions: one record each, never a bare traceback ------------------------------


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logger.opt(exception=(exc_type, exc, tb)).critical("Uncaught exception; the process stops")


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else None
    logger.bind(thread=thread).opt(exception=(args.exc_type, args.exc_value, args.exc_traceback)).critical(
        "Uncaught exception in a thread"
    )


def _show_click_error(self: click.ClickException, file: Any = None) -> None:
    # A CLI error (bad option, refused command) is one record too, with the exit code it ends with.
    logger.bind(exit_code=self.exit_code, error_type=type(self).__name__).error(self.format_message())


_CLICK_SHOW = {cls: cls.__dict__["show"] for cls in (click.ClickException, click.UsageError)}


def _install_uncaught_hooks(json_format: bool) -> None:
    """sys/threading excepthooks always; click's error printer only when the log is JSON."""
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    for cls, original in _CLICK_SHOW.items():
        cls.show = _show_click_error if json_format else original


def _remove_uncaught_hooks() -> None:
    sys.excepthook = sys.__excepthook__
    threading.excepthook = threading.__excepthook__
    for cls, original in _CLICK_SHOW.items():
        cls.show = original


def report_startup_failure(lines: str | Sequence[str], environ: Mapping[str, str] | None = None) -> str:
    """What a process prints when it cannot start (bad settings: logging is not set up yet), one line per
    problem: a CRITICAL JSON record each when LOG_FORMAT=json or APP_ENV=production (unless
    LOG_FORMAT=pretty), else the plain lines."""
    lines = [lines] if isinstance(lines, str) else list(lines)
    environ = os.environ if environ is None else environ
    log_format = environ.get("LOG_FORMAT", "").strip().lower()
    production = environ.get("APP_ENV", "").strip().lower() == "production"
    if log_format == "json" or (production and log_format != "pretty"):
        return "\n".join(
            json.dumps({
                "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
                "level": "CRITICAL",
                "logger": "mailadmin",
                "message": line,
            })
            for line in lines
        )
    return "\n".join(lines)


@contextmanager
def bind_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (campaign_id, queue_id, job_id, ...) to every record logged inside the block."""
    with logger.contextualize(**fields):
        yield


# --- Flask requests --------------------------------------------------------------------------


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    if "request_id" not in g:  # an earlier before_request handler answered first
        _start_request()
    took_ms = round((time.perf_counter() - g.request_started) * 1000, 1)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    logger.bind(
        **{_LOGGER_NAME_FIELD: ACCESS_LOGGER_NAME},
        method=request.method,
        path=request.path,
        status=response.status_code,
        took_ms=took_ms,
    ).info("Request handled")
    return response


def init_request_logging(app: Flask) -> None:
    """Give each request a request_id (X-Request-ID or generated), add request_id and user_id
    to every record logged during it, and log one "Request handled" line per request."""
    if app.extensions.get("mailadmin.request_logging"):
        return
    app.extensions["mailadmin.request_logging"] = True
    app.before_request(_start_request)
    app.after_request(_log_request)
