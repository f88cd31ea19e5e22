"""The password policy: one rule for the CLI, the password page and the admin's user form.

At least 12 characters, not only whitespace, not one character repeated, and not a common
password — checked against the 30,000 most common passwords that zxcvbn ships (Dropbox's password
strength estimator, from leaked-password corpora), also with trailing digits and punctuation
removed, so "password1234" and "iloveyou2024!" are refused like "password" and "iloveyou".
"""

from __future__ import annotations

import re
import secrets
from functools import cache

from flask_babel import gettext

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 200
_TRAILING_NOISE = re.compile(r"[\d\W_]+$")


@cache
def _common_passwords() -> frozenset[str]:
    # Imported on first use: zxcvbn's lists (all of them load together) take about 13 MB, which
    # workers, the scheduler and a web process nobody sets a password in need not carry.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common_password(password: str) -> bool:
    """True for a password in the common-passwords list, alone or followed by digits/punctuation."""
    lowered = password.strip().lower()
    stem = _TRAILING_NOISE.sub("", lowered)
    return lowered in _common_passwords() or (len(stem) >= 4 and stem in _common_passwords())


def password_problem(password: str) -> str | None:
    """Why `password` is refused (one sentence for the person choosing it), or None when it is fine."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return gettext("The password must be at least %(count)s characters long.", count=MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        return gettext("The password must be at most %(count)s characters long.", count=MAX_PASSWORD_LENGTH)
    if not password.strip():
        return gettext("The password cannot be only spaces.")
    if len(set(password)) == 1:
        return gettext("The password cannot be one character repeated.")
    if is_common_password(password):
        return gettext("This password is too common: it appears in lists attackers try first. Choose another.")
    return None


def temporary_password() -> str:
    """A random password an admin hands over; its owner must change it at the next login."""
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits
