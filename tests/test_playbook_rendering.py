"""The playbook rendered for the operations page: GitHub's anchors, links between the files, no raw HTML."""

from __future__ import annotations

from mailadmin.admin.playbook import render_playbook


def test_headings_get_githubs_anchors_and_repeated_ones_a_counter(app):
    with app.test_request_context():
        html = render_playbook("## 3. The global sending switch\n\n## `rate_limit`: quota\n\n## `rate_limit`: quota\n")
    assert '<h2 id="3-the-global-sending-switch"><a href="#3-the-global-sending-switch">' in html
    assert '<h2 id="rate_limit-quota">' in html
    assert '<h2 id="rate_limit-quota-1">' in html


def test_links_to_the_other_playbook_file_point_at_this_site(app):
    with app.test_request_context():
        html = render_playbook("See [alerts](OBSERVABILITY.md#alerts), [top](#top) and [rq](https://python-rq.org).\n")
    assert 'href="/admin/playbook/observability#alerts"' in html
    assert 'href="#top"' in html
    assert 'href="https://python-rq.org"' in html


def test_raw_html_and_script_links_are_not_rendered(app):
    with app.test_request_context():
        html = render_playbook('<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">\n\n[x](javascript:alert(1))\n')
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


def test_fenced_code_keeps_its_language_and_tables_scroll(app):
    with app.test_request_context():
        html = render_playbook("```sql\nSELECT 1;\n```\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    assert '<pre><code class="language-sql">SELECT 1;</code></pre>' in html
    assert '<div class="table-scroll"><table>' in html
