"""Events out: endpoints, the outbox of events and their deliveries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 01:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'event_endpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('secret', sa.String(length=100), nullable=False),
        sa.Column('previous_secret', sa.String(length=100), nullable=True),
        sa.Column('previous_secret_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('disabled_reason', sa.String(length=500), nullable=True),
        sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_event_endpoints'),
    )
    op.create_table(
        'outbox_events',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('public_id', sa.String(length=40), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_outbox_events'),
        sa.UniqueConstraint('public_id', name='uq_outbox_events_public_id'),
    )
    op.create_index('ix_outbox_events_created_at', 'outbox_events', ['created_at'])
    op.create_table(
        'event_deliveries',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('event_id', BIG_ID, nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('ordering_key', sa.String(length=40), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_response_ms', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=300), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['outbox_events.id'], name='fk_event_deliveries_event_id_outbox_events',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['endpoint_id'], ['event_endpoints.id'],
                                name='fk_event_deliveries_endpoint_id_event_endpoints', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name='pk_event_deliveries'),
    )
    op.create_index('ix_event_deliveries_event_id', 'event_deliveries', ['event_id'])
    op.create_index('ix_event_deliveries_due', 'event_deliveries', ['status', 'id'])
    op.create_index('ix_event_deliveries_endpoint', 'event_deliveries', ['endpoint_id', 'id'])
    op.create_index('ix_event_deliveries_ordering', 'event_deliveries', ['endpoint_id', 'ordering_key', 'status'])


def downgrade():
    op.drop_table('event_deliveries')
    op.drop_index('ix_outbox_events_created_at', table_name='outbox_events')
    op.drop_table('outbox_events')
    op.drop_table('event_endpoints')
