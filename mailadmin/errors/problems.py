"""Errors for machines: which requests a program makes, and RFC 9457 problem details for them.

A machine endpoint — the provider webhooks, the API, `/metrics`, `/healthz` — is called by a
program that reads the status code and a JSON body. A redirect to a form with a flashed message,
or an HTML error page, means nothing to it (a provider would even count a 303 as delivered). This
module is the one place that says which paths those are; every error handler asks it.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Response, json, request

# Path prefixes served to programs: the prefix itself and everything below it.
MACHINE_PATHS = ("/webhooks", "/api", "/metrics", "/healthz")
PROBLEM_MIMETYPE = "application/problem+json"


def is_machine_endpoint(path: str | None = None) -> bool:
    """Is `path` (default: this request's) one that programs call, whatever they send as Accept?"""
    path = request.path if path is None else path
    return any(path == prefix or path.startswith(prefix + "/") for prefix in MACHINE_PATHS)


def wants_problem_details() -> bool:
    """Answer this request's error as problem details: a machine endpoint, or a client asking for JSON first."""
    return is_machine_endpoint() or request.accept_mimetypes.best in ("application/json", PROBLEM_MIMETYPE)


def problem_response(status: int, detail: str, *, title: str | None = None, type_uri: str = "about:blank",
                     headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 `application/problem+json` answer: type, title, status, detail."""
    body = {"type": type_uri, "title": title or HTTPStatus(status).phrase, "status": status, "detail": detail}
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response
