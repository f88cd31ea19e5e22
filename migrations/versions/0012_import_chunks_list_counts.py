"""An import's uploaded CSV and its rejected rows kept in the database (chunks of bytes), where the
web and worker processes both reach them; a list's members paged by (list_id, id); lists' member
counts kept per day by the writes (list_daily_counts), filled here from the memberships.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 01:15:00

"""
from alembic import op
import sqlalchemy as sa

from mailadmin.models.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

COUNTS = ('subscribed', 'unconfirmed', 'unsubscribed', 'joined')


def upgrade():
    op.create_table(
        'import_chunks',
        sa.Column('import_id', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('import_id', 'kind', 'seq'),
    )
    op.create_index('ix_import_chunks_created_at', 'import_chunks', ['created_at'])
    op.create_index('ix_list_memberships_list_id', 'list_memberships', ['list_id', 'id'])
    op.create_table(
        'list_daily_counts',
        sa.Column('list_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('list_id', 'day'),
    )
    postgresql = op.get_bind().dialect.name == 'postgresql'
    day = "(created_at AT TIME ZONE 'UTC')::date" if postgresql else "date(created_at)"
    op.execute(
        "INSERT INTO list_daily_counts (list_id, day, subscribed, unconfirmed, unsubscribed, joined) "
        f"SELECT list_id, {day}, sum(CASE WHEN status = 'subscribed' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'unconfirmed' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'unsubscribed' THEN 1 ELSE 0 END), count(*) "
        f"FROM list_memberships GROUP BY list_id, {day}"
    )


def downgrade():
    op.drop_table('list_daily_counts')
    op.drop_index('ix_list_memberships_list_id', table_name='list_memberships')
    op.drop_index('ix_import_chunks_created_at', table_name='import_chunks')
    op.drop_table('import_chunks')
