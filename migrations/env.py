"""Alembic environment, run through Flask-Migrate (`flask --app wsgi db upgrade`).

Logging is left to the app (loguru), so alembic.ini's logging sections are not applied.
"""

from alembic import context
from flask import current_app

from mailadmin.models.types import UTCDateTime

config = context.config
target_db = current_app.extensions["migrate"].db


def render_item(type_, obj, autogen_context):
    """Write UTCDateTime as a plain timezone-aware DateTime so migrations never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    engine = target_db.engine
    with engine.connect() as connection:
        options = {
            **current_app.extensions["migrate"].configure_args,
            "compare_type": True,
            "compare_server_default": True,
            "render_item": render_item,
            # SQLite can only ALTER a table by copying it; batch mode does that for us.
            "render_as_batch": connection.dialect.name == "sqlite",
        }
        context.configure(connection=connection, target_metadata=target_db.metadata, **options)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run `flask --app wsgi db upgrade`.")
run_migrations()
