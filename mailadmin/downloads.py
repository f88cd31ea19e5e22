"""CSV downloads, streamed: rows go out in chunks as they are read, never built whole in memory.

The body is written after the view has returned; under a real server the request's context is gone
by then (the test client keeps one open, so only a live server shows the difference). `rows` must
therefore need no context of the request's: read them with `services.batches.read_in_batches`,
and take from the request (filters, the viewer) everything the rows need before returning.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

from flask import Response

# Rows written per chunk sent: few enough to start the download at once, enough to cost nothing.
ROWS_PER_CHUNK = 500


def csv_download(rows: Iterable[Sequence[object]], filename: str, *, quoting: int = csv.QUOTE_MINIMAL) -> Response:
    """`rows` (header first) as a streamed `text/csv` attachment named `filename`, never cached."""
    return Response(
        _csv_chunks(rows, quoting),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _csv_chunks(rows: Iterable[Sequence[object]], quoting: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting)
    for number, row in enumerate(rows, start=1):
        writer.writerow(row)
        if number % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
