"""`flask users ...` and `flask seed-demo`."""

from __future__ import annotations

from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import User


def test_users_create_with_password_then_list(runner):
    result = runner.invoke(args=["users", "create", "Ops@Example.com", "--role", "admin", "--password", "long enough pw"])
    assert result.exit_code == 0, result.output
    assert "Created admin ops@example.com" in result.output
    listing = runner.invoke(args=["users", "list"])
    assert "ops@example.com\tadmin\tactive" in listing.output


def test_users_create_prompts_for_the_password_when_omitted(runner):
    result = runner.invoke(args=["users", "create", "m@example.com"], input="long enough pw\nlong enough pw\n")
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "m@example.com"))
    assert user.role == "manager" and user.check_password("long enough pw")


def test_users_create_refuses_bad_input_with_a_reason(runner, make_user):
    make_user("taken@example.com")
    assert "already exists" in runner.invoke(args=["users", "create", "taken@example.com", "--password", "long enough pw"]).output
    assert "Invalid email address" in runner.invoke(args=["users", "create", "not-an-address", "--password", "long enough pw"]).output
    assert "at least 12 characters" in runner.invoke(args=["users", "create", "x@example.com", "--password", "short"]).output


def test_set_role_and_disable(runner, make_user):
    make_user("boss@example.com", role="admin")
    make_user("m@example.com")
    assert runner.invoke(args=["users", "set-role", "m@example.com", "admin"]).exit_code == 0
    assert runner.invoke(args=["users", "disable", "m@example.com"]).exit_code == 0
    user = db.session.scalar(select(User).where(User.email == "m@example.com"))
    db.session.refresh(user)
    assert user.role == "admin" and user.active is False


def test_the_last_active_admin_cannot_be_disabled_or_demoted(runner, make_user):
    make_user("only@example.com", role="admin")
    result = runner.invoke(args=["users", "disable", "only@example.com"])
    assert result.exit_code != 0 and "last active admin" in result.output
    result = runner.invoke(args=["users", "set-role", "only@example.com", "manager"])
    assert result.exit_code != 0 and "last active admin" in result.output


def test_seed_demo_creates_two_users_once_and_prints_their_passwords(runner, auth):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0
    assert "admin@example.com" in first.output and "manager@example.com" in first.output
    password = first.output.split("manager@example.com  password: ")[1].split()[0]
    assert auth.login("manager@example.com", password).status_code == 302
    second = runner.invoke(args=["seed-demo"])
    assert "already exist" in second.output
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 2


def test_seed_demo_saves_the_credentials_for_later_readable_by_the_owner_only(runner, tmp_path):
    path = tmp_path / "instance" / "demo-credentials.txt"
    result = runner.invoke(args=["seed-demo", "--write-to", str(path)])
    assert result.exit_code == 0 and f"Saved in {path}" in result.output
    saved = path.read_text(encoding="utf-8")
    assert saved.splitlines() == [line for line in result.output.splitlines() if "password: " in line]
    assert path.stat().st_mode & 0o077 == 0
