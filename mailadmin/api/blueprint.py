"""The API's blueprint: flask-smorest's, with its errors answered as problem details, its rate
headers on every answer, no CSRF (a bearer token is not sent by a browser on its own) and no CORS
(no Access-Control-* header is ever added: other sites' scripts cannot read the API)."""

from __future__ import annotations

from collections.abc import Callable

import marshmallow as ma
from flask import Response, g
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from mailadmin.api.auth import rate_headers, requires
from mailadmin.api.idempotency import idempotent as idempotent_write
from mailadmin.api.pagination import PageArgs
from mailadmin.api.problems import ApiProblem, api_problem, http_problem, service_problem
from mailadmin.services.errors import ServiceError

NOT_FOUND = {"404": "NOT_FOUND"}
NOT_FOUND_OR_CONFLICT = {"404": "NOT_FOUND", "409": "CONFLICT"}


def _add_rate_headers(response: Response) -> Response:
    rate = g.get("api_rate")
    if rate is not None:
        for name, value in rate_headers(rate).items():
            response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class ApiBlueprint(Blueprint):
    """A blueprint of /api/v1 resources."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_error_handler(ApiProblem, api_problem)
        self.register_error_handler(ServiceError, service_problem)
        self.register_error_handler(HTTPException, http_problem)
        self.after_request(_add_rate_headers)

    def operation(self, method: str, rule: str, scope: str, answer: type[ma.Schema] | ma.Schema | None = None, *,
                  status: int = 200, body: type[ma.Schema] | None = None, query: type[ma.Schema] | None = None,
                  paged: bool = False, idempotent: bool = False, errors: dict[str, str] | None = None,
                  **answer_doc) -> Callable:
        """One API operation: its route, the token scope it needs, its request (`body`, `query`, and
        `limit`/`cursor` when `paged`), its answer and its documented error answers. The view gets the
        body or query, then the paging, as positional arguments."""
        decorators = [self.route(rule, methods=[method]), requires(scope)]
        if idempotent:
            decorators.append(idempotent_write)
        if body is not None:
            decorators.append(self.arguments(body))
        if query is not None:
            decorators.append(self.arguments(query, location="query"))
        if paged:
            decorators.append(self.arguments(PageArgs, location="query"))
        decorators.append(self.response(status, answer, **answer_doc))
        if errors:
            decorators.append(self.doc(responses=errors))

        def decorate(view: Callable) -> Callable:
            for decorator in reversed(decorators):
                view = decorator(view)
            return view

        return decorate
