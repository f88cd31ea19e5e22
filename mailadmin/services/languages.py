"""A user's language: the choice on the account page, stored on the user (`users.language`).

None follows the browser's `Accept-Language` (mailadmin/i18n.py picks the language of each request).
"""

from __future__ import annotations

from loguru import logger

from mailadmin.i18n import LANGUAGES
from mailadmin.models import User
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.transaction import in_transaction


class LanguageError(ServiceError):
    """A language this product does not speak."""


@in_transaction
def set_language(user: User, language: str | None) -> bool:
    """Store `language` ("en", "ru", or None/"" to follow the browser) as the user's choice; False if unchanged."""
    language = language or None
    if language is not None and language not in LANGUAGES:
        raise LanguageError(f"Unknown language: {language}", ErrorKind.INVALID)
    if user.language == language:
        return False
    user.language = language
    logger.bind(user_id=user.id, language=language or "browser").info("User language chosen")
    return True
