"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import os
import sys

from mailadmin import create_app
from mailadmin.logging import report_startup_failure
from mailadmin.queue.outages import set_process_name
from mailadmin.settings import SettingsError

# Outage records name the process: a `flask` command other than `run` is the CLI (the scheduler
# command renames itself), anything else serving this module is the web process.
_flask_command = "flask" in os.path.basename(sys.argv[0]) or sys.argv[0].endswith(os.path.join("flask", "__main__.py"))
set_process_name("cli" if _flask_command and "run" not in sys.argv[1:] else "web")

try:
    app = create_app()
except SettingsError as exc:
    # One line per bad variable, not a traceback, is what an operator needs at start-up.
    raise SystemExit(report_startup_failure([f"mailadmin: configuration error: {line}" for line in exc.problems])) from None
