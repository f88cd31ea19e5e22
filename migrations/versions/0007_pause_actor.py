"""campaign_queue.paused_by_id, paused_at and pause_detail: who paused a campaign, when, and an
optional detail the pages show with the reason ("Paused by admin@example.com, 19:05").

Campaigns already paused keep no actor and no time: the page reads "Paused by a person" for
them, as before; the audit log still names who did it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pause_detail', sa.String(length=300), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_campaign_queue_paused_by_id_users'), 'users', ['paused_by_id'], ['id'], ondelete='SET NULL'
        )


def downgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_campaign_queue_paused_by_id_users'), type_='foreignkey')
        batch_op.drop_column('pause_detail')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('paused_by_id')
