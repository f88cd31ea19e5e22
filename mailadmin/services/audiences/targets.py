"""A campaign's audience: the lists and segments it sends to (or leaves out), resolved once at start.

A draft names targets (`campaign_targets`); `resolve_campaign_audience`, called by `start_campaign`
inside its one transaction, turns them into the campaign's recipients: each contact once, however
many targets match it; only contacts subscribed to an included list (or, for a segment, to some
list), never a suppressed address, never one excluded. The recipient carries the contact's name and
attributes as its merge fields. From then on the engine works on recipients as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask_babel import gettext
from sqlalchemy import JSON, ColumnElement, and_, cast, delete, exists, false, func, insert, literal, not_, or_, select

from mailadmin.extensions import db, get_settings
from mailadmin.models import Campaign, User
from mailadmin.models.audience import CampaignTarget, Contact, ListMembership, MembershipStatus, Segment
from mailadmin.models.campaign import DRAFT, R_PENDING, Recipient
from mailadmin.models.suppression import Suppression
from mailadmin.models.types import UTCDateTime, utcnow
from mailadmin.services.audiences.bounds import MAX_TARGETS
from mailadmin.services.audiences.memberships import AudienceError
from mailadmin.services.audiences.segment_filter import SegmentFilterError, compile_filter
from mailadmin.services.audiences.segments import checked_filter, may_use_list
from mailadmin.services.errors import ErrorKind
from mailadmin.services.ownership import find_visible
from mailadmin.services.transaction import transaction

MSG_NOT_DRAFT = "Only a draft's audience can be changed."
MSG_TOO_LARGE = ("The audience is too large (more than {maximum} recipients). Maximum: {maximum}. "
                 "Narrow it or split it into several campaigns.")


@dataclass
class Targets:
    """The lists and segments a campaign sends to and the ones it leaves out (ids)."""

    lists: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    exclude_lists: list[int] = field(default_factory=list)
    exclude_segments: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.lists or self.segments)


def campaign_targets(campaign_id: int) -> Targets:
    """The campaign's targets as stored (empty: a one-off campaign with its own recipients)."""
    targets = Targets()
    for row in db.session.scalars(select(CampaignTarget).where(CampaignTarget.campaign_id == campaign_id)
                                  .order_by(CampaignTarget.id)):
        if row.list_id is not None:
            (targets.exclude_lists if row.exclude else targets.lists).append(row.list_id)
        else:
            (targets.exclude_segments if row.exclude else targets.segments).append(row.segment_id)
    return targets


def _check_targets(targets: Targets, user: User) -> None:
    if len(targets.lists + targets.segments + targets.exclude_lists + targets.exclude_segments) > MAX_TARGETS:
        raise AudienceError(f"A campaign names at most {MAX_TARGETS} lists and segments.")
    for list_id in targets.lists + targets.exclude_lists:
        if not may_use_list(user, list_id):
            raise AudienceError(gettext("That list does not exist or you may not use it."), ErrorKind.NOT_FOUND)
    for segment_id in targets.segments + targets.exclude_segments:
        if find_visible(user, Segment, segment_id) is None:
            raise AudienceError(gettext("That segment does not exist or you may not use it."), ErrorKind.NOT_FOUND)


def set_campaign_targets(campaign: Campaign, user: User, targets: Targets) -> None:
    """Replace a draft's targets (each list or segment checked against what `user` may use)."""
    with transaction():
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id).with_for_update())
        if status != DRAFT:
            raise AudienceError(MSG_NOT_DRAFT, ErrorKind.CONFLICT)
        _check_targets(targets, user)
        db.session.execute(delete(CampaignTarget).where(CampaignTarget.campaign_id == campaign.id))
        rows = [(list_id, None, False) for list_id in dict.fromkeys(targets.lists)]
        rows += [(None, segment_id, False) for segment_id in dict.fromkeys(targets.segments)]
        rows += [(list_id, None, True) for list_id in dict.fromkeys(targets.exclude_lists)]
        rows += [(None, segment_id, True) for segment_id in dict.fromkeys(targets.exclude_segments)]
        db.session.add_all(CampaignTarget(campaign_id=campaign.id, list_id=list_id, segment_id=segment_id,
                                          exclude=exclude) for list_id, segment_id, exclude in rows)


