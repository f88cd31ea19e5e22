"""campaign_queue.consecutive_transient_errors: the circuit breaker's counter.

Arrives after the initial schema, as in the original mailer; existing rows get 0.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:20:39.041754

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consecutive_transient_errors', sa.Integer(), server_default='0', nullable=False))



def downgrade():
    with op.batch_alter_table('campaign_queue', schema=None) as batch_op:
        batch_op.drop_column('consecutive_transient_errors')

