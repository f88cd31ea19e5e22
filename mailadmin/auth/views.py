"""Login, logout and password pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, login_user, logout_user
from loguru import logger

from mailadmin.auth.decorators import login_required
from mailadmin.auth.forms import ChangePasswordForm, LoginForm, submit_user_form, user_form_page
from mailadmin.extensions import get_redis, get_settings
from mailadmin.i18n import N_
from mailadmin.limits.throttle import (
    LOGIN_THROTTLED_MESSAGE,
    THROTTLE_BACKEND_UNAVAILABLE,
    UNAVAILABLE_MESSAGE,
    LoginLimits,
    check_login_allowed,
    clear_login_failures,
    record_login_failure,
)
from mailadmin.models import User
from mailadmin.services import users as user_service

bp = Blueprint("auth", __name__)

BAD_CREDENTIALS_MESSAGE = N_("Wrong email or password.")


def safe_next_url(target: str | None) -> str | None:
    """`?next=` only to a local path: no scheme, no host, no protocol-relative `//evil`."""
    if not target:
        return None
    target = target.strip().replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _client_ip() -> str:
    """The real client address: ProxyFix has already applied TRUSTED_PROXIES."""
    return request.remote_addr or "unknown"


def _login_limits() -> LoginLimits:
    settings = get_settings()
    return LoginLimits(
        settings.throttle_login_per_account_ip, settings.throttle_login_per_account, settings.throttle_login_per_ip
    )


def _throttled_login_page(form: LoginForm, reason: str | None):
    # Fail-closed: with Redis down nobody can log in, rather than anyone guessing freely.
    backend_down = reason == THROTTLE_BACKEND_UNAVAILABLE
    flash(gettext(UNAVAILABLE_MESSAGE if backend_down else LOGIN_THROTTLED_MESSAGE), "error")
    return render_template("auth/login.html", form=form), 503 if backend_down else 429


def _start_session(user: User, remember: bool) -> None:
    """A fresh session for `user`: nothing from before the login (CSRF token included) carries over."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)  # Flask-WTF's per-request copy
    login_user(user, remember=remember)
    user_service.record_login(user)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("campaigns.index"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    salt, ip = get_settings().log_hash_salt, _client_ip()
    email = form.email.data.strip().lower()
    allowed = check_login_allowed(get_redis(), email, ip, _login_limits(), salt)
    if allowed.is_throttled:
        return _throttled_login_page(form, allowed.reason)
    # Unknown accounts cost the same password-hash work as wrong passwords: no enumeration by timing.
    user = user_service.authenticate(email, form.password.data)
    if user is None:
        record_login_failure(get_redis(), email, ip, salt)
        logger.bind(ip=ip).warning("Login failed")
        flash(gettext(BAD_CREDENTIALS_MESSAGE), "error")
        return render_template("auth/login.html", form=form), 401
    clear_login_failures(get_redis(), email, ip, salt)
    _start_session(user, form.remember.data)
    logger.bind(user_id=user.id).info("Login succeeded")
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(safe_next_url(request.args.get("next")) or url_for("campaigns.index"))


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out everywhere: every session and remember cookie of this user ends."""
    user_service.log_out(current_user)
    logout_user()
    flash(gettext("You have been logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Every user changes their own password here; other sessions end, this one goes on."""
    form = ChangePasswordForm()
    user = current_user._get_current_object()
    done, _, problem = submit_user_form(
        form, lambda: user_service.change_own_password(user, form.current_password.data, form.new_password.data)
    )
    if done:
        remembered = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
        _start_session(user, remember=remembered)
        flash(gettext("Password changed. Your other sessions have been logged out."), "success")
        return redirect(url_for("campaigns.index"), code=303)
    return user_form_page("auth/password.html", form, problem)
