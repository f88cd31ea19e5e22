"""Every `flask --app wsgi ...` command group, registered from one list.

A newcomer finds every command here: `COMMANDS` names each group or command and the module
that defines it; `init_app(app)` (called from `create_app`) registers them all.
"""

from __future__ import annotations

import click
from flask import Flask

from mailadmin.cli.campaigns import campaigns_cli, sending_cli
from mailadmin.cli.doctor import doctor_command
from mailadmin.cli.jobs import jobs_cli
from mailadmin.cli.scheduler import scheduler_command
from mailadmin.cli.tokens import tokens_cli
from mailadmin.cli.users import seed_demo_command, users_cli

COMMANDS: tuple[click.Command, ...] = (
    users_cli,  # flask users create|list|set-role|disable|enable
    seed_demo_command,  # flask seed-demo (make run)
    doctor_command,  # flask doctor: the 60-second diagnosis
    campaigns_cli,  # flask campaigns list|show|pause|resume|cancel|requeue-unknown
    sending_cli,  # flask sending status|off|on: the global sending switch
    jobs_cli,  # flask jobs failed|clear-failed
    scheduler_command,  # flask scheduler: the scheduler process (Procfile)
    tokens_cli,  # flask tokens create|list|revoke: users' API tokens
)


def init_app(app: Flask) -> None:
    """Register every command group of `COMMANDS` on the app's `flask` CLI."""
    for command in COMMANDS:
        app.cli.add_command(command)
