"""The API's errors: one `application/problem+json` shape (RFC 9457) with a machine-readable
`type`, and `field` naming what was wrong. A service's refusal becomes a problem by its kind."""

from __future__ import annotations

import marshmallow as ma
from flask import Response, json
from werkzeug.exceptions import HTTPException, UnprocessableEntity

from mailadmin.errors.problems import problem_response
from mailadmin.services.drafts import DraftError
from mailadmin.services.errors import ErrorKind, ServiceError

TYPE_BASE = "/api/v1/problems/"

# The one mapping from a service refusal's kind to the API's status and problem type.
STATUS_BY_KIND = {
    ErrorKind.INVALID: (422, "invalid"),
    ErrorKind.NOT_FOUND: (404, "not-found"),
    ErrorKind.CONFLICT: (409, "conflict"),
    ErrorKind.TOO_LARGE: (409, "too-large"),
    ErrorKind.THROTTLED: (429, "throttled"),
    ErrorKind.UNAVAILABLE: (503, "unavailable"),
}


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, plus the field that was wrong and every field's messages."""

    type = ma.fields.String(required=True, metadata={"description": "A URI reference naming the kind of problem"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    field = ma.fields.String(metadata={"description": "The request field that was wrong, when one was"})
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Raw(),
                            metadata={"description": "Every wrong field and its messages"})


class ApiProblem(Exception):
    """An API refusal to answer as problem details (raised by the API layer itself)."""

    def __init__(self, status: int, kind: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, errors: dict | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.field = status, kind, detail, field
        self.headers = headers or {}
        self.errors = errors


def problem(status: int, kind: str, detail: str, *, field: str | None = None, errors: dict | None = None,
            headers: dict[str, str] | None = None) -> Response:
    """A problem response of type `/api/v1/problems/<kind>`, naming `field` when one was wrong."""
    response = problem_response(status, detail, type_uri=TYPE_BASE + kind, headers=headers)
    if field is not None or errors:
        body = response.get_json(force=True)
        if field is not None:
            body["field"] = field
        if errors:
            body["errors"] = errors
        response.set_data(json.dumps(body))
    return response


def api_problem(error: ApiProblem) -> Response:
    return problem(error.status, error.kind, error.detail, field=error.field, errors=error.errors,
                   headers=error.headers)


def _first_field(messages: dict, prefix: str = "") -> str | None:
    """The dotted path of the first wrong field in webargs' nested messages."""
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            return _first_field(value, path) or path
        return path
    return None


def validation_problem(error: UnprocessableEntity) -> Response:
    """webargs' 422: the request did not match the schema; name the first wrong field."""
    messages = (getattr(error, "data", None) or {}).get("messages") or {}
    # webargs groups by location ("json", "query"); the field is what the client knows.
    fields = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            fields.update(location_messages)
    field = _first_field(fields)
    detail = f"The field {field!r} is not valid." if field else "The request is not valid."
    return problem(422, "validation", detail, field=field, errors=fields or None)


def service_problem(error: ServiceError) -> Response:
    """A service's refusal, by kind; a draft's refusal names its first wrong field."""
    status, kind = STATUS_BY_KIND[error.kind]
    field = None
    errors = None
    if isinstance(error, DraftError) and error.errors:
        errors = error.errors
        field = next(iter(error.errors))
        if field == "campaign":
            field = None
    return problem(status, kind, error.message, field=field, errors=errors)


def http_problem(error: HTTPException) -> Response:
    """Any other HTTP error raised in an API view (abort(404), 413 ...)."""
    if isinstance(error, UnprocessableEntity) and getattr(error, "data", None):
        return validation_problem(error)
    kind = {404: "not-found", 413: "too-large-body", 405: "method-not-allowed"}.get(error.code or 500, "http-error")
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    return problem(error.code or 500, kind, error.description or "", headers=headers)
