"""Drop campaign_queue.scheduled_job_id: a continuation's job id is always `campaign-<id>-continuation`.

`mailadmin.queue.dispatch.continuation_job_id(campaign_id)` derives it; the stored copy could only
drift. The downgrade re-adds the column empty (and nullable, as it was).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:55:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.drop_column('scheduled_job_id')


def downgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheduled_job_id', sa.String(length=64), nullable=True))
