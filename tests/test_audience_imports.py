"""Importing a CSV into a list: a job with progress, typed attributes, upsert modes, row errors by
spreadsheet row, the suppression list winning, idempotence, and every kind of bad file refused
with a message and nothing stored lost."""

from __future__ import annotations

import codecs
import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mailadmin.extensions import db
from mailadmin.i18n import stored_english
from mailadmin.models import Contact, ImportChunk, MailingList, MembershipChange
from mailadmin.models.audience import ListMembership
from mailadmin.models.types import utcnow
from mailadmin.services.audiences import import_store
from mailadmin.services.audiences.bounds import IMPORT_TTL
from mailadmin.services.audiences.import_progress import load_record
from mailadmin.services.audiences.import_store import FileKind
from mailadmin.services.audiences.imports import begin_import
from mailadmin.services.audiences.lists import create_list
from mailadmin.services.audiences.memberships import AudienceError
from tests.factories import create_suppressions
from tests.support.jobs import run_queued_jobs

GOOD_CSV = (
    "email,name,plan,seats,renews,trial\n"
    "ann@example.com,Ann,pro,3,2027-01-31,yes\n"
    "bob@example.com,Bob,free,1,2026-12-01,no\n"
    "not-an-address,Nobody,pro,2,2027-02-01,no\n"
    "ann@example.com,Ann Lee,pro,5,2027-01-31,yes\n"
)


@pytest.fixture
def newsletter(manager) -> MailingList:
    return create_list(manager, "Newsletter")


def _import(app_env, user, mailing_list, data: bytes | str, mode="update", status="subscribed"):
    raw = data.encode() if isinstance(data, str) else data
    record = begin_import(user, mailing_list.id, io.BytesIO(raw), "people.csv", mode, status)
    run_queued_jobs(app_env["REDIS_URL"])
    return load_record(record.id)


def _attributes(email: str) -> dict:
    db.session.expire_all()
    return db.session.scalar(select(Contact.attributes).where(Contact.email == email))


def test_an_import_adds_members_with_typed_attributes_and_names_the_rejected_row(app_env, manager, newsletter):
    record = _import(app_env, manager, newsletter, GOOD_CSV)

    assert record.state == "done" and record.rows_read == 4 and record.percent == 100
    assert (record.added, record.rejected, record.duplicates) == (2, 1, 1)
    assert record.columns == {"plan": "text", "seats": "number", "renews": "date", "trial": "boolean"}
    # The address twice in one file: the last row wins.
    assert _attributes("ann@example.com") == {"plan": "pro", "seats": 5, "renews": "2027-01-31", "trial": True}
    assert record.errors[0][0] == 4 and record.errors[0][1] == "not-an-address"
    rejected = b"".join(import_store.chunks(record.id, FileKind.REJECTED)).decode()
    assert rejected.splitlines()[0] == "row,reason,email,name,plan,seats,renews,trial" and "\n4," in rejected
    history = db.session.scalars(select(MembershipChange.source)).all()
    assert history == ["import", "import"]


def test_a_second_import_of_the_same_file_changes_nothing(app_env, manager, newsletter):
    _import(app_env, manager, newsletter, GOOD_CSV)
    before = db.session.execute(select(Contact.email, Contact.updated_at).order_by(Contact.email)).all()

    again = _import(app_env, manager, newsletter, GOOD_CSV)

    assert (again.added, again.updated) == (0, 0)
    assert db.session.execute(select(Contact.email, Contact.updated_at).order_by(Contact.email)).all() == before
    assert db.session.scalar(select(func.count()).select_from(MembershipChange)) == 2


def test_the_modes_add_only_update_and_replace_treat_existing_contacts_as_named(app_env, manager, newsletter):
    _import(app_env, manager, newsletter, "email,plan,country\nann@example.com,pro,DE\n")

    _import(app_env, manager, newsletter, "email,plan\nann@example.com,free\n", mode="add")
    assert _attributes("ann@example.com") == {"plan": "pro", "country": "DE"}
    updated = _import(app_env, manager, newsletter, "email,plan\nann@example.com,free\n", mode="update")
    assert updated.updated == 1 and _attributes("ann@example.com") == {"plan": "free", "country": "DE"}
    _import(app_env, manager, newsletter, "email,seats\nann@example.com,2\n", mode="replace")
    assert _attributes("ann@example.com") == {"seats": 2}


def test_a_suppressed_address_is_rejected_as_suppressed_and_never_subscribed(app_env, manager, newsletter):
    create_suppressions(["bob@example.com"])

    record = _import(app_env, manager, newsletter, GOOD_CSV)

    assert [error[1:] for error in record.errors if error[2] == "suppressed"] == [["bob@example.com", "suppressed"]]
    emails = db.session.scalars(select(Contact.email).join(ListMembership)).all()
    assert "bob@example.com" not in emails


