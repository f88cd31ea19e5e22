"""`Idempotency-Key` on every POST that creates or starts something: a retried request with the same
key returns the first answer (and never makes a second campaign); the same key with another body is
refused (422). Answers are kept 24 hours in Redis, per token.

While the first request with a key runs, the key holds a "pending" mark (SET NX): a second request
with it meanwhile answers 409, so two concurrent retries cannot both start a campaign. A transient
answer (429, 503, a 5xx) is not kept: the client should retry it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable

from flask import Response, make_response, request
from redis.exceptions import RedisError

from mailadmin.api.auth import api_token
from mailadmin.api.problems import ApiProblem
from mailadmin.extensions import get_redis
from mailadmin.limits.window import KEY_PREFIX

HEADER = "Idempotency-Key"
KEPT_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255
# Visible ASCII, no space: what a header value can carry unchanged through every proxy.
KEY_PATTERN = "^[\\x21-\\x7e]{1,255}$"
_KEY = KEY_PREFIX + "api:idempotency:{token_id}:{key}"
_PENDING = "pending"
_KEPT_HEADERS = ("Location", "Content-Type")


def _fingerprint() -> str:
    return hashlib.sha256(b"%s %s\n" % (request.method.encode(), request.full_path.encode())
                          + request.get_data(cache=True)).hexdigest()


def _redis_key(key: str) -> str:
    return _KEY.format(token_id=api_token().id, key=hashlib.sha256(key.encode()).hexdigest())


def _replay(stored: dict, fingerprint: str) -> Response:
    if stored.get("fingerprint") != fingerprint:
        raise ApiProblem(422, "idempotency-key-reused",
                         "This Idempotency-Key was used with another request body.", field=HEADER)
    if stored.get("state") == _PENDING:
        raise ApiProblem(409, "idempotency-key-in-use",
                         "A request with this Idempotency-Key is still being answered; retry shortly.", field=HEADER)
    response = Response(stored["body"], status=stored["status"])
    response.headers.update(stored["headers"])
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _run_once(view: Callable, args, kwargs, key: str) -> Response:
    redis = get_redis()
    redis_key = _redis_key(key)
    fingerprint = _fingerprint()
    pending = json.dumps({"state": _PENDING, "fingerprint": fingerprint})
    if not redis.set(redis_key, pending, nx=True, ex=KEPT_SECONDS):
        stored = redis.get(redis_key)
        if stored is not None:
            return _replay(json.loads(stored), fingerprint)
        redis.set(redis_key, pending, nx=True, ex=KEPT_SECONDS)
    try:
        response = make_response(view(*args, **kwargs))
    except BaseException:
        redis.delete(redis_key)
        raise
    if response.status_code in (429, 503) or response.status_code >= 500:
        redis.delete(redis_key)
        return response
    kept = {"state": "done", "fingerprint": fingerprint, "status": response.status_code,
            "body": response.get_data(as_text=True),
            "headers": {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}}
    redis.set(redis_key, json.dumps(kept), ex=KEPT_SECONDS)
    return response


def idempotent(view: Callable) -> Callable:
    """Answer a request carrying an `Idempotency-Key` once; a retry gets the first answer."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return make_response(view(*args, **kwargs))
        if not re.fullmatch(KEY_PATTERN, key):
            raise ApiProblem(422, "validation", f"{HEADER} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
                             field=HEADER)
        try:
            return _run_once(view, args, kwargs, key)
        except RedisError:
            raise ApiProblem(503, "unavailable", "Service temporarily unavailable. Please try again later.",
                             headers={"Retry-After": "5"}) from None

    apidoc = dict(getattr(view, "_apidoc", {}))
    manual = dict(apidoc.get("manual_doc", {}))
    manual["parameters"] = [*manual.get("parameters", []), {
        "in": "header", "name": HEADER, "required": False, "schema": {"type": "string", "pattern": KEY_PATTERN},
        "description": "Retrying with the same key and body returns the first answer (kept 24 h)."}]
    manual.setdefault("responses", {}).setdefault("409", "CONFLICT")
    manual["responses"].setdefault("422", "UNPROCESSABLE_ENTITY")
    apidoc["manual_doc"] = manual
    wrapper._apidoc = apidoc
    return wrapper
