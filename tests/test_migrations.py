"""Migrations: up, down and up again on empty SQLite and PostgreSQL; no drift from the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from mailadmin import create_app
from mailadmin.extensions import db
from tests.support.databases import configured_database_url, is_postgres, scratch_database


def _kinds() -> list[str]:
    url = configured_database_url()
    return ["sqlite", "postgresql"] if url and is_postgres(url) else ["sqlite"]


def _columns(engine, table: str) -> dict:
    return {c["name"]: c for c in sa.inspect(engine).get_columns(table)}


@pytest.fixture(params=_kinds())
def empty_database(request, tmp_path, base_env):
    with scratch_database(request.param, tmp_path) as url:
        app = create_app({**base_env, "DATABASE_URL": url, "SETUP_LOGGING": False})
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database):
    upgrade()
    assert "campaign_queue" in sa.inspect(db.engine).get_table_names()
    downgrade(revision="base")
    assert sa.inspect(db.engine).get_table_names() in ([], ["alembic_version"])
    upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True}),
            db.metadata,
        )
    assert diff == []


def test_consecutive_transient_errors_arrives_in_its_own_migration_with_zero_for_existing_rows(empty_database):
    upgrade(revision="0001")
    assert "consecutive_transient_errors" not in _columns(db.engine, "campaign_queue")
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email, password_hash, role, active, created_at) "
                             "VALUES (1, 'a@example.com', 'x', 'admin', true, CURRENT_TIMESTAMP)"))
        conn.execute(sa.text(
            "INSERT INTO campaigns (id, owner_id, name, subject, body_text, status, finished_with_errors, "
            "recipients_total, sent_count, failed_count, skipped_count, unknown_count, created_at, updated_at) "
            "VALUES (1, 1, 'c', 's', 't', 'sending', false, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO campaign_queue (id, campaign_id, created_at, updated_at) "
                             "VALUES (1, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    upgrade(revision="0002")
    column = _columns(db.engine, "campaign_queue")["consecutive_transient_errors"]
    assert column["nullable"] is False
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT consecutive_transient_errors FROM campaign_queue")).scalar_one() == 0


def _revision_before(revision: str) -> str:
    """The revision a migration follows (its down_revision), as the migrations directory says."""
    from alembic.script import ScriptDirectory
    from flask import current_app

    config = current_app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config).get_revision(revision).down_revision


def test_recipient_positions_are_filled_in_id_order_per_campaign_by_migration_0006(empty_database):
    upgrade(revision=_revision_before("0006"))  # wherever the chain puts it
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email, password_hash, role, active, created_at) "
                             "VALUES (1, 'a@example.com', 'x', 'admin', true, CURRENT_TIMESTAMP)"))
        for campaign_id in (1, 2):
            conn.execute(sa.text(
                "INSERT INTO campaigns (id, owner_id, name, subject, body_text, status, finished_with_errors, "
                "recipients_total, sent_count, failed_count, skipped_count, unknown_count, created_at, updated_at) "
                f"VALUES ({campaign_id}, 1, 'c', 's', 't', 'draft', false, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"))
        for recipient_id, campaign_id in ((1, 1), (2, 2), (3, 1), (4, 2), (5, 1)):
            conn.execute(sa.text(
                "INSERT INTO recipients (id, campaign_id, email, status, attempts, updated_at) "
                f"VALUES ({recipient_id}, {campaign_id}, 'r{recipient_id}@example.com', 'pending', 0, CURRENT_TIMESTAMP)"))
    upgrade(revision="0006")
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, position, import_batch FROM recipients ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [(1, 1, None), (2, 1, None), (3, 2, None), (4, 2, None), (5, 3, None)]


def test_contacts_attributes_index_is_jsonb_path_ops_from_0014_and_back_to_jsonb_ops_below(empty_database):
    """0014 rebuilds the attributes' GIN index with jsonb_path_ops (PostgreSQL); its downgrade restores the
    default operator class, and a containment search finds the contact either way."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the GIN index exists on PostgreSQL only")

    def definition() -> str:
        with db.engine.connect() as conn:
            return conn.scalar(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_contacts_attributes'"))

    upgrade(revision="0013")
    assert "jsonb_path_ops" not in definition()
    upgrade()
    assert "jsonb_path_ops" in definition()
    with db.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO contacts (email, name, attributes, source, created_at, updated_at) "
                             "VALUES ('a@example.com', '', '{\"plan\": \"pro\"}', 'import', now(), now())"))
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.scalars(sa.text(
            "EXPLAIN SELECT email FROM contacts WHERE attributes @> '{\"plan\": \"pro\"}'")))
        found = conn.scalars(sa.text("SELECT email FROM contacts WHERE attributes @> '{\"plan\": \"pro\"}'")).all()
    assert "ix_contacts_attributes" in plan
    assert found == ["a@example.com"]
    downgrade(revision="0013")
    assert "jsonb_path_ops" not in definition()
