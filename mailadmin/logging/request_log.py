"""Flask requests in the log: a request id per request, request_id and user_id on every record
logged during it, and one "Request handled" line each."""

from __future__ import annotations

import re
import time
import uuid

from flask import Flask, Response, g, request
from loguru import logger

from mailadmin.logging.policy import LOGGER_NAME_FIELD

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER_NAME = "mailadmin.request"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    if "request_id" not in g:  # an earlier before_request handler answered first
        _start_request()
    took_ms = round((time.perf_counter() - g.request_started) * 1000, 1)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    logger.bind(
        **{LOGGER_NAME_FIELD: ACCESS_LOGGER_NAME},
        method=request.method,
        path=request.path,
        status=response.status_code,
        took_ms=took_ms,
    ).info("Request handled")
    return response


def init_request_logging(app: Flask) -> None:
    """Give each request a request_id (X-Request-ID or generated), add request_id and user_id
    to every record logged during it, and log one "Request handled" line per request."""
    if app.extensions.get("mailadmin.request_logging"):
        return
    app.extensions["mailadmin.request_logging"] = True
    app.before_request(_start_request)
    app.after_request(_log_request)
