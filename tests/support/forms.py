"""Reading forms out of rendered pages, the way a browser would."""

from __future__ import annotations

import re

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token_from(html: str) -> str:
    """The first CSRF token in a page; fails loudly when the page has none."""
    match = _CSRF.search(html)
    if not match:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1) or match.group(2)


def post_form(client, url: str, data: dict | None = None, *, page_url: str | None = None, **kwargs):
    """GET the page that holds the form, then POST `data` with its CSRF token."""
    token = csrf_token_from(client.get(page_url or url).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kwargs)


def path_for(endpoint: str, **values) -> str:
    """url_for() outside a request: the local path of an endpoint."""
    from flask import current_app, url_for

    with current_app.test_request_context():
        return url_for(endpoint, **values)
