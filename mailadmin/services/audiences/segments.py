"""Segments: saved filters over contacts — save, change, delete, and how many contacts match (with a sample).

The filter's rules and its compilation to SQL are in `segment_filter`; this module adds who may do
what: a manager sees and changes their own segments (an admin every one), and a filter may only
name lists its author may use.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext
from sqlalchemy import Select, func, or_, select

from mailadmin.extensions import db
from mailadmin.models import User
from mailadmin.models.audience import Contact, MailingList, Segment
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.bounds import NAME_MAX, SAMPLE_SIZE
from mailadmin.services.audiences.memberships import AudienceError, required_text
from mailadmin.services.audiences.segment_filter import (
    MAX_CONDITIONS,
    SegmentFilterError,
    compile_filter,
    validate_filter,
)
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind
from mailadmin.services.ownership import find_visible, visible_to
from mailadmin.services.transaction import transaction

__all__ = ["MAX_CONDITIONS", "SegmentFilterError", "count_matching", "sample_matching", "save_segment"]


def usable_lists(user: User) -> Select:
    """SELECT of the lists `user` may target: their own, shared ones, every one for an admin.
    (The smallest form of the audience access rule, until `services.audiences.access` holds it.)"""
    query = select(MailingList)
    if not user.is_admin:
        query = query.where(or_(MailingList.owner_id == user.id, MailingList.shared.is_(True)))
    return query


def may_use_list(user: User, list_id: int) -> bool:
    """Whether `user` may name this list in a segment or as a campaign's target."""
    query = usable_lists(user).where(MailingList.id == list_id).with_only_columns(MailingList.id)
    return db.session.scalar(query) is not None


def checked_filter(raw: object, user: User) -> dict:
    """The filter in its stored form if `user` may use it; SegmentFilterError names the wrong condition."""
    return validate_filter(raw, lambda list_id: may_use_list(user, list_id))


def count_matching(raw: object, user: User) -> int:
    """How many contacts the filter matches (validated first)."""
    condition = compile_filter(checked_filter(raw, user))
    return int(db.session.scalar(select(func.count()).select_from(Contact).where(condition)))


def sample_matching(raw: object, user: User, size: int = SAMPLE_SIZE) -> list[Contact]:
    """Up to `size` matching contacts, the newest first (validated first)."""
    condition = compile_filter(checked_filter(raw, user))
    return list(db.session.scalars(select(Contact).where(condition).order_by(Contact.id.desc()).limit(size)))


@dataclass(frozen=True)
class SegmentPreview:
    """What the editor shows live: the number of matching contacts and a few of them."""

    count: int
    sample: list[Contact]


def preview(raw: object, user: User) -> SegmentPreview:
    """The live count and a sample of 10 of a filter being edited."""
    return SegmentPreview(count_matching(raw, user), sample_matching(raw, user))


def visible_segments(user: User) -> Select:
    """SELECT of the segments `user` may see: their own, every one for an admin."""
    return visible_to(user, Segment).order_by(Segment.name, Segment.id)


def get_segment_for(user: User, segment_id: int) -> Segment:
    """The segment if `user` may see it; NOT_FOUND otherwise (another manager's segment does not exist)."""
    segment = find_visible(user, Segment, segment_id)
    if segment is None:
        raise AudienceError(gettext("No such segment."), ErrorKind.NOT_FOUND)
    return segment


def _checked_name(name: str) -> str:
    return required_text(name, NAME_MAX, gettext("Give the segment a name."),
                         gettext("A segment's name is at most %(max)s characters.", max=NAME_MAX))


def save_segment(user: User, name: str, raw_filter: object, segment_id: int | None = None) -> Segment:
    """Create (or, with `segment_id`, change) a segment; the filter is validated before it is stored."""
    with transaction():
        segment = Segment(owner_id=user.id, created_at=utcnow()) if segment_id is None else (
            get_segment_for(user, segment_id))
        segment.name = _checked_name(name)
        segment.filter = checked_filter(raw_filter, user)
        segment.updated_at = utcnow()
        db.session.add(segment)
        db.session.flush()
        record_audit(user, "segment_saved", details={"segment_id": segment.id, "name": segment.name})
    return segment


def delete_segment(user: User, segment_id: int) -> None:
    """Delete a segment (campaign targets naming it go with it)."""
    with transaction():
        db.session.delete(get_segment_for(user, segment_id))
        record_audit(user, "segment_deleted", details={"segment_id": segment_id})
