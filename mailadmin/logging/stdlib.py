"""Stdlib logging routed into loguru (Flask/werkzeug, gunicorn, RQ, rq-scheduler, SQLAlchemy,
Alembic, Python warnings), so that every record passes the PII policy and reaches the one sink."""

from __future__ import annotations

import inspect
import logging

from loguru import logger

from mailadmin.logging.policy import LOGGER_NAME_FIELD, to_text

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
            message = f"{to_text(record.msg)} (log arguments could not be formatted)"
        exc_info = record.exc_info if record.exc_info and record.exc_info[0] is not None else None
        logger.opt(depth=depth, exception=exc_info).bind(**{LOGGER_NAME_FIELD: record.name}).log(level, message)


def install_stdlib_interception(levelno: int) -> None:
    """Route the root logger and INTERCEPTED_LOGGERS into loguru at `levelno` (QUIET_LOGGERS higher)."""
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


def remove_stdlib_interception() -> None:
    """Undo `install_stdlib_interception`."""
    logging.captureWarnings(False)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, InterceptHandler)]:
        root.removeHandler(handler)
