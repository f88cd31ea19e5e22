"""Admin pages."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from mailadmin.auth.decorators import admin_required
from mailadmin.extensions import db
from mailadmin.models import User

bp = Blueprint("admin", __name__)


@bp.route("/users")
@admin_required
def users():
    all_users = db.session.scalars(select(User).order_by(User.id)).all()
    return render_template("admin/users.html", users=all_users)
