"""User management: create, change role, disable — with last-admin protection."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models.user import ROLE_ADMIN, ROLES
from mailadmin.services.audit import record_audit

MIN_PASSWORD_LENGTH = 10


class UserError(ValueError):
    """A user-management request that cannot be carried out; the message says why."""


def normalise_login_email(email: str) -> str:
    """Syntax-check and lower-case an address used to log in."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise UserError(f"Invalid email address: {exc}") from None


def create_user(email: str, password: str, role: str, *, actor: User | None = None) -> User:
    """Create an active user; the email must be new and the password at least 10 characters."""
    email = normalise_login_email(email)
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if db.session.scalar(select(User).where(func.lower(User.email) == email)):
        raise UserError(f"A user with the email {email} already exists")
    user = User(email=email, role=role, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    record_audit(actor, "user_created", details={"user_id": user.id, "role": role})
    db.session.commit()
    return user


def find_user(email: str) -> User:
    """The user with this login email, or UserError."""
    user = db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    if user is None:
        raise UserError(f"No user with the email {email}")
    return user


def _active_admins_other_than(user: User) -> int:
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.role == ROLE_ADMIN, User.active.is_(True), User.id != user.id)
    )


def set_role(user: User, role: str, *, actor: User | None = None) -> User:
    """Change a user's role; the last active admin cannot stop being one."""
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if user.role == ROLE_ADMIN and role != ROLE_ADMIN and user.active and _active_admins_other_than(user) == 0:
        raise UserError("This is the last active admin: make another user admin first")
    old = user.role
    user.role = role
    record_audit(actor, "user_role_changed", details={"user_id": user.id, "from": old, "to": role})
    db.session.commit()
    return user


def set_active(user: User, active: bool, *, actor: User | None = None) -> User:
    """Disable or re-enable a user; the last active admin cannot be disabled."""
    if not active and user.role == ROLE_ADMIN and user.active and _active_admins_other_than(user) == 0:
        raise UserError("This is the last active admin: it cannot be disabled")
    user.active = active
    record_audit(actor, "user_enabled" if active else "user_disabled", details={"user_id": user.id})
    db.session.commit()
    return user


def set_password(user: User, password: str, *, actor: User | None = None) -> User:
    """Replace a user's password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long")
    user.set_password(password)
    record_audit(actor, "user_password_changed", details={"user_id": user.id})
    db.session.commit()
    return user
