"""The managers' pages: campaigns, recipients, test emails, start, progress."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the campaign pages and the display helpers every template may use."""
    from mailadmin.campaigns import audience, controls, display, draft_actions, editor, exports, schedule  # noqa: F401  (routes join bp)
    from mailadmin.campaigns.access import resume_refusal
    from mailadmin.campaigns.views import bp

    app.register_blueprint(bp)
    # The one way a template shows a moment (tests/test_times.py checks no template formats one by hand).
    app.add_template_global(display.local_time, "local_time")
    app.add_template_global(display.reason_html, "campaign_reason_html")
    app.add_template_global(resume_refusal, "campaign_resume_refusal")
    app.add_template_global(display.status_label, "campaign_status_label")
    app.add_template_global(display.reason_text, "campaign_reason_text")
    app.add_template_global(display.progress_shares, "campaign_progress_shares")
    app.add_template_global(display.timed_html, "timed_html")
    app.add_template_global(display.RECIPIENT_STATUS_LABELS, "recipient_status_labels")
    app.add_template_global(display.STATUS_LABELS, "campaign_status_words")
