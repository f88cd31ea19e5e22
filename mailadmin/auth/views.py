"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from loguru import logger
from sqlalchemy import func, select

from mailadmin.auth.decorators import login_required
from mailadmin.auth.forms import LoginForm
from mailadmin.extensions import db, get_redis, get_settings
from mailadmin.limits.throttle import (
    LOGIN_THROTTLED_MESSAGE,
    THROTTLE_BACKEND_UNAVAILABLE,
    UNAVAILABLE_MESSAGE,
    check_login_allowed,
    clear_login_failures,
    record_login_failure,
)
from mailadmin.models import User
from mailadmin.models.types import utcnow

bp = Blueprint("auth", __name__)

BAD_CREDENTIALS_MESSAGE = "Wrong email or password."


def safe_next_url(target: str | None) -> str | None:
    """`?next=` only to a local path: no scheme, no host, no protocol-relative `//evil`."""
    if not target:
        return None
    target = target.strip().replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("campaigns.index"))
    form = LoginForm()
    if form.validate_on_submit():
        settings = get_settings()
        email = form.email.data.strip().lower()
        ip = request.remote_addr or "unknown"
        allowed = check_login_allowed(
            get_redis(), email, ip, settings.throttle_login_per_account, settings.throttle_login_per_ip
        )
        if allowed.is_throttled:
            # Fail-closed: with Redis down nobody can log in, rather than anyone guessing freely.
            backend_down = allowed.reason == THROTTLE_BACKEND_UNAVAILABLE
            flash(UNAVAILABLE_MESSAGE if backend_down else LOGIN_THROTTLED_MESSAGE, "error")
            return render_template("auth/login.html", form=form), 503 if backend_down else 429
        user = db.session.scalar(select(User).where(func.lower(User.email) == email))
        if user is None or not user.check_password(form.password.data) or not user.active:
            record_login_failure(get_redis(), email, ip)
            logger.bind(ip=ip).warning("Login failed")
            flash(BAD_CREDENTIALS_MESSAGE, "error")
            return render_template("auth/login.html", form=form), 401
        clear_login_failures(get_redis(), email)
        login_user(user, remember=form.remember.data)
        user.last_login_at = utcnow()
        db.session.commit()
        logger.bind(user_id=user.id).info("Login succeeded")
        return redirect(safe_next_url(request.args.get("next")) or url_for("campaigns.index"))
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
