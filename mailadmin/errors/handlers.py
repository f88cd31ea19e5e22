"""Error pages: every failure a user can cause gets a page that says what was wrong; a program
calling a machine endpoint gets RFC 9457 problem details instead (`problems.py` decides which)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from loguru import logger
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mailadmin.errors.problems import problem_response, wants_problem_details
from mailadmin.extensions import get_settings

bp = Blueprint("errors", __name__)

# Werkzeug's words for the errors a person meets, through the catalogue (the error page only: problem
# details for programs keep Werkzeug's English). A description an abort() gave is shown as it is.
PAGE_WORDS = {
    400: (_l("Bad Request"), _l("The browser (or proxy) sent a request that this server could not understand.")),
    403: (_l("Forbidden"), _l("You don't have the permission to access the requested resource. It is either "
                              "read-protected or not readable by the server.")),
    404: (_l("Not Found"), _l("The requested URL was not found on the server. If you entered the URL manually "
                              "please check your spelling and try again.")),
    405: (_l("Method Not Allowed"), _l("The method is not allowed for the requested URL.")),
    429: (_l("Too Many Requests"), _l("This user has exceeded an allotted request count. Try again later.")),
    500: (_l("Internal Server Error"), _l("The server encountered an internal error and was unable to complete "
                                          "your request. Either the server is overloaded or there is an error in "
                                          "the application.")),
}


@bp.app_errorhandler(CSRFError)
def csrf_error(error: CSRFError):
    """An expired or forged form: say so, and how to recover."""
    message = gettext("The form has expired or was not sent by this site. Please reload the page and try again.")
    return render_template("error.html", code=400, title=gettext("Form refused"), message=message), 400


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge):
    """A body over MAILER_MAX_UPLOAD_MB, refused before any of it is read or stored: 413 problem
    details for a program (a redirect would look delivered to a webhook's provider); a person's
    form post goes back to its form with the limit."""
    limit = get_settings().max_upload_mb
    if wants_problem_details():
        logger.bind(path=request.path, content_length=request.content_length, limit_mb=limit).warning(
            "Request body too large"
        )
        return problem_response(413, f"The request body is larger than {limit} MB. Nothing was stored.")
    if request.method != "POST":
        return http_error(error)
    flash(gettext("The upload is too large. Maximum: %(mb)s MB.", mb=limit), "error")
    return redirect(_form_page()), 303


def _form_page() -> str:
    """The page of the form that was posted: its own URL when it also answers GET, else the
    same-site page it was sent from (Referer), else home."""
    rule = request.url_rule
    if rule is not None and "GET" in (rule.methods or ()):
        return request.path
    referrer = urlsplit(request.referrer or "")
    # Only a path of this site: "//host" or "/\host" would be read as another site by a browser.
    if referrer.netloc == request.host and referrer.path.startswith("/") and referrer.path[1:2] not in ("/", "\\"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return "/"


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Any other HTTP error: problem details for programs and JSON clients, the error page for people."""
    if wants_problem_details():
        # Keep what the error adds for clients (Allow on a 405), not its HTML content type.
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        return problem_response(error.code, error.description, title=error.name, headers=headers)
    title, message = error.name, error.description
    if error.code in PAGE_WORDS and error.description == type(error).description:
        title, message = (str(words) for words in PAGE_WORDS[error.code])
    return render_template("error.html", code=error.code, title=title, message=message), error.code
