"""Where an endpoint may point: the check against server-side request forgery, after DNS resolution.

In production a URL must be `https://` and every address its host resolves to must be public
(no loopback, private, link-local — which holds the cloud metadata address 169.254.169.254 —,
shared, reserved or multicast address). The check runs when an admin saves the URL and again
before each attempt, and the attempt connects to the very address that was checked, so a DNS
answer that changes between the check and the connection cannot point it inside. Outside
production `http://` and private addresses are allowed, so that a developer's or a test's receiver
on 127.0.0.1 works.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask_babel import gettext, lazy_gettext

from mailadmin.services.errors import ServiceError

URL_MAX = 2000
# Why an address is not public, in the viewer's language (gettext in a job: English).
_NOT_PUBLIC = (
    ("is_loopback", lazy_gettext("%(address)s is a loopback address")),
    ("is_link_local", lazy_gettext("%(address)s is a link-local address")),
    ("is_private", lazy_gettext("%(address)s is a private address")),
    ("is_multicast", lazy_gettext("%(address)s is a multicast address")),
    ("is_unspecified", lazy_gettext("%(address)s is an unspecified address")),
)


class UnsafeEndpointUrl(ServiceError):
    """An endpoint URL that may not be called; `.message` says why."""


@dataclass(frozen=True)
class CheckedUrl:
    """An endpoint URL taken apart, with the address its host resolved to and was checked at."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent on the request line
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def refusal_of_address(address: str) -> str | None:
    """Why a production endpoint may not be reached at `address`, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, refusal in _NOT_PUBLIC:
        if getattr(ip, test):
            return str(refusal) % {"address": address}
    if not ip.is_global:
        return gettext("%(address)s is not a public address", address=address)
    return None


def _parts(url: str, *, production: bool) -> tuple[str, str, int, str]:
    url = (url or "").strip()
    if not url or len(url) > URL_MAX:
        raise UnsafeEndpointUrl(gettext("Give a URL of at most %(max)s characters.", max=URL_MAX))
    parts = urlsplit(url)
    allowed = ("https",) if production else ("https", "http")
    if parts.scheme not in allowed:
        raise UnsafeEndpointUrl(gettext("The URL must start with https://.") if production
                                else gettext("The URL must start with https:// or http://."))
    if parts.username or parts.password:
        raise UnsafeEndpointUrl(gettext("The URL may not carry a user name or password."))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeEndpointUrl(gettext("The URL's port is not a number from 1 to 65535.")) from None
    if not parts.hostname:
        raise UnsafeEndpointUrl(gettext("The URL has no host name."))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, target


def check_endpoint_url(url: str, *, production: bool) -> CheckedUrl:
    """`url` resolved and checked (see the module docstring); UnsafeEndpointUrl says why not."""
    scheme, host, port, target = _parts(url, production=production)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeEndpointUrl(gettext("%(host)s does not resolve to an address.", host=host)) from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if production:
        for address in addresses:
            if refusal := refusal_of_address(address):
                raise UnsafeEndpointUrl(gettext("%(host)s resolves to an address that is not public (%(refusal)s); "
                                                "endpoints must be public.", host=host, refusal=refusal))
    if not addresses:
        raise UnsafeEndpointUrl(gettext("%(host)s does not resolve to an address.", host=host))
    return CheckedUrl(scheme, host, port, target, addresses[0])
