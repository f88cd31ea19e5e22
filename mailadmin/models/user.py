"""Users of the admin app: managers and admins."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from mailadmin.extensions import db
from mailadmin.models.types import UTCDateTime, utcnow

ROLE_MANAGER = "manager"
ROLE_ADMIN = "admin"
ROLES = (ROLE_MANAGER, ROLE_ADMIN)

# werkzeug's scrypt (N=2**15, r=8, p=1): about 0.15 s of CPU a hash, on purpose. Only the test
# suite lowers it (tests/conftest.py), so that hundreds of logins do not cost minutes.
PASSWORD_HASH_METHOD = "scrypt"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=ROLE_MANAGER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every session's user id and remember cookie: raising it ends them all at once.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Set by an admin's password reset: the temporary password must be replaced at the next login.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The language chosen on the account page ("en", "ru"); None follows the browser (mailadmin/i18n.py).
    language: Mapped[str | None] = mapped_column(String(8))

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users at login and on each request
        return self.active

    def get_id(self) -> str:
        """Flask-Login's id of this user's sessions and remember cookies: "{id}:{session_version}"."""
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=PASSWORD_HASH_METHOD)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"
