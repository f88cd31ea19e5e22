"""Bounces and complaints: campaign/recipient counters, suppression source and note, bounce reports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:50:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounced_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('complained_count', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('soft_bounce_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_recipients_email', ['email'], unique=False)
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('note', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_suppressions_created_at'), ['created_at'], unique=False)
    op.create_table(
        'bounce_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_key', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('email_hash', sa.String(length=64), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('recipient_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('status_code', sa.String(length=16), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_bounce_events_campaign_id_campaigns'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['recipient_id'], ['recipients.id'],
                                name=op.f('fk_bounce_events_recipient_id_recipients'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_events')),
        sa.UniqueConstraint('event_key', name=op.f('uq_bounce_events_event_key')),
    )
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bounce_events_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index('ix_bounce_events_email_hash_kind', ['email_hash', 'kind', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.drop_index('ix_bounce_events_email_hash_kind')
        batch_op.drop_index(batch_op.f('ix_bounce_events_campaign_id'))
    op.drop_table('bounce_events')
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suppressions_created_at'))
        batch_op.drop_column('note')
        batch_op.drop_column('source')
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_recipients_email')
        batch_op.drop_column('soft_bounce_count')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('complained_count')
        batch_op.drop_column('bounced_count')
