"""The Audiences pages: lists, a list's members and its export, contacts, imports into a list, segments
(segments.py, its own blueprint registered from create_app: the segment editor and its live count).

Every page loads its list or contact through `services.audiences.access`: another manager's list
or contact answers 404, a shared list is visible but not editable. Route modules add their routes
to `bp` (in blueprint.py) and are imported here.
"""

from __future__ import annotations

from flask import Flask

from mailadmin.audiences.blueprint import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask) -> None:
    """Register the audience pages."""
    from mailadmin.audiences import contacts, imports, lists, members  # noqa: F401  (routes join bp)
    from mailadmin.audiences.forms import CHANGE_SOURCE_WORDS, MEMBER_STATUS_WORDS, OPT_IN_WORDS, import_state_words

    app.register_blueprint(bp)
    app.add_template_global(MEMBER_STATUS_WORDS, "member_status_words")
    app.add_template_global(OPT_IN_WORDS, "opt_in_words")
    app.add_template_global(CHANGE_SOURCE_WORDS, "change_source_words")
    app.add_template_global(import_state_words, "import_state_words")
