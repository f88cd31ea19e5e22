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

The pieces: `policy.py` (the patcher: the rules above), `sinks.py` (JSON and text),
`stdlib.py` (stdlib logging routed in), `uncaught.py` (uncaught exceptions and start-up
failures, one record each), `request_log.py` (request ids and the "Request handled" line).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger

from mailadmin import pii
from mailadmin.logging.policy import enforce_pii_policy, no_patch
from mailadmin.logging.request_log import init_request_logging
from mailadmin.logging.sinks import JsonSink, Sink, TextSink, pretty_format, writer_for
from mailadmin.logging.stdlib import install_stdlib_interception, remove_stdlib_interception
from mailadmin.logging.uncaught import install_uncaught_hooks, remove_uncaught_hooks, report_startup_failure

__all__ = ["bind_context", "init_request_logging", "report_startup_failure", "reset_logging", "setup_logging"]


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
    write = writer_for(sink)
    if settings.log_format == "json":
        # Our sink formats the exception itself (never shows local variables), so loguru's own
        # formatting, which it runs anyway, is kept cheap.
        logger.add(
            JsonSink(write), level=level_no, format="{message}", backtrace=False, diagnose=False, colorize=False
        )
    else:
        stream = sys.stdout if sink is None else sink
        colorize = development and bool(getattr(stream, "isatty", lambda: False)())
        # diagnose prints local variables (recipient addresses) into tracebacks: development only,
        # and even then the sink masks the text it writes.
        logger.add(
            TextSink(write),
            level=level_no,
            format=pretty_format,
            colorize=colorize,
            backtrace=development,
            diagnose=development,
        )
    install_stdlib_interception(level_no)
    install_uncaught_hooks(settings.log_format == "json")


def reset_logging() -> None:
    """Undo `setup_logging`: no loguru sink, no patcher, no stdlib bridge, default PII policy."""
    logger.remove()
    logger.configure(patcher=no_patch)
    remove_stdlib_interception()
    remove_uncaught_hooks()
    pii.set_active_policy(pii.PiiPolicy())


@contextmanager
def bind_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (campaign_id, queue_id, job_id, ...) to every record logged inside the block."""
    with logger.contextualize(**fields):
        yield
