"""The doctor's `settings` check: the limits each live process runs with (published with its
heartbeat, `settings_in_effect`), compared with each other and with the shell running the check."""

from __future__ import annotations

from mailadmin.ops.anchors import A_SETTINGS, A_SYMPTOM_SETTINGS, PlaybookRef
from mailadmin.ops.context import CheckContext
from mailadmin.ops.formatting import plural
from mailadmin.ops.in_effect import describe_values
from mailadmin.ops.results import OK, WARNING, CheckResult
from mailadmin.settings_in_effect import SCHEDULER, WEB, WORKER

_KIND_WORDS = {WEB: ("web process", "web processes"), WORKER: ("worker", None), SCHEDULER: ("scheduler", None)}


def check_settings_in_effect(ctx: CheckContext) -> CheckResult:
    """The limits each live process runs with: do they agree with each other and with this shell?"""
    in_effect = ctx.settings_in_effect()
    counts = in_effect.counts()
    disagree = [row for row in in_effect.variables if row.processes_disagree]
    shell_differs = [row for row in in_effect.variables if row.shell_differs]
    details = {"processes": counts, "publications": in_effect.publications, "variables": in_effect.variables,
               "disagree": [row.variable for row in disagree], "shell_differs": [row.variable for row in shell_differs]}
    here = in_effect.here
    notes = [f"{row.variable}: {describe_values(row, here)}" for row in in_effect.variables if row.notable]
    who = ", ".join(plural(n, *_KIND_WORDS[kind]) for kind, n in counts.items() if n) or "no running process"
    if disagree:
        named = "; ".join(f"{row.variable} {describe_values(row, here)}" for row in disagree)
        return CheckResult("settings", "Settings in effect", WARNING,
                           f"the processes disagree ({who}): {named} — a restart has not reached every process",
                           PlaybookRef(A_SYMPTOM_SETTINGS), details, notes)
    if shell_differs:
        named = "; ".join(f"{row.variable} {next(iter(row.process_values))} in the processes, {row.shell} in {here}"
                          for row in shell_differs)
        return CheckResult("settings", "Settings in effect", WARNING,
                           f"{here} differs from the processes ({who}): {named} — the checks use the processes' values",
                           PlaybookRef(A_SYMPTOM_SETTINGS), details, notes)
    if not in_effect.publications:
        return CheckResult("settings", "Settings in effect", OK,
                           f"no running process has published its settings: the checks use {here}'s",
                           PlaybookRef(A_SETTINGS), details, notes)
    changed = [row.variable for row in in_effect.variables if row.notable]
    verdict = f"{who} agree with {here}" + (f"; not the default: {', '.join(changed)}" if changed else "")
    return CheckResult("settings", "Settings in effect", OK, verdict, PlaybookRef(A_SETTINGS), details, notes)
