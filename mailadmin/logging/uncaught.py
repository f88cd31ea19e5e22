"""Uncaught exceptions and start-up failures: one record each, never a bare traceback."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from loguru import logger


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


def install_uncaught_hooks(json_format: bool) -> None:
    """sys/threading excepthooks always; click's error printer only when the log is JSON."""
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    for cls, original in _CLICK_SHOW.items():
        cls.show = _show_click_error if json_format else original


def remove_uncaught_hooks() -> None:
    """Python's and click's own printers again."""
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
