"""Inputs that used to give a 500 or a wrong answer: over-long CSV cells, UTF-16 files, stray query
parameters on paginated pages, old unsubscribe links, formula-looking export cells."""

from __future__ import annotations

import csv
import io
import time

import pytest
from itsdangerous.timed import TimestampSigner

from mailadmin.extensions import db
from mailadmin.mail.unsubscribe import make_unsubscribe_token
from mailadmin.models import Recipient
from mailadmin.services.audit import record_audit
from mailadmin.services.drafts import create_campaign
from tests.factories import make_draft, numbered_addresses, reload
from tests.support.web import flashes, submit

HUGE_CELL = "x" * 200_000


def import_url(campaign) -> str:
    return f"/campaigns/{campaign.id}/recipients/import"


def upload(client, campaign, data: bytes):
    return submit(client, import_url(campaign), {"file": (io.BytesIO(data), "list.csv"), "text": ""},
                  content_type="multipart/form-data")


@pytest.mark.parametrize("quoted", [False, True], ids=["bare", "quoted"])
def test_an_over_long_cell_in_an_upload_is_named_by_its_row(manager_client, manager, quoted):
    campaign = make_draft(manager)
    cell = f'"{HUGE_CELL}"' if quoted else HUGE_CELL
    response = upload(manager_client, campaign, f"email,name\njane@example.com,Jane\njoe@example.com,{cell}\n".encode())

    assert response.status_code == 400
    messages = [text for _, text in flashes(response.get_data(as_text=True))]
    assert any("Row 3: a cell is longer than 131,072 characters" in text for text in messages), messages
    assert reload(campaign).recipients_total == 0


def test_an_over_long_pasted_line_is_named_by_its_row(manager_client, manager):
    campaign = make_draft(manager)
    response = submit(manager_client, import_url(campaign), {"text": f"jane@example.com\n{HUGE_CELL}@example.com\n"})
    assert response.status_code == 400
    assert any("Row 2: a cell is longer than" in text for _, text in flashes(response.get_data(as_text=True)))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_utf16_file_with_a_bom_is_read_as_text(manager_client, manager, encoding):
    campaign = make_draft(manager)
    text = "email\tname\nzoe@example.com\tZoë Ångström\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    response = upload(manager_client, campaign, data)

    assert response.status_code == 200, flashes(response.get_data(as_text=True))
    recipient = db.session.scalar(db.select(Recipient).where(Recipient.campaign_id == campaign.id))
    assert (recipient.email, recipient.name) == ("zoe@example.com", "Zoë Ångström")


STRAY = "endpoint=x&_method=POST&campaign_id=9&page=2"


def test_paginated_pages_ignore_parameters_that_are_not_their_own(admin, admin_client):
    for n in range(30):
        create_campaign(admin, f"Campaign {n}", "Hi", "Body")
    big = make_draft(admin, recipients=numbered_addresses(60))
    for n in range(60):
        record_audit(admin, "user_created", details={"user_id": admin.id, "n": n})
    db.session.commit()

    for url in (f"/?status=draft&{STRAY}", f"/campaigns/{big.id}?q=user&status=pending&{STRAY}",
                f"/admin/audit?action=user_created&{STRAY}"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert 'rel="prev"' in page, url
        assert "endpoint=" not in page and "_method=" not in page, url
    first_page = admin_client.get(f"/?status=draft&{STRAY}").get_data(as_text=True)
    assert 'href="/campaigns?status=draft&amp;page=1" rel="prev"' in first_page, first_page[first_page.find("pager"):][:400]


def test_an_unsubscribe_link_older_than_180_days_shows_a_clear_page(app, client, manager, monkeypatch):
    campaign = make_draft(manager, recipients="jane@example.com\n")
    recipient = db.session.scalar(db.select(Recipient).where(Recipient.campaign_id == campaign.id))
    long_ago = int(time.time()) - 181 * 86400
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
        old = make_unsubscribe_token(app.config["SECRET_KEY"], campaign.id, recipient.id)
    fresh = make_unsubscribe_token(app.config["SECRET_KEY"], campaign.id, recipient.id)

    for response in (client.get(f"/u/{old}"), client.post(f"/u/{old}")):
        assert response.status_code == 410
        page = response.get_data(as_text=True)
        assert "This unsubscribe link has expired" in page and "180 days" in page
    assert client.get(f"/u/{fresh}").status_code == 200
    assert client.get("/u/forged.token").status_code == 404


def test_the_export_quotes_every_cell_and_defuses_formula_starts(manager_client, manager):
    campaign = make_draft(manager, recipients='a@example.com,x;=1+1\nb@example.com,"y,@SUM(1)"\nc@example.com, =2\n')
    text = manager_client.get(f"/campaigns/{campaign.id}/results.csv").get_data(as_text=True)

    # Every cell is quoted (OWASP "CSV injection"): a spreadsheet splitting on ";" keeps "x;=1+1" whole.
    assert '"a@example.com","x;=1+1","pending"' in text
    assert text.splitlines()[0] == '"email","name","status","attempts","smtp_code","last_error","soft_bounces","sent_at"'
    names = {row[0]: row[1] for row in list(csv.reader(io.StringIO(text)))[1:]}
    assert names == {"a@example.com": "x;=1+1", "b@example.com": "y,@SUM(1)", "c@example.com": "'=2"}
