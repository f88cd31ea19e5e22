"""`flask --app wsgi tokens ...`: a user's personal API tokens, made, listed and revoked by an operator."""

from __future__ import annotations

import contextlib
import sys

import click
from flask.cli import AppGroup

from mailadmin.services import api_tokens
from mailadmin.services import users as user_service
from mailadmin.services.errors import ServiceError

tokens_cli = AppGroup("tokens", help="Manage users' API tokens (the REST API at /api/v1).")


def _user(email: str):
    try:
        return user_service.find_user(email)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the token is for (shown in the audit log).")
@click.option("--scopes", default="read", show_default=True, help="Comma-separated: read, write, send.")
@click.option("--expires-days", type=int, default=None, help="Days until it expires (default: never).")
def create_token_command(email: str, name: str, scopes: str, expires_days: int | None) -> None:
    """Create a token for the user EMAIL and print only the token (it is not stored, only its hash)."""
    # Its log records (the audit line) go to stderr: stdout carries the token alone, for TOKEN=$(...).
    with contextlib.redirect_stdout(sys.stderr):
        try:
            created = api_tokens.create_token(_user(email), name, scopes, expires_in_days=expires_days)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(created.secret)


@tokens_cli.command("list")
@click.argument("email")
def list_tokens_command(email: str) -> None:
    """List the user's tokens: id, prefix, name, scopes, created, last used, expires, state."""
    for token in api_tokens.tokens_of(_user(email)):
        state = api_tokens.token_state(token) or "active"
        click.echo("\t".join(str(value) for value in (
            token.id, token.prefix, token.name, token.scopes, token.created_at.isoformat(timespec="seconds"),
            token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never",
            token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never", state)))


@tokens_cli.command("revoke")
@click.argument("token_id", type=int)
def revoke_token_command(token_id: int) -> None:
    """Revoke the token TOKEN_ID at once."""
    try:
        token = api_tokens.find_token(token_id)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    changed = api_tokens.revoke_token(token, actor=None)
    click.echo(f"Token {token.id} ({token.name}) {'revoked' if changed else 'was already revoked'}.")
