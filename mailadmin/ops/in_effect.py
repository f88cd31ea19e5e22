"""The settings in effect: what the running processes published (`mailadmin.settings_in_effect`), which
of them are alive, and where they disagree with each other or with the shell running the diagnosis.

Checks that depend on a limit read it here (`SettingsInEffect.value_for`): the value the processes
that apply it run with, not the diagnosing shell's, which may hold only `DATABASE_URL` and `REDIS_URL`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailadmin.ops.probes import process_alive
from mailadmin.settings import Settings, published_values
from mailadmin.settings_in_effect import PROCESS_KINDS, SCHEDULER, WORKER, Publication

# How the process running the diagnosis is named in its verdicts (the operations page: "this web process").
SHELL = "this shell"


@dataclass(frozen=True)
class VariableInEffect:
    """One published variable: the value per process kind (each value with the processes holding it),
    this shell's value and the documented default."""

    variable: str
    default: Any
    shell: Any
    by_kind: dict[str, dict[Any, list[str]]]

    @property
    def process_values(self) -> set[Any]:
        """Every value some running process holds."""
        return {value for values in self.by_kind.values() for value in values}

    @property
    def processes_disagree(self) -> bool:
        """Two running processes hold different values."""
        return len(self.process_values) > 1

    @property
    def shell_differs(self) -> bool:
        """The running processes agree with each other but not with this shell."""
        return len(self.process_values) == 1 and self.shell not in self.process_values

    @property
    def notable(self) -> bool:
        """Worth a line in the doctor's report: a disagreement, or a value other than the default."""
        return self.processes_disagree or self.shell_differs or any(
            value != self.default for value in (*self.process_values, self.shell))


@dataclass(frozen=True)
class SettingsInEffect:
    """The live processes' publications, compared variable by variable."""

    publications: list[Publication]
    variables: list[VariableInEffect] = field(default_factory=list)
    here: str = SHELL

    def counts(self) -> dict[str, int]:
        """Live processes that published, per kind."""
        return {kind: sum(1 for p in self.publications if p.kind == kind) for kind in PROCESS_KINDS}

    def value_for(self, variable: str, kind: str, fallback: Any) -> tuple[Any, str]:
        """(value, where it comes from) of `variable` as the processes of `kind` run with it: the lowest
        when they disagree (the strictest one is the one that bites first); `fallback` (this shell's)
        when no such process published."""
        for row in self.variables:
            if row.variable == variable and row.by_kind.get(kind):
                return min(row.by_kind[kind]), f"the {kind}s'"
        return fallback, f"{self.here}'s"


def live_publications(publications: Iterable[Publication], live_workers: set[str],
                      live_schedulers: set[str]) -> list[Publication]:
    """The publications of processes still alive: a worker or scheduler only while RQ / rq-scheduler count it
    alive; any process on this host only while its PID exists (the others expire by themselves)."""
    here = socket.gethostname()
    live = []
    for publication in publications:
        if publication.kind == WORKER and publication.name not in live_workers:
            continue
        if publication.kind == SCHEDULER and publication.name not in live_schedulers:
            continue
        if publication.hostname == here and not process_alive(publication.pid):
            continue
        live.append(publication)
    return live


def compare_settings(publications: list[Publication], shell: Settings, here: str = SHELL) -> SettingsInEffect:
    """Every published variable with the value of each live process, this shell's and the default."""
    shell_values = published_values(shell)
    defaults = published_values(Settings())
    variables = []
    for variable, shell_value in shell_values.items():
        by_kind: dict[str, dict[Any, list[str]]] = {}
        for publication in publications:
            if variable in publication.values:
                holders = by_kind.setdefault(publication.kind, {})
                holders.setdefault(publication.values[variable], []).append(publication.name)
        variables.append(VariableInEffect(variable, defaults.get(variable), shell_value, by_kind))
    return SettingsInEffect(publications, variables, here)


def describe_values(row: VariableInEffect, here: str = SHELL) -> str:
    """`web 60 · worker 60 (w1), 100 (w2) · scheduler 60 · this shell 100 · default 100`."""
    parts = []
    for kind in PROCESS_KINDS:
        values = row.by_kind.get(kind)
        if not values:
            continue
        if len(values) == 1:
            parts.append(f"{kind} {next(iter(values))}")
        else:
            parts.append(f"{kind} " + ", ".join(f"{value} ({', '.join(names)})" for value, names in values.items()))
    parts += [f"{here} {row.shell}", f"default {row.default}"]
    return " · ".join(parts)
