"""An import's uploaded CSV and its rejected rows kept in the database (chunks of bytes), where the
web and worker processes both reach them; a list's members paged by (list_id, id).

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-08 01:15:00

"""
from alembic import op
import sqlalchemy as sa

from mailadmin.models.types import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0009'
branch_labels = None
depends_on = None


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


def downgrade():
    op.drop_index('ix_list_memberships_list_id', table_name='list_memberships')
    op.drop_index('ix_import_chunks_created_at', table_name='import_chunks')
    op.drop_table('import_chunks')
