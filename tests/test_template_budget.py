"""Templates are untrusted: every render has a budget (time, steps, size), at save, preview,
test email and send — no template can hang a web process."""

from __future__ import annotations

import time

import pytest

from mailadmin.mail.budget import MAX_OUTPUT_CHARS
from mailadmin.mail.templates import CampaignTemplates, TemplateBudgetExceeded, validate_campaign_templates
from tests.factories import make_draft, reload
from tests.support.web import flashes, submit

NESTED_LOOPS = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x"
    "{% endfor %}{% endfor %}{% endfor %}"
)
# Only real recipients run the loops, so the sample render at save passes; the loop bound is not a
# constant either, so no static check can see it.
POISON_FOR_REAL_RECIPIENTS = (
    "Hi {{ name }}\n{% if email != 'jane@example.com' %}{% for a in range(100000) %}"
    "{% for b in range((name|length) * 10000) %}x{% endfor %}{% endfor %}{% endif %}"
)
HUGE_OUTPUT = "{{ 'a' * 10**8 }}"


def save_body(client, campaign, body_text: str):
    return submit(
        client,
        f"/campaigns/{campaign.id}/edit",
        {"name": campaign.name, "subject": "Hello", "body_text": body_text, "body_html": ""},
    )


def test_nested_loops_are_refused_at_save_within_two_seconds(manager_client, manager):
    campaign = make_draft(manager)
    started = time.process_time()  # CPU, not wall time: other processes may share the cores
    response = save_body(manager_client, campaign, NESTED_LOOPS)
    took = time.process_time() - started

    assert took < 2
    assert response.status_code == 400
    assert "template exceeded its budget" in response.get_data(as_text=True).lower()
    assert reload(campaign).body_text != NESTED_LOOPS


@pytest.mark.parametrize(
    "body",
    [
        HUGE_OUTPUT,
        "{{ 10 ** 100000 }}",
        "{{ 'x' | center(10**9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{% set s = 'x' * 250000 %}{{ ([s] * 100) | join }}",
        "{% macro twice(s, n) %}{{ twice(s ~ s, n - 1) if n else s }}{% endmacro %}{{ twice('ab', 60) }}",
        "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
        "{% for i in range(n | default(100000)) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    ],
    ids=["string-times", "power", "center", "printf-width", "format-width", "join", "concat", "output", "loops"],
)
def test_a_sample_render_over_budget_is_refused_at_save_with_the_reason(manager_client, manager, body):
    campaign = make_draft(manager)
    started = time.process_time()  # CPU, not wall time: other processes may share the cores
    response = save_body(manager_client, campaign, body)

    assert time.process_time() - started < 2
    assert response.status_code == 400
    assert "template exceeded its budget" in response.get_data(as_text=True).lower()


def test_an_ordinary_template_fits_the_budget():
    problems = validate_campaign_templates(
        "Hello {{ name | title }}",
        "{% for item in ['a', 'b'] %}{{ loop.index }}. {{ item | upper }}\n{% endfor %}{{ '%05d' % 42 }} "
        "{{ 'x' * 3 }} {{ [1, 2] | join(', ') }} {{ '{:>6}'.format('ok') }}",
        "<p>{{ name ~ '!' }}</p>",
    )
    assert problems == []


def test_a_poison_recipient_fails_within_a_second_with_the_budget_reason():
    templates = CampaignTemplates("Hello", POISON_FOR_REAL_RECIPIENTS)
    assert templates.render({"email": "jane@example.com", "name": "Jane"}).text.startswith("Hi Jane")

    started = time.process_time()  # CPU, not wall time: other processes may share the cores
    with pytest.raises(TemplateBudgetExceeded, match="template exceeded its budget"):
        templates.render({"email": "poison@example.com", "name": "Poison"})
    assert time.process_time() - started < 1


def test_the_output_budget_covers_the_whole_message():
    half = MAX_OUTPUT_CHARS // 2 + 10
    templates = CampaignTemplates("Hi", f"{{{{ 'a' * {half} }}}}", f"{{{{ 'b' * {half} }}}}")
    with pytest.raises(TemplateBudgetExceeded, match="longer than"):
        templates.render({})


def test_preview_and_test_email_answer_with_the_budget_reason_not_a_hang(manager_client, manager, smtp):
    campaign = make_draft(manager, recipients="poison@example.com,Poison\n")
    campaign.body_text = POISON_FOR_REAL_RECIPIENTS  # saved before the budget existed
    from mailadmin.extensions import db

    db.session.commit()

    started = time.process_time()  # CPU, not wall time: other processes may share the cores
    preview = manager_client.get(f"/campaigns/{campaign.id}/preview")
    assert time.process_time() - started < 2
    assert preview.status_code == 200
    assert "template exceeded its budget" in preview.get_data(as_text=True).lower()

    campaign.body_text = HUGE_OUTPUT
    db.session.commit()
    response = submit(manager_client, f"/campaigns/{campaign.id}/test-email", {"to_address": "me@example.com"})
    assert any("template exceeded its budget" in text.lower() for _, text in flashes(response.get_data(as_text=True)))
    assert smtp.messages == []
