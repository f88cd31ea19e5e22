"""recipients.import_batch and recipients.position: which import added a recipient (so that a
draft's last import can be undone) and its place in the campaign (the "#" the pages show).

Existing recipients get no import batch (imported before imports were numbered: "undo the last
import" only ever removes a numbered batch) and their position in id order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_batch', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('position', sa.Integer(), nullable=True))
    # UPDATE ... FROM with a window function: PostgreSQL and SQLite 3.33+ alike.
    op.execute(
        "UPDATE recipients SET position = numbered.place FROM ("
        "SELECT id, row_number() OVER (PARTITION BY campaign_id ORDER BY id) AS place FROM recipients"
        ") AS numbered WHERE recipients.id = numbered.id"
    )


def downgrade():
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.drop_column('position')
        batch_op.drop_column('import_batch')
