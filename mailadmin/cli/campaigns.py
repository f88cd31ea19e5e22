"""On-call commands the playbook documents: `flask --app wsgi campaigns ...` and `flask --app wsgi sending ...`.

Every state change goes through the engine's service functions (`mailadmin.services.campaigns`),
exactly as the admin pages do: same conditional transitions, same audit rows, same log records.
`--actor EMAIL` (or MAILADMIN_ACTOR) names the admin the audit log records; without it the
action is recorded as done by the system.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import click
from flask.cli import AppGroup
from sqlalchemy import select

from mailadmin.extensions import db, get_redis
from mailadmin.models import Campaign, CampaignQueue, User
from mailadmin.models.campaign import CAMPAIGN_STATUSES
from mailadmin.ops.formatting import format_time
from mailadmin.queue.dispatch import continuation_job_id, scheduled_continuation_at
from mailadmin.services import campaigns as campaign_service
from mailadmin.services import sending_switch
from mailadmin.services import users as user_service

campaigns_cli = AppGroup(
    "campaigns",
    help="Inspect and control campaigns (pause, resume, cancel, start a scheduled one now or move it, re-queue unknown).",
)
sending_cli = AppGroup("sending", help="The global sending switch.")

_actor_option = click.option(
    "--actor",
    envvar="MAILADMIN_ACTOR",
    metavar="EMAIL",
    help="The admin recorded in the audit log (default: $MAILADMIN_ACTOR, else 'system').",
)


def _actor(email: str | None) -> User | None:
    if not email:
        return None
    try:
        user = user_service.find_user(email)
    except user_service.UserError:
        user = None
    if user is None or not user.is_admin or not user.active:
        raise click.ClickException(f"--actor {email}: no active admin with that email")
    return user


def _campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise click.ClickException(f"campaign {campaign_id} does not exist")
    return campaign


def _on_campaign(command):
    """The command takes CAMPAIGN_ID and --actor, and is called with the Campaign and the actor's email."""

    @click.argument("campaign_id", type=int)
    @_actor_option
    @functools.wraps(command)
    def wrapper(campaign_id: int, actor: str | None, **options):
        return command(_campaign(campaign_id), actor, **options)

    return wrapper


_yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def _run(action, campaign: Campaign, actor: User | None):
    try:
        return action(campaign, actor)
    except campaign_service.CampaignError as exc:
        raise click.ClickException(exc.message) from None


def _transition(action, campaign: Campaign, actor_email: str | None) -> None:
    """Run a campaign transition as `actor_email` (or the system), then print the campaign's new state."""
    _run(action, campaign, _actor(actor_email))
    db.session.refresh(campaign)
    click.echo(_describe(campaign))


def _describe(campaign: Campaign) -> str:
    queue: CampaignQueue | None = campaign.queue
    reason = f" ({queue.defer_reason})" if queue is not None and queue.defer_reason else ""
    return f"campaign {campaign.id} is {campaign.status}{reason}"


@campaigns_cli.command("list")
@click.option("--status", type=click.Choice([status.value for status in CAMPAIGN_STATUSES]), help="Only campaigns in this state.")
@click.option("--limit", default=50, show_default=True)
def list_campaigns_command(status: str | None, limit: int) -> None:
    """Campaigns, newest first: id, status, reason, deferred_until, progress."""
    query = select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if status:
        query = query.where(Campaign.status == status)
    for c in db.session.scalars(query).unique():
        q = c.queue
        click.echo(
            f"{c.id}\t{c.status}\t{(q.defer_reason if q else None) or '-'}\t"
            f"{format_time(q.deferred_until) if q and q.deferred_until else '-'}\t"
            f"sent {c.sent_count} failed {c.failed_count} unknown {c.unknown_count} of {c.recipients_total}\t{c.name}"
        )


