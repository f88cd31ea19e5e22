"""Audience import benchmark on PostgreSQL, one JSON line:

{"bench": "audience_import", ...}: 1,000,000 contacts with 5 attributes imported into a list by a
real worker process (`python worker.py --burst`: type inference, address checks, COPY into a staging
table, one merge), against a baseline measured in the same run: a bare COPY of the same file into a
table of text columns (no parsing in Python, no checks, no merge). Goal: <= 60 s. While the import
runs, the web app (a test client in this process) keeps answering the lists page; the line gives its
median and worst time meanwhile. Afterwards, at 1M contacts: the lists page, a list's page and a
contact's page (goal <= 50 ms each, medians).

The scratch database is created and dropped here (BENCH_DATABASE_URL, else TEST_DATABASE_URL /
DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.dashboard import PASSWORD, _bench_app, _get, _login, _median_ms, postgres_or_skip

# BENCH_AUDIENCE_CONTACTS: a smaller run for a quick look (the figures in the README are of 1,000,000).
CONTACTS = int(os.environ.get("BENCH_AUDIENCE_CONTACTS", "1000000"))
GOAL_SECONDS = 60
PAGE_GOAL_MS = 50
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_contacts_csv(path: Path, rows: int = CONTACTS) -> int:
    """A CSV of `rows` contacts with a name and 5 attributes (text, number, date, boolean, text); its size."""
    plans, countries = ("free", "pro", "team"), ("DE", "FR", "US", "GB", "NL", "ES", "IT")
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,plan,seats,renews,trial,country\n")
        for n in range(rows):
            out.write(f"contact{n}@example{n % 97}.com,Contact {n},{plans[n % 3]},{n % 50},"
                      f"2027-{1 + n % 12:02d}-{1 + n % 28:02d},{'yes' if n % 4 == 0 else 'no'},{countries[n % 7]}\n")
    return path.stat().st_size


def baseline_copy(app, path: Path) -> float:
    """Seconds of a bare COPY of the file into a table of text columns."""
    from mailadmin.extensions import db

    with app.app_context():
        connection = db.engine.raw_connection()
        try:
            cursor = connection.driver_connection.cursor()
            cursor.execute("CREATE TABLE bench_copy (email text, name text, plan text, seats text, renews text, "
                           "trial text, country text)")
            started = time.perf_counter()
            with path.open("rb") as source, cursor.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER)") as copy:
                while chunk := source.read(1024 * 1024):
                    copy.write(chunk)
            connection.commit()
            return time.perf_counter() - started
        finally:
            connection.close()


def _start_import(app, path: Path) -> tuple[str, int]:
    from mailadmin.extensions import db
    from mailadmin.models import User
    from mailadmin.services.audiences.imports import begin_import
    from mailadmin.services.audiences.lists import create_list
    from tests.factories import create_user

    with app.app_context():
        create_user("manager@bench.example.com", "manager", PASSWORD)
        owner = db.session.scalar(sa.select(User).where(User.email == "manager@bench.example.com"))
        customers = create_list(owner, "Customers")
        with path.open("rb") as upload:
            record = begin_import(owner, customers.id, upload, path.name, "update", "subscribed")
        return record.id, customers.id


def _run_worker_while_serving(app, env: dict[str, str], import_id: str) -> dict:
    """Run the queued import in a worker process; meanwhile time the lists page. Returns the figures."""
    from mailadmin.services.audiences.import_progress import load_record

    client = app.test_client()
    _login(client, "manager@bench.example.com")
    lists_page = _get(client, "/audiences/lists")
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "worker.py", "--burst"], cwd=PROJECT_ROOT,
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers: list[float] = []
    while worker.poll() is None:
        begun = time.perf_counter()
        lists_page()
        answers.append((time.perf_counter() - begun) * 1000)
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    with app.app_context():
        record = load_record(import_id)
    if record is None or record.state != "done" or record.added != CONTACTS:
        raise RuntimeError(f"the import did not finish as expected: {record}")
    return {"import_seconds": round(seconds, 1), "rows_per_s": round(CONTACTS / seconds),
            "phase_seconds": record.seconds,
            "lists_page_during_import_median_ms": round(statistics.median(answers), 1) if answers else None,
            "lists_page_during_import_max_ms": round(max(answers), 1) if answers else None}


def _pages_at_scale(app, list_id: int) -> dict:
    from mailadmin.extensions import db
    from mailadmin.models import Contact

    with app.app_context():
        middle = CONTACTS // 2
        contact_id = db.session.scalar(sa.select(Contact.id).where(Contact.email == f"contact{middle}@example{middle % 97}.com"))
    client = app.test_client()
    _login(client, "manager@bench.example.com")
    return {
        "lists_page_ms": _median_ms(_get(client, "/audiences/lists")),
        "list_page_ms": _median_ms(_get(client, f"/audiences/lists/{list_id}")),
        "contact_page_ms": _median_ms(_get(client, f"/audiences/contacts/{contact_id}")),
        "page_goal_ms": PAGE_GOAL_MS,
    }


def main() -> None:
    sys.path.insert(0, str(PROJECT_ROOT))
    from mailadmin.devtools.redis_server import EmbeddedRedis
    from tests.support import databases

    if postgres_or_skip("audience_import") is None:
        return
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database("postgresql", Path(tmp)) as url, \
            EmbeddedRedis() as redis_server:
        from flask_migrate import upgrade

        app = _bench_app(url, redis_server.url)
        with app.app_context():
            upgrade()
        path = Path(tmp) / "contacts.csv"
        size = write_contacts_csv(path)
        baseline = baseline_copy(app, path)
        import_id, list_id = _start_import(app, path)
        env = {"DATABASE_URL": url, "REDIS_URL": redis_server.url, "APP_ENV": "development"}
        result = {"bench": "audience_import", "database": "postgresql", "contacts": CONTACTS, "attributes": 5,
                  "csv_bytes": size, "baseline_copy_seconds": round(baseline, 2)}
        result.update(_run_worker_while_serving(app, env, import_id))
        result["vs_baseline"] = round(result["import_seconds"] / baseline, 1)
        result["meets_goal"] = result["import_seconds"] <= GOAL_SECONDS
        result.update(_pages_at_scale(app, list_id))
        print(json.dumps(result), flush=True)
        with app.app_context():
            from mailadmin.extensions import db

            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
