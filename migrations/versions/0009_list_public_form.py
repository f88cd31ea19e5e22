"""A list's public subscription form: whether it is published, and its random public id.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 22:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('lists') as batch_op:
        batch_op.add_column(sa.Column('form_published', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('public_id', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint('uq_lists_public_id', ['public_id'])


def downgrade():
    with op.batch_alter_table('lists') as batch_op:
        batch_op.drop_constraint('uq_lists_public_id', type_='unique')
        batch_op.drop_column('public_id')
        batch_op.drop_column('form_published')
