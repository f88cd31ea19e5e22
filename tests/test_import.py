"""Recipient import: CSV upload and pasted lines, on the real database."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Recipient
from mailadmin.services.recipients import ImportSummary, RecipientImportError, import_recipients
from mailadmin.services.suppressions import suppress
from tests.factories import make_draft, reload
from tests.support.web import flashes, submit


def stored(campaign) -> dict[str, Recipient]:
    return {r.email: r for r in db.session.scalars(select(Recipient).where(Recipient.campaign_id == campaign.id))}


def test_pasted_lines_without_a_header_are_imported_with_their_names(manager):
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "jane@example.com,Jane Doe\njoe@example.org\n")
    assert (summary.added, summary.duplicates, summary.invalid, summary.suppressed) == (2, 0, [], 0)
    rows = stored(campaign)
    assert rows["jane@example.com"].name == "Jane Doe"
    assert rows["joe@example.org"].name is None
    assert rows["joe@example.org"].status == "pending"
    assert reload(campaign).recipients_total == 2


def test_a_header_row_is_recognised_and_extra_columns_become_merge_fields(manager):
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "Name,E-mail,Company,First name\nJane Doe,jane@example.com,ACME,Jane\n")
    assert summary.added == 1 and summary.header == ["Name", "E-mail", "Company", "First name"]
    jane = stored(campaign)["jane@example.com"]
    assert jane.name == "Jane Doe"
    assert jane.fields == {"company": "ACME", "first_name": "Jane"}
    assert jane.merge_fields()["company"] == "ACME"


def test_a_utf8_bom_does_not_spoil_the_header_or_the_first_address(manager):
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "\ufeffemail,name\nanna@example.com,Änna\n".encode())
    assert summary.added == 1 and summary.invalid == []
    assert stored(campaign)["anna@example.com"].name == "Änna"
    headerless = make_draft(manager, name="no header")
    assert import_recipients(headerless, "\ufeffbob@example.com\n".encode()).added == 1


def test_semicolons_and_tabs_are_recognised_as_separators(manager):
    semicolons = make_draft(manager, name="excel")
    summary = import_recipients(semicolons, "email;name\njane@example.com;Doe, Jane\njoe@example.org;Joe\n")
    assert summary.delimiter == ";" and summary.added == 2
    assert stored(semicolons)["jane@example.com"].name == "Doe, Jane"
    tabs = make_draft(manager, name="tabs")
    summary = import_recipients(tabs, "jane@example.com\tJane\njoe@example.org\tJoe\n")
    assert summary.delimiter == "\t" and stored(tabs)["joe@example.org"].name == "Joe"


def test_quoted_fields_keep_commas_quotes_and_line_breaks(manager):
    campaign = make_draft(manager)
    text = 'email,name,note\njane@example.com,"Doe, Jane","said ""hi""\nover two lines"\nbad-row,x,y\n'
    summary = import_recipients(campaign, text)
    jane = stored(campaign)["jane@example.com"]
    assert jane.name == "Doe, Jane"
    assert jane.fields == {"note": 'said "hi"\nover two lines'}
    # The quoted line break keeps "bad-row" on spreadsheet row 3, as a spreadsheet shows it.
    assert [row for row, _ in summary.invalid] == [3]


def test_blank_lines_are_skipped_and_row_numbers_follow_the_file(manager):
    campaign = make_draft(manager)
    text = "email,name\n\njane@example.com,Jane\n   \nnot-an-address,Nobody\n\n\njoe@@example.org,Joe\n"
    summary = import_recipients(campaign, text)
    assert summary.added == 1
    assert [row for row, _ in summary.invalid] == [5, 8]


def test_each_invalid_row_is_reported_with_its_number_and_reason(manager):
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "jane@example.com\nno-at-sign\n,Only a name\nx@nodot\n")
    assert summary.added == 1
    reasons = dict(summary.invalid)
    assert sorted(reasons) == [2, 3, 4]
    assert reasons[2].startswith("no-at-sign: ") and "@-sign" in reasons[2]
    assert reasons[3] == "No email address in this row."
    assert "x@nodot" in reasons[4] and "period" in reasons[4]


def test_duplicates_are_folded_within_the_file_and_against_earlier_imports(manager):
    campaign = make_draft(manager)
    first = import_recipients(campaign, "Jane@Example.com\njane@example.com\nJANE@EXAMPLE.COM,Jane\njoe@example.org\n")
    assert (first.added, first.duplicates) == (2, 2)
    second = import_recipients(campaign, "joe@example.org\nnew@example.net\n")
    assert (second.added, second.duplicates) == (1, 1)
    assert sorted(stored(campaign)) == ["jane@example.com", "joe@example.org", "new@example.net"]
    assert reload(campaign).recipients_total == 3


def test_suppressed_addresses_are_skipped_and_counted(manager):
    suppress("Gone@Example.com", "unsubscribed")
    suppress("bounced@example.org", "hard_bounce")
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "gone@example.com\nbounced@example.org\nstays@example.net\n")
    assert (summary.added, summary.suppressed) == (1, 2)
    rows = stored(campaign)
    assert rows["gone@example.com"].status == "skipped"
    assert "suppression list" in rows["gone@example.com"].last_error
    assert rows["stays@example.net"].status == "pending"
    campaign = reload(campaign)
    assert (campaign.recipients_total, campaign.skipped_count) == (3, 2)


def test_the_summary_reads_like_the_spec():
    summary = ImportSummary(added=9812, duplicates=120, invalid=[(n, "bad") for n in range(41)], suppressed=27)
    assert summary.text == "9,812 added · 120 duplicates · 41 invalid · 27 suppressed"


def test_a_windows_1252_file_is_read(manager):
    campaign = make_draft(manager)
    summary = import_recipients(campaign, "email;name\r\nrene@example.com;René\r\n".encode("cp1252"))
    assert summary.added == 1 and stored(campaign)["rene@example.com"].name == "René"


def test_an_empty_import_is_refused(manager):
    campaign = make_draft(manager)
    with pytest.raises(RecipientImportError, match="Nothing to import"):
        import_recipients(campaign, "\n \n")
    with pytest.raises(RecipientImportError, match="Nothing to import"):
        import_recipients(campaign, "email,name\n")


def test_a_started_campaign_takes_no_more_recipients(manager):
    campaign = make_draft(manager, recipients="jane@example.com\n")
    campaign.status = "queued"
    db.session.commit()
    with pytest.raises(RecipientImportError, match="only be imported into a draft"):
        import_recipients(campaign, "joe@example.org\n")
    assert reload(campaign).recipients_total == 1


def test_a_ten_thousand_row_import_keeps_every_row(manager):
    """Its speed is `make bench`'s `import` line; here only that every row lands, once."""
    campaign = make_draft(manager)
    data = ("email,name,city\n" + "\n".join(f"user{n}@example.com,User {n},Town {n % 50}" for n in range(10_000))).encode()
    summary = import_recipients(campaign, data)
    assert summary.added == 10_000
    assert reload(campaign).recipients_total == 10_000


