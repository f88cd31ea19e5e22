"""A poison template at send time, with a real `python worker.py` process: the recipient whose
render exceeds the budget fails alone, fast, and another manager's campaign keeps sending."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mailadmin.extensions import db
from mailadmin.models import Recipient
from mailadmin.services import campaigns as service
from tests.factories import create_campaign, fresh_campaign, recipient_statuses
from tests.support.waiting import wait_until

# Only the poison recipient runs the loops (as `{% if email != sample %}` would after passing the save check).
POISON_BODY = (
    "Hi {{ name }}\n{% if email == 'poison@example.test' %}{% for a in range(100000) %}"
    "{% for b in range(100000) %}x{% endfor %}{% endfor %}{% endif %}"
)


@pytest.fixture(autouse=True)
def _fast_engine(app_env) -> None:
    app_env.update({"MAILER_SEND_SLICE_SECONDS": "1", "MAILER_SEND_BATCH_SIZE": "5",
                    "MAILER_SMTP_MAX_PER_HOUR": "100000", "MAILER_SEND_PARALLEL_SLICES": "1"})


def test_a_poison_recipient_fails_alone_and_another_campaign_keeps_sending(app, smtp, make_user, engine_processes):
    owner = make_user("owner@example.com")
    other = make_user("other@example.com")
    engine_processes.worker()  # one worker: a held worker would stall everyone
    poisoned = create_campaign(owner, ["poison@example.test", "fine@example.test"], body_text=POISON_BODY)
    innocent = create_campaign(other, ["reader@example.test"], name="Another manager's news")

    started = time.monotonic()
    service.start_campaign(poisoned, owner, enforce_throttle=False)
    service.start_campaign(innocent, other, enforce_throttle=False)
    for campaign in (poisoned, innocent):
        wait_until(lambda c=campaign: fresh_campaign(c.id).status == "finished", 20, 0.1, "both campaigns to finish")
    took = time.monotonic() - started

    assert recipient_statuses(innocent.id) == {"sent": 1}
    assert recipient_statuses(poisoned.id) == {"sent": 1, "failed": 1}
    db.session.commit()
    poison = db.session.scalar(select(Recipient).where(Recipient.email == "poison@example.test"))
    assert poison.status == "failed" and poison.last_error.startswith("template exceeded its budget")
    assert set(smtp.recipients()) == {"fine@example.test", "reader@example.test"}
    # Before the budget the poison recipient held the only worker for the RQ job timeout (90 s).
    assert took < 15
    failures = [r for r in engine_processes.all_records() if r.get("message") == "Failed to send email"]
    assert len(failures) == 1 and "template exceeded its budget" in failures[0]["error"]
