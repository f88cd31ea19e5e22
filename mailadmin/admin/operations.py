"""The operations page (admins): the playbook's 60-second diagnosis, live, and the playbook itself.

Both views only show what `mailadmin.ops.run_diagnosis()` found — the same checks as
`flask --app wsgi doctor`. The playbook is rendered by `admin/playbook.py` (markdown-it-py, with
GitHub's heading anchors) so that every link from the page works offline; `?raw=1` serves the
file as plain text.
"""

from __future__ import annotations

from flask import Response, abort, render_template, request, url_for

from mailadmin.admin.playbook import render_playbook
from mailadmin.admin.views import bp
from mailadmin.auth.decorators import admin_required
from mailadmin.ops import PLAYBOOK_FILES, PlaybookRef, format_age, playbook_path, run_diagnosis


def playbook_url(ref: PlaybookRef) -> str:
    """URL of a playbook section on this site."""
    return url_for("admin.playbook", name=ref.name, _anchor=ref.anchor)


@bp.route("/operations")
@admin_required
def operations():
    """The 60-second diagnosis, live: one block per check, each linking to its playbook section."""
    return render_template(
        "admin/operations.html", diagnosis=run_diagnosis(), playbook_url=playbook_url, format_age=format_age
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
