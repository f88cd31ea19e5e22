"""users.session_version and users.must_change_password: sessions that can be ended, temporary passwords.

`session_version` is part of every session's user id and remember cookie; raising it (logout,
password change, an admin's "end sessions", disable/enable) ends them all at once. Existing rows
get 1 (their sessions, which carry no version, end once: everybody logs in again).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
        batch_op.drop_column('session_version')
