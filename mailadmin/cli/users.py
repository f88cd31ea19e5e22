"""`flask --app wsgi users ...` (the people who may log in) and `flask --app wsgi seed-demo` (`make run`)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models.user import ROLE_ADMIN, ROLE_MANAGER, ROLES
from mailadmin.services import users as user_service

users_cli = AppGroup("users", help="Manage the people who may log in.")


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _change_user(email: str, change: Callable[[User], User]) -> User:
    """Apply a user service change to the user with `email`; a refusal becomes a CLI error."""
    try:
        return change(user_service.find_user(email))
    except user_service.UserError as exc:
        _fail(str(exc))


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), default=ROLE_MANAGER, show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Prompted when omitted.")
def create_user_command(email: str, role: str, password: str) -> None:
    """Create a user."""
    try:
        user = user_service.create_user(email, password, role)
    except user_service.UserError as exc:
        _fail(str(exc))
    click.echo(f"Created {user.role} {user.email} (id {user.id})")


@users_cli.command("list")
def list_users_command() -> None:
    """List users with their role and state."""
    for user in db.session.scalars(select(User).order_by(User.id)):
        state = "active" if user.active else "disabled"
        click.echo(f"{user.id}\t{user.email}\t{user.role}\t{state}")


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(ROLES))
def set_role_command(email: str, role: str) -> None:
    """Change a user's role."""
    user = _change_user(email, lambda found: user_service.set_role(found, role))
    click.echo(f"{user.email} is now {user.role}")


@users_cli.command("disable")
@click.argument("email")
def disable_user_command(email: str) -> None:
    """Disable a user (they can no longer log in)."""
    user = _change_user(email, lambda found: user_service.set_active(found, False))
    click.echo(f"{user.email} is disabled")


@users_cli.command("enable")
@click.argument("email")
def enable_user_command(email: str) -> None:
    """Re-enable a disabled user."""
    user = _change_user(email, lambda found: user_service.set_active(found, True))
    click.echo(f"{user.email} is enabled")


@users_cli.command("set-password")
@click.argument("email")
@click.option("--password", help="Prompted (twice, hidden) when omitted: keep passwords out of shell history.")
def set_password_command(email: str, password: str | None) -> None:
    """Set a user's password (same policy as the password page) and end their sessions."""
    try:
        user = user_service.find_user(email)
        if password is None:
            password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
        user_service.set_password(user, password)
    except user_service.UserError as exc:
        _fail(str(exc))
    click.echo(f"Password of {user.email} changed; their sessions have ended")


@users_cli.command("end-sessions")
@click.argument("email")
def end_sessions_command(email: str) -> None:
    """Log a user out everywhere (every session and remember cookie)."""
    try:
        user = user_service.end_sessions(user_service.find_user(email))
    except user_service.UserError as exc:
        _fail(str(exc))
    click.echo(f"Every session of {user.email} has ended")


@click.command("seed-demo")
@click.option(
    "--write-to",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also save the new credentials in this file (readable by its owner only), for later.",
)
def seed_demo_command(write_to: str | None) -> None:
    """Create a demo admin and a demo manager when no user exists; print their credentials (and save them)."""
    if db.session.scalar(select(func.count()).select_from(User)):
        click.echo("Users already exist; demo accounts not created.")
        return
    lines = []
    for email, role in (("admin@example.com", ROLE_ADMIN), ("manager@example.com", ROLE_MANAGER)):
        password = secrets.token_urlsafe(12)
        user_service.create_user(email, password, role)
        lines.append(f"  {role:8} {email}  password: {password}")
    click.echo("\n".join(lines))
    if write_to:
        path = Path(write_to)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
        click.echo(f"Saved in {path}; they are also printed again when the app is ready.")
    else:
        click.echo("Write these down: they are shown only once.")
