"""Creating and editing draft campaigns: validate everything, then commit once.

A draft is checked on save, not when the 10,000th message is built: the name and
subject must be present, the subject must be one line (a CR or LF in a header is how
header injection starts), and the three templates must parse and render for a sample
recipient; every template problem is reported with its line.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask_babel import gettext, lazy_gettext
from loguru import logger
from sqlalchemy import case, delete, func, insert, literal, or_, select

from mailadmin.extensions import db
from mailadmin.i18n import number
from mailadmin.mail.message import HeaderInjectionError, check_header_value
from mailadmin.mail.templates import FIELD_LABELS, TemplateProblem, sample_fields, validate_campaign_templates
from mailadmin.models import Campaign, Recipient, User
from mailadmin.models.campaign import DRAFT, R_PENDING, R_SKIPPED
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.targets import Targets, set_campaign_targets
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.transaction import transaction

NAME_MAX = 200
SUBJECT_MAX = 998  # RFC 5322: a header line is at most 998 characters
BODY_MAX = 500_000

NOT_A_DRAFT_MESSAGE = lazy_gettext("Only a draft campaign can be changed. This campaign has already been started.")
SUBJECT_LINE_BREAK_MESSAGE = lazy_gettext("The subject must be a single line: line breaks (CR/LF) are not allowed.")


class DraftError(ServiceError):
    """The draft was not saved; `errors` maps a form field to its messages, `.message` is all of them,
    one sentence per line (for flash messages and logs)."""

    def __init__(self, errors: dict[str, list[str]], kind: ErrorKind | None = None) -> None:
        self.errors = errors
        lines = []
        for name, messages in errors.items():
            label = FIELD_LABELS.get(name, name.capitalize())
            lines.extend(f"{label}: {message}" for message in messages)
        super().__init__("\n".join(lines), kind)


def _problem_text(problem: TemplateProblem) -> str:
    text = problem.message[:1].upper() + problem.message[1:]
    return f"Line {problem.line}: {text}" if problem.line else text


def campaign_field_names(campaign: Campaign | None) -> list[str]:
    """Extra merge fields the campaign's imported recipients carry (from one recipient row)."""
    if campaign is None or campaign.id is None:
        return []
    fields = db.session.scalar(
        select(Recipient.fields).where(Recipient.campaign_id == campaign.id, Recipient.fields.is_not(None)).limit(1)
    )
    return sorted((fields or {}).keys())


def preview_recipient(campaign: Campaign, recipient_id: int | None = None) -> Recipient | None:
    """The recipient a preview is rendered for: the one asked for, else the campaign's first."""
    query = select(Recipient).where(Recipient.campaign_id == campaign.id)
    if recipient_id is not None:
        query = query.where(Recipient.id == recipient_id)
    return db.session.scalar(query.order_by(Recipient.id).limit(1))


def recipient_matches(search: str):
    """SQL condition: the recipient's address or name contains `search` (case-insensitive, no wildcards)."""
    pattern = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(
        func.lower(Recipient.email).like(pattern, escape="\\"),
        func.lower(Recipient.name).like(pattern, escape="\\"),
    )


def find_preview_recipients(campaign: Campaign, search: str, limit: int = 20) -> list[Recipient]:
    """Recipients of `campaign` whose address or name contains `search`, in campaign order."""
    return list(
        db.session.scalars(
            select(Recipient)
            .where(Recipient.campaign_id == campaign.id, recipient_matches(search))
            .order_by(Recipient.id)
            .limit(limit)
        )
    )


def preview_fields(campaign: Campaign, recipient_id: int | None = None) -> dict[str, Any]:
    """Merge fields for previews and test emails: a real recipient's, else a made-up one's."""
    recipient = preview_recipient(campaign, recipient_id)
    if recipient is None:
        return sample_fields(campaign_field_names(campaign))
    return recipient.merge_fields()


