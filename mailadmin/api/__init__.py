"""The REST API at /api/v1 (SPEC "The REST API"): flask-smorest blueprints whose marshmallow schemas
validate each request and serialize each answer, and from which the OpenAPI 3.1 description at
/api/v1/openapi.json is generated; a browsable reference at /api/v1/docs (vendored Swagger UI).

Every operation calls the same services as the pages; nothing here decides a business rule.
Modules: auth (bearer tokens, scopes, rate), problems (RFC 9457 answers), idempotency, pagination,
schemas, and one module per resource.
"""

from __future__ import annotations

from flask import Flask, render_template
from flask_smorest import Api

from mailadmin.api.problems import ProblemSchema
from mailadmin.errors.problems import PROBLEM_MIMETYPE
from mailadmin.extensions import csrf

API_PREFIX = "/api/v1"


class MailadminApi(Api):
    """flask-smorest's Api, its errors documented as problem details; the app's own error handlers
    (errors/) answer those outside the API's views (an unknown /api path, a 405), so no app-wide
    handler is registered here."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        return None

    def _register_responses(self) -> None:
        super()._register_responses()
        # The error answers are problem+json, not JSON: document them so.
        for response in self.spec.components.responses_lazy.values():
            content = response.get("content", {})
            if "application/json" in content:
                content[PROBLEM_MIMETYPE] = content.pop("application/json")


def _config(app: Flask) -> None:
    app.config.update(
        API_TITLE="mailadmin",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "servers": [{"url": "/"}],
            "info": {"description": "Bulk email campaigns, audiences and their results, for the CRM and scripts. "
                                    "Authenticate with `Authorization: Bearer <token>` (account page or "
                                    "`flask tokens create`)."},
        },
    )


def init_app(app: Flask) -> None:
    """Register the API's blueprints, its description and its reference page."""
    from mailadmin.api import campaign_actions  # noqa: F401  (its routes join the campaigns blueprint)
    from mailadmin.api.campaigns import blp as campaigns_blp
    from mailadmin.api.contacts import blp as contacts_blp
    from mailadmin.api.lists import blp as lists_blp
    from mailadmin.api.suppressions import blp as suppressions_blp

    _config(app)
    api = MailadminApi(app)
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for blp in (campaigns_blp, contacts_blp, lists_blp, suppressions_blp):
        csrf.exempt(blp)
        api.register_blueprint(blp)

    def docs():
        return render_template("api_docs.html")

    app.add_url_rule(f"{API_PREFIX}/docs", "api_docs", docs)
