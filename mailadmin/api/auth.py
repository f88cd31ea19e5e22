"""Who calls the API: `Authorization: Bearer <token>`, the token's scopes and its per-minute rate.

`requires(scope)` wraps every operation: a missing, unknown, expired or revoked token (or one whose
user was disabled or ended their sessions) answers 401, a token without the scope 403, a token past
its rate 429 with `Retry-After`. Inside the operation, `api_user()` is the token's user (the token
acts as them, never with more rights) and every audit row names the token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Response, g, make_response, request
from redis.exceptions import RedisError

from mailadmin.api.problems import ApiProblem
from mailadmin.extensions import get_redis, get_settings
from mailadmin.limits.api_rate import RateCount, count_api_request
from mailadmin.models import ApiToken, User
from mailadmin.services.api_tokens import authenticate_token
from mailadmin.services.audit import acting_through_token

BEARER = "bearer"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="mailadmin"'}
# Every protected operation documents these answers (components/responses, problem+json).
COMMON_RESPONSES = {"401": "UNAUTHORIZED", "403": "FORBIDDEN", "429": "TOO_MANY_REQUESTS",
                    "503": "SERVICE_UNAVAILABLE"}
BODY_RESPONSES = {"400": "BAD_REQUEST", "413": "REQUEST_ENTITY_TOO_LARGE"}
ARGUMENT_RESPONSES = {"422": "UNPROCESSABLE_ENTITY"}


def api_user() -> User:
    """The user the request's token acts as."""
    return g.api_token.user


def api_token() -> ApiToken:
    return g.api_token


def _authenticate() -> ApiToken:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != BEARER or not secret.strip():
        raise ApiProblem(401, "unauthenticated", "Send an API token: Authorization: Bearer <token>.",
                         headers=WWW_AUTHENTICATE)
    token, refusal = authenticate_token(secret.strip())
    if refusal is not None:
        raise ApiProblem(401, f"token-{refusal.value}", f"This API token is not valid ({refusal.value}).",
                         headers=WWW_AUTHENTICATE)
    return token


def _count(token: ApiToken) -> RateCount:
    try:
        rate = count_api_request(get_redis(), token.id, get_settings().api_requests_per_minute)
    except RedisError:  # a throttle fails closed
        raise ApiProblem(503, "unavailable", "Service temporarily unavailable. Please try again later.",
                         headers={"Retry-After": "5"}) from None
    g.api_rate = rate
    if not rate.allowed:
        raise ApiProblem(429, "rate-limited", f"This token may make {rate.limit} requests a minute.",
                         headers={"Retry-After": str(rate.reset_seconds), **rate_headers(rate)})
    return rate


def rate_headers(rate: RateCount) -> dict[str, str]:
    return {"RateLimit-Limit": str(rate.limit), "RateLimit-Remaining": str(rate.remaining),
            "RateLimit-Reset": str(rate.reset_seconds)}


def requires(scope: str) -> Callable:
    """Authenticate the request's token, count it against its rate, and require `scope`."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs) -> Response:
            token = _authenticate()
            g.api_token = token
            _count(token)
            if scope not in token.scope_set:
                raise ApiProblem(403, "missing-scope", f"This API token lacks the {scope!r} scope.")
            with acting_through_token(token.name):
                return make_response(view(*args, **kwargs))

        apidoc = dict(getattr(view, "_apidoc", {}))
        manual = dict(apidoc.get("manual_doc", {}))
        manual["security"] = [{BEARER: []}]
        manual["x-scope"] = scope
        arguments = apidoc.get("arguments", {}).get("parameters", [])
        has_body = any(a.get("in") == "json" for a in arguments)
        documented = {**COMMON_RESPONSES, **(BODY_RESPONSES if has_body else {}),
                      **(ARGUMENT_RESPONSES if arguments else {})}
        manual.setdefault("responses", {}).update(
            {code: name for code, name in documented.items() if code not in manual["responses"]})
        apidoc["manual_doc"] = manual
        wrapper._apidoc = apidoc
        return wrapper

    return decorator
