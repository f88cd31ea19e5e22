"""`flask --app wsgi doctor`: the playbook's 60-second diagnosis in a terminal.

Prints one line per check (status, name, verdict) and, for anything not ok, the playbook
section to read. Exit code: 0 when nothing is critical (warnings included, unless --strict),
1 with --strict when something is a warning, 2 when something is critical — so it can gate a
deploy or feed a cron alert.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import click
from flask.cli import with_appcontext

from mailadmin.ops import CHECK_KEYS, CRITICAL, OK, WARNING, Diagnosis, format_time, run_diagnosis

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
_LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}


def exit_code(diagnosis: Diagnosis, *, strict: bool = False) -> int:
    """2 when any check is critical; 1 when --strict and any check is a warning; else 0."""
    if diagnosis.status == CRITICAL:
        return EXIT_CRITICAL
    if strict and diagnosis.status == WARNING:
        return EXIT_WARNING
    return EXIT_OK


def format_report(diagnosis: Diagnosis, *, color: bool = False) -> str:
    """The human-readable report: one line per check, playbook pointers for the others."""
    colors = {OK: "green", WARNING: "yellow", CRITICAL: "red"}
    width = max((len(c.key) for c in diagnosis.checks), default=8)
    lines = [f"mailadmin doctor — {format_time(diagnosis.checked_at)}"]
    pointed: set[str] = set()
    for check in diagnosis.checks:
        label = f"{_LABELS[check.status]:<8}"
        if color:
            label = click.style(label, fg=colors[check.status], bold=check.status != OK)
        lines.append(f"{label}  {check.key:<{width}}  {check.verdict}")
        lines += [f"{'':<8}  {'':<{width}}    {note}" for note in check.notes]
        if check.status != OK and check.playbook.path not in pointed:  # "not checked" lines share their cause's
            pointed.add(check.playbook.path)
            lines.append(f"{'':<8}  {'':<{width}}  -> {check.playbook.path}")
    counts = {s: sum(1 for c in diagnosis.checks if c.status == s) for s in (CRITICAL, WARNING)}
    summary = f"Verdict: {_LABELS[diagnosis.status]}"
    if diagnosis.status != OK:
        summary += f" ({counts[CRITICAL]} critical, {counts[WARNING]} warning)"
        summary += " — start with the first CRITICAL line." if counts[CRITICAL] else " — nothing is down; see the warnings."
    lines.append(summary)
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def report_json(diagnosis: Diagnosis) -> str:
    """The diagnosis as one JSON object (status, checked_at, checks with details)."""
    payload = {
        "status": diagnosis.status,
        "checked_at": diagnosis.checked_at.isoformat(),
        "checks": [
            {
                "key": c.key,
                "title": c.title,
                "status": c.status,
                "verdict": c.verdict,
                "playbook": c.playbook.path,
                "details": _jsonable(c.details),
            }
            for c in diagnosis.checks
        ],
    }
    return json.dumps(payload, default=str)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (default: only critical fails, with 2).")
@click.option("--check", "only", multiple=True, type=click.Choice(CHECK_KEYS),
              help="Run only this check (repeatable); database and Redis are always probed.")
@with_appcontext
def doctor_command(as_json: bool, strict: bool, only: tuple[str, ...]) -> None:
    """Run the 60-second diagnosis: DB, Redis, queues, workers, scheduler, campaigns, breaker, quota."""
    diagnosis = run_diagnosis(only=only or None)
    if as_json:
        click.echo(report_json(diagnosis))
    else:
        click.echo(format_report(diagnosis, color=sys.stdout.isatty()))
    raise SystemExit(exit_code(diagnosis, strict=strict))
