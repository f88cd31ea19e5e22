"""Everything on a campaign's page that changes while it sends, from one place.

`page_state()` gathers it for the first render and for `progress.json` alike; the JSON carries
the numbers (for the counters and the bar) and the changing blocks as HTML rendered from the
same partial templates the page uses (reason, buttons, dates, last errors, the recipients rows
of the page and filter the viewer is on), so static/progress.js swaps them in without a reload
and the two renderings cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import render_template, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from mailadmin.campaigns import display, queries
from mailadmin.models import Campaign
from mailadmin.models.campaign import DRAFT, FINAL_STATUSES, PAUSED, RECIPIENT_STATUSES
from mailadmin.models.reasons import BounceRateTrip, Reason
from mailadmin.pii import mask_email
from mailadmin.services.bounces import bounce_rate_trips
from mailadmin.services.campaigns import sending_paused

# The blocks progress.js replaces, by their `data-live-html` name, and their templates.
LIVE_BLOCKS = {
    "reason": "campaigns/_live_reason.html",
    "controls": "campaigns/_live_controls.html",
    "dates": "campaigns/_live_dates.html",
    "errors": "campaigns/_live_errors.html",
    "recipients": "campaigns/_live_recipients.html",
}


@dataclass
class PageState:
    """A campaign page's changing content for one viewer, page and filter."""

    campaign: Campaign
    counts: dict[str, int]
    recipients: queries.Page
    status_filter: str | None
    search: str
    last_errors: list[tuple[Any, str]]
    sending_off: bool
    bounce_trip: BounceRateTrip | None = None  # which line a bounce_rate pause crossed

    def filters(self) -> dict[str, Any]:
        """The recipients table's own query parameters (status, search, page), for links back to it."""
        page = self.recipients.page if self.recipients.page > 1 else None
        return {"status": self.status_filter, "q": self.search or None, "page": page}

    def context(self) -> dict[str, Any]:
        """What the page's templates (and the live partials) render from."""
        campaign = self.campaign
        return {
            "campaign": campaign,
            "counts": self.counts,
            "recipients": self.recipients,
            "status_filter": self.status_filter,
            "search": self.search,
            "last_errors": self.last_errors,
            "reason_html": display.reason_html(campaign, self.sending_off, self.bounce_trip),
            "status_labels": display.recipient_status_labels_for(campaign),
            "finished_label": display.finished_label(campaign),
            "here": url_for("campaigns.show", campaign_id=campaign.id),
            # Only the page's own filters travel on (to progress.json, back after a removal), never a
            # visitor's stray query parameters.
            "progress_url": url_for("campaigns.progress", campaign_id=campaign.id, **self.filters()),
            "page_url": url_for("campaigns.show", campaign_id=campaign.id, **self.filters()),
            "live": campaign.status != DRAFT and campaign.status not in FINAL_STATUSES,
        }


def filter_args(args: MultiDict) -> tuple[str | None, str, int]:
    """(status filter, search, page) of the recipients table from a request's query string."""
    status = args.get("status") or None
    if status not in RECIPIENT_STATUSES:
        status = None
    search = (args.get("q") or "").strip()[:200]
    return status, search, queries.page_number(args.get("page"))


def page_state(campaign: Campaign, args: MultiDict) -> PageState:
    """Read everything that changes on the page (a handful of indexed queries)."""
    status_filter, search, page = filter_args(args)
    counts = queries.recipient_status_counts(campaign)
    recipients = queries.recipients_page(campaign, status_filter, search or None, page, counts)
    reveal = current_user.is_admin
    errors = [(r, r.email if reveal else mask_email(r.email)) for r in queries.last_errors(campaign)]
    bounce_paused = campaign.queue is not None and campaign.queue.defer_reason == Reason.BOUNCE_RATE
    trip = bounce_rate_trips([campaign.id]).get(campaign.id) if bounce_paused else None
    return PageState(campaign, counts, recipients, status_filter, search, errors, sending_paused(), trip)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def progress_payload(state: PageState, with_html: bool = True) -> dict[str, Any]:
    """What progress.json serves: the numbers, and each changing block as HTML."""
    campaign = state.campaign
    queue = campaign.queue
    labels = display.recipient_status_labels_for(campaign)
    payload: dict[str, Any] = {
        "id": campaign.id,
        "status": campaign.status,
        "status_label": display.status_label(campaign),
        "reason": queue.defer_reason if queue else None,
        "reason_text": display.reason_text(campaign, sending_off=state.sending_off, bounce_trip=state.bounce_trip),
        "deferred_until": _iso(queue.deferred_until) if queue else None,
        "total": campaign.recipients_total,
        **campaign.outcome_counts,
        "done": campaign.done_count,
        "percent": campaign.progress_percent,
        "shares": display.progress_shares(campaign),
        "counts": state.counts,
        "count_labels": labels,
        "status_options": {s: f"{labels[s]} ({state.counts[s]:,})" for s in RECIPIENT_STATUSES},
        "final": campaign.status in FINAL_STATUSES,
        "finished_with_errors": campaign.finished_with_errors,
        # Machine values (ISO 8601, UTC) like `deferred_until`; people read the rendered blocks.
        "started_at": _iso(campaign.started_at),
        "finished_at": _iso(campaign.finished_at),
        "paused_by": queue.paused_by.email if queue and queue.paused_by and campaign.status == PAUSED else None,
        "paused_at": _iso(queue.paused_at) if queue and campaign.status == PAUSED else None,
    }
    if with_html:
        context = state.context()
        payload["html"] = {name: render_template(template, **context) for name, template in LIVE_BLOCKS.items()}
    return payload