def _subscribed_to(list_ids: list[int] | None) -> ColumnElement[bool]:
    """The contact is subscribed to one of `list_ids` (None: to any list)."""
    where = [ListMembership.contact_id == Contact.id, ListMembership.status == MembershipStatus.SUBSCRIBED.value]
    if list_ids is not None:
        where.append(ListMembership.list_id.in_(list_ids))
    return exists().where(*where)


def _segment_condition(segment_id: int, owner: User) -> ColumnElement[bool]:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        return false()
    try:
        return compile_filter(checked_filter(segment.filter, owner))
    except SegmentFilterError as exc:
        raise AudienceError(f"Segment {segment.name!r}: {exc.message}") from None


def audience_condition(targets: Targets, owner: User) -> ColumnElement[bool]:
    """The condition on contacts of the audience `targets` describe, for a campaign of `owner`."""
    included = []
    if targets.lists:
        included.append(_subscribed_to(targets.lists))
    for segment_id in targets.segments:
        included.append(and_(_subscribed_to(None), _segment_condition(segment_id, owner)))
    left_out = [exists().where(Suppression.email == Contact.email)]
    if targets.exclude_lists:
        left_out.append(_subscribed_to(targets.exclude_lists))
    left_out += [_segment_condition(segment_id, owner) for segment_id in targets.exclude_segments]
    return and_(or_(*included) if included else false(), not_(or_(*left_out)))


def _new_to_campaign(campaign_id: int) -> ColumnElement[bool]:
    # A one-off campaign may also have imported recipients: an address already there stays as it is.
    return not_(exists().where(Recipient.campaign_id == campaign_id, Recipient.email == Contact.email))


def resolved_count(campaign: Campaign) -> int | None:
    """How many recipients the campaign's targets resolve to now (None: it has no targets)."""
    targets = campaign_targets(campaign.id)
    if targets.empty:
        return None
    condition = and_(audience_condition(targets, campaign.owner), _new_to_campaign(campaign.id))
    return int(db.session.scalar(select(func.count()).select_from(Contact).where(condition)))


def resolve_campaign_audience(campaign: Campaign) -> int:
    """At start, in the caller's transaction: add the audience of the campaign's targets as its pending
    recipients (nothing when it has none); the number added. Refuses an audience over the size cap."""
    targets = campaign_targets(campaign.id)
    if targets.empty:
        return 0
    status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id).with_for_update())
    if status != DRAFT:
        return 0  # the start itself refuses it
    condition = and_(audience_condition(targets, campaign.owner), _new_to_campaign(campaign.id))
    existing, last = db.session.execute(
        select(func.count(), func.coalesce(func.max(Recipient.position), 0)).where(Recipient.campaign_id == campaign.id)
    ).one()
    maximum = get_settings().max_campaign_recipients
    # One pass: at most one more than the cap allows is inserted; more than the cap refuses the start
    # (the caller rolls the rows back with it), so a huge audience is never written whole.
    added = _insert_audience(campaign.id, condition, int(last), max(0, maximum - existing) + 1, int(existing))
    if existing + added > maximum:
        raise AudienceError(MSG_TOO_LARGE.format(maximum=maximum), ErrorKind.TOO_LARGE)
    return added


@contextmanager
def audience_resolved_for_start(campaign: Campaign) -> Iterator[int]:
    """Resolve the campaign's audience (see `resolve_campaign_audience`) for the start checks inside the
    block, in the caller's transaction: a refused start rolls the new recipients back with it."""
    yield resolve_campaign_audience(campaign)


def _insert_audience(campaign_id: int, condition: ColumnElement[bool], last_position: int, limit: int,
                     existing: int) -> int:
    """One INSERT ... SELECT: the matching contacts as pending recipients, numbered after the last one."""
    attributes = cast(Contact.attributes, JSON) if db.session.get_bind().dialect.name == "postgresql" else (
        Contact.attributes)
    chosen = select(
        literal(campaign_id), Contact.email, Contact.name, attributes, literal(R_PENDING), literal(0),
        literal(0), literal(utcnow(), UTCDateTime), func.row_number().over(order_by=Contact.id) + last_position,
    ).where(condition).order_by(Contact.id).limit(limit)
    columns = ["campaign_id", "email", "name", "fields", "status", "attempts", "soft_bounce_count", "updated_at",
               "position"]
    db.session.execute(insert(Recipient).from_select(columns, chosen))
    # Counted again rather than trusting the driver's rowcount for an INSERT ... SELECT.
    total = db.session.scalar(select(func.count()).where(Recipient.campaign_id == campaign_id))
    return int(total) - existing
