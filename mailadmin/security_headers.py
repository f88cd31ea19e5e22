"""Security headers on every response, and the client address behind trusted proxies.

A small `after_request` rather than flask-talisman: the policy is a handful of constant headers,
one route (the preview's HTML frame) sets its own CSP, and nothing here needs Talisman's
HTTPS redirects or per-view decorators. A header a view already set is left alone.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from mailadmin.settings import Settings

# Pages use only the vendored Pico CSS, app.css and progress.js: no inline script or style anywhere.
# Pico draws its checkboxes and selects with data: SVG images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Cross-Origin-Opener-Policy": "same-origin",
}


def init_app(app: Flask, settings: Settings) -> None:
    """Believe X-Forwarded-* from `TRUSTED_PROXIES` hops only, and add the headers to every response."""
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    headers = dict(_HEADERS)
    if settings.is_production:
        headers["Strict-Transport-Security"] = HSTS

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