def test_an_unconfirmed_import_leaves_new_members_unconfirmed_and_mails_each_its_confirmation(
    app_env, manager, newsletter, smtp
):
    _import(app_env, manager, newsletter, GOOD_CSV, status="unconfirmed")
    assert set(db.session.scalars(select(ListMembership.status))) == {"unconfirmed"}
    run_queued_jobs(app_env["REDIS_URL"])  # the confirmation jobs the import queued once it committed
    members = db.session.scalars(select(Contact.email).join(ListMembership)).all()
    assert sorted(smtp.recipients()) == sorted(members)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"\x00\x01\x02PK\x03\x04" * 200, "binary"),
    (b"ann@example.com,Ann\nbob@example.com,Bob\n", "must name the columns"),
    (("email," + ",".join(f"c{n}" for n in range(10_000)) + "\n").encode(), "10,001 columns"),
    (b"plan,seats\npro,3\n", "No column is named email"),
])
def test_a_bad_file_is_refused_with_a_message_before_anything_is_queued(app_env, manager, newsletter, data, message):
    with pytest.raises(AudienceError, match=message):
        begin_import(manager, newsletter.id, io.BytesIO(data), "bad.csv", "update", "subscribed")
    assert load_record("x") is None and not run_queued_jobs(app_env["REDIS_URL"])


def test_utf16_and_semicolons_are_read_and_a_100kb_value_rejects_only_its_row(app_env, manager, newsletter):
    utf16 = codecs.BOM_UTF16_LE + "email;name;city\nzoe@example.com;Zoë;Köln\n".encode("utf-16-le")
    record = _import(app_env, manager, newsletter, utf16)
    assert record.added == 1 and _attributes("zoe@example.com") == {"city": "Köln"}

    huge = "email,bio\ncat@example.com," + "x" * 100_000 + "\ndan@example.com,short\n"
    record = _import(app_env, manager, newsletter, huge)
    assert (record.added, record.rejected) == (1, 1)
    assert record.errors[0][0] == 2 and "100,000 characters" in stored_english(record.errors[0][2])
    assert "2,\"the value of bio is 100,000 characters long (at most" in (
        b"".join(import_store.chunks(record.id, FileKind.REJECTED)).decode())
    assert _attributes("zoe@example.com") == {"city": "Köln"}  # what was stored stays


def test_a_manager_cannot_import_into_another_managers_list(app_env, other_manager, newsletter):
    with pytest.raises(AudienceError) as refused:
        begin_import(other_manager, newsletter.id, io.BytesIO(GOOD_CSV.encode()), "p.csv", "update", "subscribed")
    assert refused.value.kind == "not_found"


def _stored_kinds() -> list[tuple[str, str]]:
    db.session.expire_all()
    return db.session.execute(select(ImportChunk.import_id, ImportChunk.kind).distinct()).all()


def test_the_upload_waits_in_the_database_for_the_worker_and_is_gone_once_imported(
        app_env, manager, newsletter, monkeypatch):
    monkeypatch.setattr(import_store, "CHUNK_BYTES", 7)  # many chunks; "ë" and "ö" cut across their edges
    data = "email,name,city\n" + "".join(f"p{n}@example.com,Zoë {n},Köln\n" for n in range(50))
    record = begin_import(manager, newsletter.id, io.BytesIO(data.encode()), "p.csv", "update", "subscribed")
    assert _stored_kinds() == [(record.id, "upload")]  # no file on the web host's disk: the worker reads this

    run_queued_jobs(app_env["REDIS_URL"])

    assert load_record(record.id).added == 50 and _attributes("p49@example.com") == {"city": "Köln"}
    assert db.session.scalar(select(Contact.name).where(Contact.email == "p7@example.com")) == "Zoë 7"
    assert _stored_kinds() == [(record.id, "rejected")]  # the upload is deleted with the merge
    assert b"".join(import_store.chunks(record.id, FileKind.REJECTED)).decode() == "row,reason,email,name,city\r\n"


def test_a_refused_file_is_not_kept_and_stored_files_older_than_the_records_are_purged(
        app_env, manager, newsletter, monkeypatch):
    with pytest.raises(AudienceError):
        begin_import(manager, newsletter.id, io.BytesIO(b"plan\npro\n"), "bad.csv", "update", "subscribed")
    assert _stored_kinds() == []
    old = _import(app_env, manager, newsletter, GOOD_CSV)
    later = utcnow() + timedelta(seconds=IMPORT_TTL + 60)
    monkeypatch.setattr(import_store, "utcnow", lambda: later)

    fresh = begin_import(manager, newsletter.id, io.BytesIO(GOOD_CSV.encode()), "p.csv", "update", "subscribed")

    assert old.id != fresh.id and _stored_kinds() == [(fresh.id, "upload")]