@campaigns_cli.command("show")
@click.argument("campaign_id", type=int)
def show_campaign_command(campaign_id: int) -> None:
    """One campaign's state, send-loop row and scheduled continuation."""
    c = _campaign(campaign_id)
    q = c.queue
    click.echo(f"campaign {c.id}: {c.name}")
    click.echo(f"  status            {c.status}")
    click.echo(f"  recipients        total {c.recipients_total}, sent {c.sent_count}, failed {c.failed_count}, "
               f"skipped {c.skipped_count}, unknown {c.unknown_count}")
    if q is not None:
        click.echo(f"  defer_reason      {q.defer_reason or '-'}")
        if c.status == "paused" and (q.paused_at or q.paused_by):
            who = q.paused_by.email if q.paused_by else "-"
            click.echo(f"  paused            by {who} at {format_time(q.paused_at)}{f' ({q.pause_detail})' if q.pause_detail else ''}")
        click.echo(f"  deferred_until    {format_time(q.deferred_until)}")
        click.echo(f"  transient errors  {q.consecutive_transient_errors} in a row")
        click.echo(f"  breaker tripped   {format_time(q.breaker_tripped_at)}")
        click.echo(f"  current job       {q.current_job_id or '-'}")
        click.echo(f"  last progress     {format_time(q.heartbeat_at)}")
        click.echo(f"  last error        {q.last_error or '-'}")
    try:
        at = scheduled_continuation_at(c.id, connection=get_redis())
        click.echo(f"  continuation      {continuation_job_id(c.id)} at {format_time(at)}" if at else "  continuation      none scheduled")
    except Exception as exc:  # Redis down: show what the database knows
        click.echo(f"  continuation      unknown (Redis: {type(exc).__name__})")


@campaigns_cli.command("pause")
@_on_campaign
def pause_campaign_command(campaign: Campaign, actor: str | None) -> None:
    """Pause a campaign (admin_pause): the send loop stops before its next message."""
    _transition(campaign_service.pause_campaign, campaign, actor)


@campaigns_cli.command("resume")
@_on_campaign
def resume_campaign_command(campaign: Campaign, actor: str | None) -> None:
    """Resume a paused campaign (admin or circuit breaker): queued again, breaker counter reset."""
    _transition(campaign_service.resume_campaign, campaign, actor)


@campaigns_cli.command("start-now")
@_on_campaign
def start_now_command(campaign: Campaign, actor: str | None) -> None:
    """Send a campaign waiting for its scheduled start now (its scheduled continuation is removed)."""
    _transition(campaign_service.start_scheduled_now, campaign, actor)


def _start_time(value: str) -> datetime:
    """`--at`: an ISO 8601 time with its zone (`2027-03-01T09:30+01:00`, `2027-03-01T08:30Z`)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time: write it as 2027-03-01T09:30+01:00 (or ...Z for UTC)"
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no time zone: add it, e.g. 2027-03-01T09:30+01:00 (or ...Z for UTC)")
    return moment.astimezone(UTC)


@campaigns_cli.command("reschedule")
@_on_campaign
@click.option("--at", "start_at", required=True, metavar="TIME",
              help="The new start time, ISO 8601 with its zone: 2027-03-01T09:30+01:00 or 2027-03-01T08:30Z.")
def reschedule_command(campaign: Campaign, actor: str | None, start_at: str) -> None:
    """Give a scheduled campaign (or one that missed its start) another start time in the future."""
    moment = _start_time(start_at)
    _transition(lambda c, a: campaign_service.reschedule_campaign(c, a, moment), campaign, actor)
    click.echo(f"starts at {format_time(moment)}")


@campaigns_cli.command("cancel")
@_on_campaign
@_yes_option
def cancel_campaign_command(campaign: Campaign, actor: str | None, yes: bool) -> None:
    """Cancel a campaign for good (cannot be undone)."""
    if not yes:
        click.confirm(f"Cancel campaign {campaign.id} ({campaign.name}) for good?", abort=True)
    _transition(campaign_service.cancel_campaign, campaign, actor)


@campaigns_cli.command("requeue-unknown")
@_on_campaign
@_yes_option
def requeue_unknown_command(campaign: Campaign, actor: str | None, yes: bool) -> None:
    """Send again to recipients in `unknown` — they MAY have received the email already."""
    question = (f"Re-queue the {campaign.unknown_count} unknown recipients of campaign {campaign.id}? "
                "Some may get the email twice.")
    if not yes:
        click.confirm(question, abort=True)
    count = _run(campaign_service.requeue_unknown_recipients, campaign, _actor(actor))
    db.session.refresh(campaign)
    click.echo(f"{count} recipients re-queued; {_describe(campaign)}")


@sending_cli.command("status")
def sending_status_command() -> None:
    """Is sending switched on or off?"""
    click.echo("off" if sending_switch.sending_paused() else "on")


@sending_cli.command("off")
@_actor_option
def sending_off_command(actor: str | None) -> None:
    """Switch ALL sending off: running campaigns wait with global_pause."""
    sending_switch.set_sending_paused(True, _actor(actor))
    click.echo("sending is off")


@sending_cli.command("on")
@_actor_option
def sending_on_command(actor: str | None) -> None:
    """Switch sending back on: campaigns waiting with global_pause are re-enqueued."""
    sending_switch.set_sending_paused(False, _actor(actor))
    click.echo("sending is on")
