"""User management: create, change role, disable, passwords and sessions — with last-admin protection.

Sessions end by raising the user's `session_version` (part of every session's and remember
cookie's user id): logout, a password change or reset, an admin's "end sessions", disabling and
re-enabling all do it, so a copied cookie stops working everywhere at once.
"""

from __future__ import annotations

from functools import cache

from email_validator import EmailNotValidError, validate_email
from flask_babel import gettext
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models import user as user_model
from mailadmin.models.types import utcnow
from mailadmin.models.user import ROLE_ADMIN, ROLES
from mailadmin.services.api_tokens import revoke_all_tokens
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.passwords import password_problem, temporary_password
from mailadmin.services.transaction import in_transaction


class UserError(ServiceError):
    """A user-management request that cannot be carried out; `.message` says why."""


def normalise_login_email(email: str) -> str:
    """Syntax-check and lower-case an address used to log in."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise UserError(gettext("Invalid email address: %(problem)s", problem=exc)) from None


@in_transaction
def create_user(email: str, password: str, role: str, *, actor: User | None = None) -> User:
    """Create an active user; the email must be new and the password must pass the policy."""
    email = normalise_login_email(email)
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: expected one of {', '.join(ROLES)}")
    _check_policy(password)
    if db.session.scalar(select(User).where(func.lower(User.email) == email)):
        raise UserError(gettext("A user with the email %(email)s already exists", email=email), ErrorKind.CONFLICT)
    user = User(email=email, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    record_audit(actor, "user_created", details={"user_id": user.id, "role": role})
    return user


def find_user(email: str) -> User:
    """The user with this login email, or UserError."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise UserError(gettext("No user with the email %(email)s", email=email), ErrorKind.NOT_FOUND)
    return user


def _active_admins_other_than(user: User) -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.role == ROLE_ADMIN, User.active.is_(True), User.id != user.id)
    )


@in_transaction
def set_role(user: User, role: str, *, actor: User | None = None) -> User:
    """Change a user's role; the last active admin cannot stop being one."""
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if user.role == ROLE_ADMIN and role != ROLE_ADMIN and user.active and _active_admins_other_than(user) == 0:
        raise UserError(gettext("This is the last active admin: make another user admin first"), ErrorKind.CONFLICT)
    old = user.role
    user.role = role
    record_audit(actor, "user_role_changed", details={"user_id": user.id, "from": old, "to": role})
    return user


def _check_policy(password: str) -> None:
    if (problem := password_problem(password)) is not None:
        raise UserError(problem.rstrip("."))


def _end_sessions(user: User) -> None:
    user.session_version = (user.session_version or 1) + 1


def _end_sessions_and_tokens(user: User, actor: User | None) -> None:
    """Sessions ended on purpose end the user's API tokens too (a plain logout keeps them)."""
    _end_sessions(user)
    revoke_all_tokens(user, actor=actor)


@in_transaction
def set_active(user: User, active: bool, *, actor: User | None = None) -> User:
    """Disable or re-enable a user (ending their sessions); the last active admin cannot be disabled."""
    if not active and user.role == ROLE_ADMIN and user.active and _active_admins_other_than(user) == 0:
        raise UserError(gettext("This is the last active admin: it cannot be disabled"), ErrorKind.CONFLICT)
    user.active = active
    _end_sessions_and_tokens(user, actor)
    record_audit(actor, "user_enabled" if active else "user_disabled", details={"user_id": user.id})
    return user


def set_password(user: User, password: str, *, actor: User | None = None) -> User:
    """Replace a user's password (policy checked) and end their sessions."""
    _check_policy(password)
    _replace_password(user, password, temporary=False, actor=actor, action="user_password_changed")
    return user


def change_own_password(user: User, current: str, new: str) -> User:
    """A user replaces their own password: the current one first, then the policy."""
    if not user.check_password(current):
        raise UserError(gettext("The current password is not right"))
    if new == current:
        raise UserError(gettext("The new password must differ from the current one"))
    return set_password(user, new, actor=user)


def reset_password(user: User, *, actor: User) -> str:
    """An admin's reset: a random temporary password, to be changed at the next login; sessions end.

    Returns the temporary password, shown once to the admin and stored only as a hash.
    """
    password = temporary_password()
    _replace_password(user, password, temporary=True, actor=actor, action="user_password_reset")
    return password


@in_transaction
def _replace_password(user: User, password: str, *, temporary: bool, actor: User | None, action: str) -> None:
    """Store the new password's hash, end the user's sessions, audit it as `action`, commit once."""
    user.set_password(password)
    user.must_change_password = temporary
    _end_sessions_and_tokens(user, actor)
    record_audit(actor, action, details={"user_id": user.id})


@in_transaction
def end_sessions(user: User, *, actor: User | None = None) -> User:
    """End every session and remember cookie of `user` (logout everywhere), and every API token."""
    _end_sessions_and_tokens(user, actor)
    record_audit(actor, "user_sessions_ended", details={"user_id": user.id})
    return user


@in_transaction
def log_out(user: User) -> None:
    """Logout ends this user's sessions everywhere: a cookie copied before it is worthless after."""
    _end_sessions(user)


@in_transaction
def record_login(user: User) -> None:
    """Note the moment `user` logged in (the users page shows it)."""
    user.last_login_at = utcnow()


@cache
def _dummy_hash() -> str:
    # Same method and scrypt parameters as real hashes, so an unknown address costs the same work.
    return generate_password_hash("not a password of anybody", method=user_model.PASSWORD_HASH_METHOD)


def authenticate(email: str, password: str) -> User | None:
    """The active user with this login email and password, else None — in the same time either way."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    if not user.check_password(password) or not user.active:
        return None
    return user
