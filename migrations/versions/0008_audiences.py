"""Audiences: contacts, lists, list memberships with their history, segments and campaign targets.

Attributes are JSONB with a GIN index on PostgreSQL (attribute conditions of segments), JSON (JSON1)
on SQLite. Memberships are unique per list and contact; (list_id, status, contact_id) serves the
list pages' counts and the resolution of a campaign's audience.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

import mailadmin.models.types


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ATTRIBUTES = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    op.create_table(
        'contacts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('attributes', ATTRIBUTES, nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('created_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('email'),
    )
    op.create_index('ix_contacts_attributes', 'contacts', ['attributes'], unique=False, postgresql_using='gin')
    op.create_index('ix_contacts_created_at', 'contacts', ['created_at'], unique=False)
    op.create_index('ix_contacts_updated_at', 'contacts', ['updated_at'], unique=False)

    op.create_table(
        'lists',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('opt_in', sa.String(length=8), nullable=False),
        sa.Column('shared', sa.Boolean(), nullable=False),
        sa.Column('created_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint("opt_in IN ('single', 'double')", name='ck_lists_opt_in'),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_lists_owner_id', 'lists', ['owner_id'], unique=False)

    op.create_table(
        'list_memberships',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('list_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('created_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.Column('status_changed_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('list_id', 'contact_id', name='uq_list_memberships_list_contact'),
    )
    op.create_index('ix_list_memberships_contact', 'list_memberships', ['contact_id'], unique=False)
    op.create_index('ix_list_memberships_list_status', 'list_memberships', ['list_id', 'status', 'contact_id'],
                    unique=False)

    op.create_table(
        'membership_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('membership_id', sa.Integer(), nullable=False),
        sa.Column('from_status', sa.String(length=16), nullable=True),
        sa.Column('to_status', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('created_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['membership_id'], ['list_memberships.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_membership_changes_membership', 'membership_changes', ['membership_id', 'id'], unique=False)

    op.create_table(
        'segments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=True),
        sa.Column('filter', sa.JSON(), nullable=False),
        sa.Column('created_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.Column('updated_at', mailadmin.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_segments_owner_id', 'segments', ['owner_id'], unique=False)

    op.create_table(
        'campaign_targets',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('list_id', sa.Integer(), nullable=True),
        sa.Column('segment_id', sa.Integer(), nullable=True),
        sa.Column('exclude', sa.Boolean(), nullable=False),
        sa.CheckConstraint('(list_id IS NULL) <> (segment_id IS NULL)', name='ck_campaign_targets_one_kind'),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_campaign_targets_campaign', 'campaign_targets', ['campaign_id'], unique=False)
    op.create_index('ix_campaign_targets_list', 'campaign_targets', ['list_id'], unique=False)
    op.create_index('ix_campaign_targets_segment', 'campaign_targets', ['segment_id'], unique=False)


def downgrade():
    op.drop_table('campaign_targets')
    op.drop_table('segments')
    op.drop_table('membership_changes')
    op.drop_table('list_memberships')
    op.drop_table('lists')
    op.drop_table('contacts')
