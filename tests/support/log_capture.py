"""Capturing the product's logs as the JSON lines production writes, and scanning them for PII.

`capture_json_logs(app)` runs the real `mailadmin.logging.setup_logging()` (JSON sink, the app's own
settings and PII policy, DEBUG) into a list, with the per-request fields of `init_request_logging`,
and undoes all of it afterwards. The scanning helpers read the raw lines, so whatever the sink
wrote — message, extra fields, exception value and traceback — is searched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from flask import Flask

from mailadmin.logging import init_request_logging, reset_logging, setup_logging
from mailadmin.logging.stdlib import INTERCEPTED_LOGGERS

CORE_KEYS = ("level", "logger", "message", "timestamp")
PII_FIELDS = frozenset({"email", "email_masked", "email_domain", "email_hash"})
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@dataclass
class LogLine:
    """One written line and the object it decodes to."""

    text: str
    record: dict

    @property
    def level(self) -> str:
        return self.record["level"]

    @property
    def levelno(self) -> int:
        return LEVELS[self.record["level"]]


@dataclass
class JsonLogCapture:
    """Every line the JSON sink wrote during the block."""

    lines: list[str] = field(default_factory=list)

    def write(self, text: str) -> None:
        """The sink: one call per record, the line without its newline."""
        self.lines.append(text)

    def parsed(self) -> list[LogLine]:
        """Every line decoded; AssertionError naming the first line that is not one JSON object with the core keys."""
        parsed = []
        for number, text in enumerate(list(self.lines), 1):
            assert "\n" not in text, f"line {number} spans several lines: {text!r}"
            try:
                record = json.loads(text)
            except ValueError as exc:
                raise AssertionError(f"line {number} is not valid JSON ({exc}): {text!r}") from None
            assert isinstance(record, dict), f"line {number} is not a JSON object: {text!r}"
            missing = [key for key in CORE_KEYS if key not in record]
            assert not missing, f"line {number} lacks the top-level keys {missing}: {text!r}"
            assert record["level"] in LEVELS, f"line {number} has an unknown level: {text!r}"
            assert isinstance(record["message"], str) and isinstance(record["logger"], str), text
            stamp = datetime.fromisoformat(record["timestamp"])
            assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0, text
            assert "record" not in record and "extra" not in record, f"fields nested, not top-level: {text!r}"
            parsed.append(LogLine(text, record))
        return parsed

    def events(self, message: str) -> list[dict]:
        """The decoded records whose message is exactly `message`."""
        return [line.record for line in self.parsed() if line.record["message"] == message]


@contextmanager
def capture_json_logs(app: Flask, level: str = "DEBUG") -> Iterator[JsonLogCapture]:
    """Production logging (JSON, the app's PII policy) into a list for the block; request logging on `app`.

    Call before `app` handles its first request (Flask refuses new request hooks after that).
    """
    root = logging.getLogger()
    saved_levels = {name: logging.getLogger(name).level for name in ("", *INTERCEPTED_LOGGERS)}
    saved_propagate = {name: logging.getLogger(name).propagate for name in INTERCEPTED_LOGGERS}
    capture = JsonLogCapture()
    setup_logging(app.config["SETTINGS"], sink=capture.write, level=level)
    init_request_logging(app)
    try:
        yield capture
    finally:
        reset_logging()
        root.setLevel(saved_levels.pop(""))
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)
            logging.getLogger(name).propagate = saved_propagate[name]


def masked_form(address: str) -> str:
    """What SPEC's `mask_email` shows of `address`: the first two characters of the local part."""
    local, domain = address.rsplit("@", 1)
    return f"{local[:2]}***@{domain.lower()}"


def address_spellings(address: str) -> list[str]:
    """The ways a full address can be written in a log line (lower-cased, URL-encoded, JSON-escaped)."""
    lowered = address.lower()
    return sorted({lowered, quote(lowered, safe=""), quote(lowered, safe="@"), json.dumps(lowered)[1:-1]})


def leaks(lines: Iterable[LogLine], addresses: Iterable[str]) -> list[tuple[str, str, str]]:
    """(level, address, line) for every line containing one of `addresses` in any spelling, case-insensitively."""
    found = []
    spellings = {address: address_spellings(address) for address in addresses}
    for line in lines:
        text = line.text.lower()
        for address, forms in spellings.items():
            if any(form in text for form in forms):
                found.append((line.level, address, line.text))
    return found