def test_the_import_page_takes_a_csv_upload_and_shows_the_summary_and_bad_rows(app, manager, manager_client):
    campaign = make_draft(manager)
    suppress("gone@example.com", "unsubscribed")
    url = f"/campaigns/{campaign.id}/recipients/import"
    csv_file = io.BytesIO(b"email,name\njane@example.com,Jane\njane@example.com,Again\nnope,Bad\ngone@example.com,Gone\n")
    response = submit(manager_client, url, {"file": (csv_file, "list.csv"), "text": ""}, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert ("success", "Import finished: 1 added · 1 duplicate · 1 invalid · 1 suppressed.") in flashes(page)
    assert "<td>4</td><td>nope: " in page
    assert reload(campaign).recipients_total == 2


def test_the_import_page_takes_pasted_lines(app, manager, manager_client):
    campaign = make_draft(manager)
    url = f"/campaigns/{campaign.id}/recipients/import"
    response = submit(manager_client, url, {"text": "a@example.com\nb@example.com,B"})
    assert ("success", "Import finished: 2 added · 0 duplicates · 0 invalid · 0 suppressed.") in flashes(
        response.get_data(as_text=True)
    )


def test_the_import_page_asks_for_a_file_or_text_when_given_neither(app, manager, manager_client):
    campaign = make_draft(manager)
    response = submit(manager_client, f"/campaigns/{campaign.id}/recipients/import", {"text": "  "})
    assert response.status_code == 400
    assert ("error", "Choose a CSV file or paste some addresses first.") in flashes(response.get_data(as_text=True))


def test_an_address_with_a_non_ascii_local_part_is_refused_at_import_with_its_reason(manager):
    campaign = make_draft(manager)

    summary = import_recipients(campaign, "josé@example.com\nplain@example.com\nuser@bücher.example\n")

    assert summary.added == 2  # an internationalised DOMAIN is fine: it goes out in its ASCII form
    assert [number for number, _ in summary.invalid] == [1]
    assert "SMTPUTF8" in summary.invalid[0][1] and "josé@example.com" in summary.invalid[0][1]
    assert "josé@example.com" not in stored(campaign)
