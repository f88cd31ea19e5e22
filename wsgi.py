"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

from mailadmin import create_app
from mailadmin.logging import report_startup_failure
from mailadmin.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One line naming the variable, not a traceback, is what an operator needs at start-up.
    raise SystemExit(report_startup_failure(f"mailadmin: configuration error: {exc}")) from None
