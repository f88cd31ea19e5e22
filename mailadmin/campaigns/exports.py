"""A campaign's results as CSV (`results.csv`): one row per recipient, streamed, every cell
quoted and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, stream_with_context
from flask_login import current_user

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns import queries
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.views import bp

# Cells a spreadsheet would read as a formula (OWASP "CSV injection"); tab and CR too. Every cell of an
# export is also quoted (csv.QUOTE_ALL): a spreadsheet that splits on ";" (many locales) or tab never
# cuts "x;=1+1" into a second cell that starts with "=".
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

def csv_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if isinstance(value, str) and (value.startswith(FORMULA_PREFIXES) or value.lstrip().startswith(FORMULA_PREFIXES)):
        return "'" + value
    return value


@bp.route("/campaigns/<int:campaign_id>/results.csv")
@login_required
def export(campaign_id: int):
    campaign = get_campaign_for(current_user, campaign_id)

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
        writer.writerow(queries.EXPORT_COLUMNS)
        for number, row in enumerate(queries.export_rows(campaign), start=1):
            sent_at = row[-1].isoformat() if row[-1] else ""
            writer.writerow([csv_safe("" if value is None else value) for value in row[:-1]] + [sent_at])
            if number % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"campaign-{campaign.id}-results.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
