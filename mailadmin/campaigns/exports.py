"""A campaign's results as CSV (`results.csv`): one row per recipient, streamed, every cell
quoted and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import itertools

from flask_login import current_user

from mailadmin.auth.decorators import login_required
from mailadmin.campaigns import queries
from mailadmin.campaigns.access import get_campaign_for
from mailadmin.campaigns.views import bp
from mailadmin.downloads import csv_download

# Cells a spreadsheet would read as a formula (OWASP "CSV injection"); tab and CR too. Every cell of an
# export is also quoted (csv.QUOTE_ALL): a spreadsheet that splits on ";" (many locales) or tab never
# cuts "x;=1+1" into a second cell that starts with "=".
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if isinstance(value, str) and (value.startswith(FORMULA_PREFIXES) or value.lstrip().startswith(FORMULA_PREFIXES)):
        return "'" + value
    return value


def _result_cells(row) -> list[object]:
    """One recipient's export cells (the row ends with sent_at, then the id the batches are read by)."""
    *values, sent_at, _recipient_id = row
    return [csv_safe("" if value is None else value) for value in values] + [sent_at.isoformat() if sent_at else ""]


@bp.route("/campaigns/<int:campaign_id>/results.csv")
@login_required
def export(campaign_id: int):
    """Every recipient's outcome as CSV, streamed (every cell quoted, formulas defused)."""
    campaign = get_campaign_for(current_user, campaign_id)
    rows = (_result_cells(row) for row in queries.export_rows(campaign.id))
    return csv_download(itertools.chain([queries.EXPORT_COLUMNS], rows), f"campaign-{campaign.id}-results.csv",
                        quoting=csv.QUOTE_ALL)
