"""The operations page (admins): the playbook's 60-second diagnosis, live, and the playbook itself.

Both views only show what `mailadmin.ops.run_diagnosis()` found — the same checks as
`flask --app wsgi doctor`. The playbook is rendered by `admin/playbook.py` (markdown-it-py, with
GitHub's heading anchors) so that every link from the page works offline; `?raw=1` serves the
file as plain text.
"""

from __future__ import annotations

from flask import Response, abort, render_template, request, url_for
from sqlalchemy import select

from mailadmin.admin.playbook import render_playbook
from mailadmin.admin.views import bp
from mailadmin.auth.decorators import admin_required
from mailadmin.extensions import db
from mailadmin.models import Campaign
from mailadmin.ops import PLAYBOOK_FILES, Diagnosis, PlaybookRef, format_age, playbook_path, run_diagnosis
from mailadmin.ops.anchors import section_title


def playbook_url(ref: PlaybookRef) -> str:
    """URL of a playbook section on this site."""
    return url_for("admin.playbook", name=ref.name, _anchor=ref.anchor)


def playbook_title(ref: PlaybookRef) -> str:
    """A playbook link's words: the section's own title ("Playbook: 5. Workers"), its path if it has none."""
    title = section_title(ref)
    return f"Playbook: {title}" if title else ref.path


def _scheduled_campaign_names(diagnosis: Diagnosis) -> dict[int, str]:
    """Names of the campaigns whose continuations the scheduler holds (the diagnosis knows only their ids)."""
    try:
        scheduled = (diagnosis.check("scheduler").details or {}).get("scheduled", [])
    except KeyError:
        return {}
    ids = {job.campaign_id for job in scheduled if job.campaign_id}
    if not ids:
        return {}
    return dict(db.session.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(ids))).all())


@bp.route("/operations")
@admin_required
def operations():
    """The 60-second diagnosis, live: a short summary of what is wrong, then one block per check (open when
    it is not OK), each linking to its playbook section by title."""
    diagnosis = run_diagnosis(here="this web process")
    return render_template(
        "admin/operations.html",
        diagnosis=diagnosis,
        playbook_url=playbook_url,
        playbook_title=playbook_title,
        format_age=format_age,
        campaign_names=_scheduled_campaign_names(diagnosis),
    )


@bp.route("/playbook/<name>")
@admin_required
def playbook(name: str):
    """A playbook file rendered with GitHub's heading anchors (`?raw=1`: the Markdown as plain text)."""
    if name not in PLAYBOOK_FILES:
        abort(404)
    path = playbook_path(name)
    if not path.exists():
        abort(404)
    source = path.read_text(encoding="utf-8")
    if request.args.get("raw"):
        return Response(source, mimetype="text/plain; charset=utf-8")
    return render_template("admin/operations.html", playbook_html=render_playbook(source), playbook_name=name,
                           playbook_file=PLAYBOOK_FILES[name])
