"""Django settings for the django-post-office baseline (`bench/post_office_baseline.py`): the smallest
project that runs post_office — its app, a database, its email backend over Django's SMTP backend.

Everything that varies comes from the environment the baseline sets before `django.setup()`:
POST_OFFICE_DATABASE_URL (a `postgresql://` or `sqlite:///` URL), POST_OFFICE_SMTP_HOST / _PORT
and POST_OFFICE_THREADS.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = "bench-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]


def _database(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path.lstrip("/") and "/" + parts.path.lstrip("/")}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or "postgres"),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


DATABASES = {"default": _database(os.environ["POST_OFFICE_DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = os.environ.get("POST_OFFICE_SMTP_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("POST_OFFICE_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 30
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "THREADS_PER_PROCESS": int(os.environ.get("POST_OFFICE_THREADS", "5")),
    "BATCH_SIZE": 1_000_000,  # one `send_queued` takes every queued mail
    "LOG_LEVEL": 0,  # no log row per mail (the least work post_office can do)
}
LOGGING_CONFIG = None
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
