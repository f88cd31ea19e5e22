"""Campaign templates: personalization, escaping, and the sandbox refusing what it must at save time."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from mailadmin.mail.templates import (
    CampaignTemplates,
    RenderedParts,
    TemplateProblem,
    merge_field_name,
    recipient_fields,
    referenced_fields,
    sample_fields,
    validate_campaign_templates,
)


def test_merge_fields_are_rendered_into_subject_text_and_html():
    templates = CampaignTemplates("Hi {{ name }}", "Dear {{ name }} <{{ email }}>", "<p>{{ name }} at {{ company }}</p>")

    parts = templates.render(recipient_fields("jo@example.com", "Jo", {"company": "ACME"}))

    assert parts == RenderedParts("Hi Jo", "Dear Jo <jo@example.com>", "<p>Jo at ACME</p>")


def test_html_body_escapes_merge_fields_while_subject_and_text_keep_them_verbatim():
    templates = CampaignTemplates("{{ name }}", "{{ name }}", "<b>{{ name }}</b>")

    parts = templates.render(recipient_fields("t@example.com", "<Tom & \"Jerry\">"))

    assert parts.subject == '<Tom & "Jerry">'
    assert parts.text == '<Tom & "Jerry">'
    assert parts.html == "<b>&lt;Tom &amp; &#34;Jerry&#34;&gt;</b>"


def test_unknown_and_missing_merge_fields_render_as_empty_strings():
    templates = CampaignTemplates("[{{ nickname }}]", "[{{ company.address.city }}][{{ name }}]", None)

    parts = templates.render(recipient_fields("x@example.com", None, {"company": None}))

    assert parts == RenderedParts("[]", "[][]", None)
    assert validate_campaign_templates("[{{ nickname }}]", "[{{ company.address.city }}]", None) == []


def test_a_campaign_without_html_renders_no_html_part():
    templates = CampaignTemplates("s", "t", "")

    assert templates.has_html is False
    assert templates.render(sample_fields()).html is None


def test_import_columns_become_merge_fields_by_normalized_name():
    fields = recipient_fields("a@example.com", "Ann", {"First Name": "Ann", "Company-ID": 7, "email": "spoof@example.com"})

    assert merge_field_name(" First Name ") == "first_name"
    assert fields["first_name"] == "Ann"
    assert fields["company_id"] == 7
    assert fields["email"] == "a@example.com"  # the recipient's own address always wins


def test_sample_fields_describe_a_made_up_recipient_with_the_campaign_columns():
    fields = sample_fields(["company"])

    assert fields["name"] == "Jane Doe"
    assert fields["email"] == "jane@example.com"
    assert fields["company"] == "Sample company"


def test_referenced_fields_lists_the_variables_a_template_uses():
    assert referenced_fields("Hi {{ name }}, {% for x in items %}{{ x }}{% endfor %}{{ company|upper }}") == {
        "name",
        "items",
        "company",
    }
    assert referenced_fields("{{ broken") == set()


def test_valid_templates_have_no_problems():
    assert validate_campaign_templates("Hi {{ name }}", "Hello {{ name|title }}", "<p>{{ email }}</p>") == []


def test_syntax_error_is_reported_with_its_field_and_line():
    problems = validate_campaign_templates("Hi", "Hello", "<html>\n<body>\n<p>{{ name }</p>\n</body>")

    assert len(problems) == 1
    problem = problems[0]
    assert (problem.field, problem.line) == ("body_html", 3)
    assert str(problem) == "HTML body, line 3: unexpected '}'"


def test_each_broken_template_is_reported_separately():
    problems = validate_campaign_templates("{{ name", "{% if name %}", "{% endfor %}")

    assert [problem.field for problem in problems] == ["subject", "body_text", "body_html"]
    assert all(problem.line == 1 for problem in problems)


def test_sandbox_escape_is_refused_at_validation():
    problems = validate_campaign_templates("Hi", "{{ ''.__class__.__mro__ }}", None)

    assert problems
    assert {problem.field for problem in problems} == {"body_text"}
    assert "not allowed" in str(problems[0])


def test_sandbox_escape_in_a_branch_the_sample_never_takes_is_refused_too():
    source = "Hello\n{% if name == 'nobody' %}\n{{ cycler.__init__.__globals__ }}\n{% endif %}"

    problems = validate_campaign_templates("Hi", source, None)

    assert problems and problems[0].line == 3


def test_sandbox_escape_through_a_computed_attribute_name_is_refused():
    problems = validate_campaign_templates("Hi", "ok", "<p>\n{{ ''['__cla' ~ 'ss__'] }}</p>")

    assert [(problem.field, problem.line) for problem in problems] == [("body_html", 2)]
    assert "not allowed" in problems[0].message


def test_templates_cannot_mutate_data():
    problems = validate_campaign_templates("Hi", "{% set xs = [] %}{{ xs.append(1) }}", None)

    assert problems and "not allowed" in problems[0].message


def test_unsafe_access_raises_at_render_instead_of_rendering_empty():
    templates = CampaignTemplates("Hi", "{{ name.__class__ }}", None)

    with pytest.raises(SecurityError):
        templates.render(sample_fields())


def test_render_errors_like_division_by_zero_are_found_at_save_time_with_their_line():
    problems = validate_campaign_templates("Hi", "Hello\n\n{{ 1/0 }}", None)

    assert [(problem.field, problem.line) for problem in problems] == [("body_text", 3)]
    assert "division by zero" in problems[0].message


def test_a_subject_on_several_lines_is_refused():
    problems = validate_campaign_templates("Hi\nBcc: victim@example.com", "body", None)

    assert any(problem.field == "subject" and "single line" in problem.message for problem in problems)


def test_compiling_a_broken_template_raises_a_template_problem():
    with pytest.raises(TemplateProblem) as caught:
        CampaignTemplates("ok", "fine", "<p>\n{% if %}</p>")

    assert (caught.value.field, caught.value.line) == ("body_html", 2)
