"""Personal API tokens: create (the token shown once), list, revoke, and find the one a request carries.

A token is `mla_` + 43 random URL-safe characters (256 bits); only its sha256 is stored, so the
database alone gives no usable token. It acts as its user, never with more rights, and only while
that user is active. Ending a user's sessions on purpose (an admin's "end sessions", a password
change or reset) revokes every token of theirs too (`revoke_all_tokens`, called by the users
service); an ordinary logout does not: it ends a browser's use, and a CRM's token is not one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update

from mailadmin.extensions import db
from mailadmin.models import ApiToken, User
from mailadmin.models.api_token import SCOPES
from mailadmin.models.types import utcnow
from mailadmin.services.audit import record_audit
from mailadmin.services.errors import ErrorKind, ServiceError
from mailadmin.services.transaction import in_transaction, transaction

TOKEN_PREFIX = "mla_"
MAX_NAME_LENGTH = 100
MAX_EXPIRY_DAYS = 3650
# last_used_at is written at most this often per token: one UPDATE per request would be a write per read.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ServiceError):
    """A token that cannot be created or revoked as asked; `.message` says why."""


class TokenRefusal(StrEnum):
    """Why a presented token does not authenticate (all answer 401)."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ENDED = "ended"  # the user is disabled


@dataclass(frozen=True)
class CreatedToken:
    """A new token: its row, and the secret itself, which is shown once and not kept."""

    token: ApiToken
    secret: str


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Scopes from "read,write" or a list, in canonical order; unknown or none refused."""
    names = [s.strip() for s in scopes.split(",")] if isinstance(scopes, str) else [s.strip() for s in scopes]
    names = [s for s in names if s]
    unknown = sorted(set(names) - set(SCOPES))
    if unknown:
        raise TokenError(f"Unknown scope {unknown[0]!r}: expected some of {', '.join(SCOPES)}.")
    if not names:
        raise TokenError("Choose at least one scope.")
    return tuple(s for s in SCOPES if s in names)


def create_token(user: User, name: str, scopes, *, expires_in_days: int | None = None,
                 actor: User | None = None) -> CreatedToken:
    """A new token for `user` (name, scopes, optional expiry in days); the secret is returned once."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise TokenError(f"Give the token a name of 1 to {MAX_NAME_LENGTH} characters.")
    chosen = parse_scopes(scopes)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise TokenError(f"The expiry must be between 1 and {MAX_EXPIRY_DAYS} days.")
    if not user.active:
        raise TokenError("A disabled user cannot have API tokens.", ErrorKind.CONFLICT)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with transaction():
        token = ApiToken(
            user_id=user.id, name=name, token_hash=hash_token(secret), prefix=secret[:8], scopes=",".join(chosen),
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        db.session.add(token)
        db.session.flush()
        record_audit(actor or user, "api_token_created",
                     details={"user_id": user.id, "token_id": token.id, "name": name, "scopes": list(chosen)})
    return CreatedToken(token, secret)


def tokens_of(user: User) -> list[ApiToken]:
    """The user's tokens, newest first, revoked ones included (the page shows them as revoked)."""
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def token_state(token: ApiToken, now: datetime | None = None) -> TokenRefusal | None:
    """Why `token` no longer authenticates, or None while it does."""
    now = now or utcnow()
    if token.revoked_at is not None:
        return TokenRefusal.REVOKED
    if token.expires_at is not None and token.expires_at <= now:
        return TokenRefusal.EXPIRED
    user = token.user
    if user is None or not user.active:
        return TokenRefusal.ENDED
    return None


def authenticate_token(secret: str) -> tuple[ApiToken | None, TokenRefusal | None]:
    """The live token this secret is, or (None or the token, why it is refused)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None, TokenRefusal.UNKNOWN
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None:
        return None, TokenRefusal.UNKNOWN
    now = utcnow()
    refusal = token_state(token, now)
    if refusal is not None:
        return token, refusal
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        with transaction():
            db.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        token.last_used_at = now
    return token, None


def find_token(token_id: int, owner: User | None = None) -> ApiToken:
    """A token by id (only among `owner`'s when given), or TokenError not_found."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        raise TokenError("No such API token.", ErrorKind.NOT_FOUND)
    return token


@in_transaction
def revoke_token(token: ApiToken, *, actor: User | None) -> bool:
    """Revoke a token at once; False when it already was revoked."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    record_audit(actor, "api_token_revoked", details={"user_id": token.user_id, "token_id": token.id, "name": token.name})
    return True


def revoke_all_tokens(user: User, *, actor: User | None) -> int:
    """Revoke every live token of `user` (their sessions were ended); in the caller's transaction. How many."""
    revoked = db.session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                                 .values(revoked_at=utcnow())).rowcount
    if revoked:
        record_audit(actor, "api_tokens_revoked", details={"user_id": user.id, "tokens": revoked})
    return revoked
