"""The API's blueprint: flask-smorest's, with its errors answered as problem details, its rate
headers on every answer, no CSRF (a bearer token is not sent by a browser on its own) and no CORS
(no Access-Control-* header is ever added: other sites' scripts cannot read the API)."""

from __future__ import annotations

from flask import Response, g
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from mailadmin.api.auth import rate_headers
from mailadmin.api.problems import ApiProblem, api_problem, http_problem, service_problem
from mailadmin.services.errors import ServiceError


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
