"""recipients.import_batch: which import added a recipient, so that a draft's last import can be undone.

Existing recipients get NULL (imported before imports were numbered): "undo the last import"
only ever removes a numbered batch.

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-02 01:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_batch', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.drop_column('import_batch')