def validate_draft(
    name: str, subject: str, body_text: str, body_html: str | None, *, extra_fields: list[str] | None = None
) -> dict[str, list[str]]:
    """Every problem of a draft's fields, by form field; an empty dict means it can be saved."""
    errors: dict[str, list[str]] = defaultdict(list)
    if not name.strip():
        errors["name"].append(gettext("Give the campaign a name."))
    elif len(name) > NAME_MAX:
        errors["name"].append(gettext("The name is too long (at most %(max)s characters).", max=NAME_MAX))
    if not subject.strip():
        errors["subject"].append(gettext("Write a subject."))
    elif len(subject) > SUBJECT_MAX:
        errors["subject"].append(gettext("The subject is too long (at most %(max)s characters).", max=SUBJECT_MAX))
    try:
        check_header_value("Subject", subject)
        line_break = False
    except HeaderInjectionError:
        line_break = True
        errors["subject"].append(str(SUBJECT_LINE_BREAK_MESSAGE))
    if not body_text.strip():
        errors["body_text"].append(gettext("Write a text body: every message carries a plain-text part."))
    for key, value in (("body_text", body_text), ("body_html", body_html or "")):
        if len(value) > BODY_MAX:
            errors[key].append(gettext("The body is too long (at most %(max)s characters).", max=number(BODY_MAX)))
    for problem in validate_campaign_templates(
        subject, body_text, body_html, sample=sample_fields(extra_fields or [])
    ):
        if problem.field == "subject" and line_break and problem.line is None:
            continue  # already reported above, in the product's words
        errors[problem.field].append(_problem_text(problem))
    return dict(errors)


def _clean(name: str, subject: str, body_text: str, body_html: str | None) -> tuple[str, str, str, str | None]:
    # Browsers send textarea line ends as CRLF; store LF so that the templates' line numbers
    # and the sent text parts are the same whatever the browser.
    body_text = (body_text or "").replace("\r\n", "\n")
    body_html = (body_html or "").replace("\r\n", "\n")
    return (name or "").strip(), (subject or "").strip(" \t"), body_text, body_html if body_html.strip() else None


def create_campaign(owner: User, name: str, subject: str, body_text: str, body_html: str | None = None) -> Campaign:
    """Create a draft campaign owned by `owner`, or raise DraftError."""
    name, subject, body_text, body_html = _clean(name, subject, body_text, body_html)
    errors = validate_draft(name, subject, body_text, body_html)
    if errors:
        raise DraftError(errors)
    campaign = Campaign(
        owner_id=owner.id, name=name, subject=subject, body_text=body_text, body_html=body_html, status=DRAFT
    )
    with transaction():
        db.session.add(campaign)
    return campaign


def update_campaign(
    campaign: Campaign, name: str, subject: str, body_text: str, body_html: str | None = None
) -> Campaign:
    """Change a draft's name, subject and bodies, or raise DraftError (also when it is no longer a draft)."""
    if campaign.status != DRAFT:
        raise DraftError({"campaign": [str(NOT_A_DRAFT_MESSAGE)]}, ErrorKind.CONFLICT)
    name, subject, body_text, body_html = _clean(name, subject, body_text, body_html)
    errors = validate_draft(name, subject, body_text, body_html, extra_fields=campaign_field_names(campaign))
    if errors:
        raise DraftError(errors)
    with transaction():
        campaign.name = name
        campaign.subject = subject
        campaign.body_text = body_text
        campaign.body_html = body_html
    return campaign


# --- duplicating and deleting ----------------------------------------------------------------

COPY_SUFFIX = " (copy)"
DELETE_NOT_A_DRAFT_MESSAGE = lazy_gettext("Only a draft can be deleted. A started campaign stays for its results.")


