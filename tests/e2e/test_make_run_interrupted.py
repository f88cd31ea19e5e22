"""Ctrl-C of `make run` in the middle of a send: every process the launcher started stops within
seconds (the work horse RQ forked into a process group of its own included), nothing is left
holding the SQLite file or retrying the embedded Redis that is gone, and `make run` again finishes
the campaign with every message delivered exactly once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mailadmin import create_app
from mailadmin.devtools.smtp_capture import CaptureSMTP
from mailadmin.extensions import db
from mailadmin.models import User
from tests.factories import create_started_campaign, fresh_campaign, recipient_statuses
from tests.support.launcher import Launcher, processes_of
from tests.support.waiting import wait_until

RECIPIENTS = 2000
# Slow enough that the send takes many seconds on 4 connections, so the Ctrl-C lands mid-send.
SECONDS_PER_MESSAGE = 0.02
DELIVERED_BEFORE_CTRL_C = 300
ALL_GONE_WITHIN_SECONDS = 15


def _app_on(launcher: Launcher):
    """An app on the launcher's own database and Redis, to start a campaign and read it back."""
    return create_app({"DATABASE_URL": launcher.env["DATABASE_URL"], "REDIS_URL": launcher.redis_url,
                       "APP_ENV": "development", "TESTING": True, "SETUP_LOGGING": False})


def _interrupt_and_wait_until_nothing_is_left(launcher: Launcher, instance_dir) -> None:
    interrupted = time.monotonic()
    launcher.interrupt()
    launcher.process.wait(timeout=ALL_GONE_WITHIN_SECONDS)
    remaining = ALL_GONE_WITHIN_SECONDS - (time.monotonic() - interrupted)
    try:
        wait_until(lambda: not processes_of(instance_dir), remaining, interval=0.2)
    except AssertionError:
        pytest.fail(f"still running {ALL_GONE_WITHIN_SECONDS} s after Ctrl-C: {processes_of(instance_dir)}\n"
                    f"{launcher.text()[-3000:]}")


def test_ctrl_c_mid_send_stops_every_process_and_the_next_run_delivers_everyone_once(tmp_path):
    smtp = CaptureSMTP().start()
    smtp.delay_per_message(SECONDS_PER_MESSAGE)
    settings = {"SMTP_URL": smtp.url, "MAILER_SMTP_MAX_PER_HOUR": "100000", "MAIL_FROM": "News <news@example.com>"}
    launcher = Launcher(tmp_path, **settings).start()
    try:
        app = _app_on(launcher)
        with app.app_context():
            owner = db.session.scalar(select(User).where(User.email == "manager@example.com"))
            campaign_id = create_started_campaign(owner, RECIPIENTS).id
            db.session.remove()
            db.engine.dispose()  # the test's own hold on the SQLite file goes before it counts processes
        assert smtp.wait_for(DELIVERED_BEFORE_CTRL_C, timeout=120), launcher.text()[-3000:]
        assert len(smtp.recipients()) < RECIPIENTS, "the send ended before Ctrl-C: slow the SMTP server down"

        _interrupt_and_wait_until_nothing_is_left(launcher, tmp_path)
        assert len(smtp.recipients()) < RECIPIENTS

        launcher = Launcher(tmp_path, **settings).start()
        with _app_on(launcher).app_context():
            wait_until(lambda: fresh_campaign(campaign_id).status == "finished", 120, interval=0.5,
                       message="the campaign to finish after the restart")
            assert recipient_statuses(campaign_id) == {"sent": RECIPIENTS}
            db.session.remove()
            db.engine.dispose()
        counts = smtp.recipients()
        assert {address: n for address, n in counts.items() if n > 1} == {}, "someone was sent twice"
        assert len(counts) == RECIPIENTS
        _interrupt_and_wait_until_nothing_is_left(launcher, tmp_path)
    finally:
        launcher.stop()
        smtp.stop()