def duplicate_campaign(campaign: Campaign, owner: User, *, with_recipients: bool = False) -> Campaign:
    """A new draft with the same content (and, if asked, the same recipients, all waiting again); commits once.

    Any campaign may be duplicated, started or not: the copy is always a fresh draft owned by `owner`.
    """
    name = (campaign.name[: NAME_MAX - len(COPY_SUFFIX)] + COPY_SUFFIX).strip()
    copy = Campaign(
        owner_id=owner.id,
        name=name,
        subject=campaign.subject,
        body_text=campaign.body_text,
        body_html=campaign.body_html,
        status=DRAFT,
    )
    with transaction():
        db.session.add(copy)
        db.session.flush()
        if with_recipients:
            _copy_recipients(campaign, copy)
    logger.bind(campaign_id=copy.id, source_campaign_id=campaign.id, with_recipients=with_recipients).info(
        "Campaign duplicated"
    )
    return copy


def _copy_recipients(source: Campaign, copy: Campaign) -> None:
    """Copy the recipients in one INSERT ... SELECT: suppressed ones stay skipped, everyone else waits."""
    skipped = case((Recipient.status == R_SKIPPED, R_SKIPPED), else_=R_PENDING)
    note = case((Recipient.status == R_SKIPPED, Recipient.last_error), else_=None)
    place = func.row_number().over(order_by=(Recipient.position, Recipient.id))
    rows = select(
        literal(copy.id), Recipient.email, Recipient.name, Recipient.fields, skipped, note, literal(0), literal(utcnow()),
        literal(1), place,
    ).where(Recipient.campaign_id == source.id).order_by(Recipient.position, Recipient.id)  # ids follow positions
    columns = [
        "campaign_id", "email", "name", "fields", "status", "last_error", "attempts", "updated_at", "import_batch",
        "position",
    ]
    db.session.execute(insert(Recipient).from_select(columns, rows))
    total, skipped_count = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((Recipient.status == R_SKIPPED, 1), else_=0)), 0)).where(
            Recipient.campaign_id == copy.id
        )
    ).one()
    copy.recipients_total = int(total)
    copy.skipped_count = int(skipped_count)


def delete_draft(campaign: Campaign, actor: User) -> None:
    """Delete a draft with its recipients, for good (a started campaign cannot be deleted); commits once."""
    with transaction():
        status = db.session.scalar(select(Campaign.status).where(Campaign.id == campaign.id).with_for_update())
        if status != DRAFT:
            raise DraftError({"campaign": [str(DELETE_NOT_A_DRAFT_MESSAGE)]}, ErrorKind.CONFLICT)  # rolls back: the row lock goes
        name, campaign_id = campaign.name, campaign.id
        db.session.execute(delete(Recipient).where(Recipient.campaign_id == campaign_id))
        db.session.execute(
            delete(Campaign).where(Campaign.id == campaign_id).execution_options(synchronize_session=False)
        )
        record_audit(actor, "draft_deleted", details={"campaign": name, "campaign_id": campaign_id})
    db.session.expunge(campaign)


# --- a draft with its audience, in one commit (the API's create and patch) ---------------------


def create_draft(owner: User, content: dict[str, Any], targets: Targets | None = None) -> Campaign:
    """A draft with its content (name, subject, body_text, body_html) and, if given, its lists and
    segments, in one commit, audited as `draft_created`."""
    with transaction():
        campaign = create_campaign(owner, content["name"], content["subject"], content["body_text"],
                                   content.get("body_html"))
        db.session.flush()
        if targets is not None:
            set_campaign_targets(campaign, owner, targets)
        record_audit(owner, "draft_created", campaign_id=campaign.id, details={"campaign": campaign.name})
    return campaign


def edit_draft(campaign: Campaign, actor: User, changes: dict[str, Any], targets: Targets | None = None) -> Campaign:
    """Change some of a draft's fields and, if given, replace its targets, in one commit, audited as
    `draft_edited` with the names of what changed."""
    with transaction():
        if changes:
            current = {"name": campaign.name, "subject": campaign.subject, "body_text": campaign.body_text,
                       "body_html": campaign.body_html}
            update_campaign(campaign, **{**current, **changes})
        if targets is not None:
            set_campaign_targets(campaign, actor, targets)
        changed = sorted(changes) + (["targets"] if targets is not None else [])
        record_audit(actor, "draft_edited", campaign_id=campaign.id, details={"fields": changed})
    return campaign
