"""What kind of refusal a service error is; the web layer maps each kind to one HTTP status."""

from __future__ import annotations

from enum import StrEnum

from mailadmin.limits.throttle import THROTTLE_BACKEND_UNAVAILABLE


class ErrorKind(StrEnum):
    """Why a service refused an action (not how it is worded)."""

    INVALID = "invalid"  # the input is wrong
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the thing is not in a state that allows the action
    TOO_LARGE = "too_large"
    THROTTLED = "throttled"  # a per-user limit is reached
    UNAVAILABLE = "unavailable"  # a backend needed to decide is down (fail-closed)


class ServiceError(ValueError):
    """A refused action; `.message` is shown to the user as is, `.kind` says what kind of refusal it is."""

    default_kind = ErrorKind.INVALID

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        message = str(message)  # a lazy catalogue string is written now, in the language of this request
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind


def throttle_refusal(reason: str | None) -> ErrorKind:
    """The kind of a throttle's refusal: the backend being down is not the user's limit."""
    return ErrorKind.UNAVAILABLE if reason == THROTTLE_BACKEND_UNAVAILABLE else ErrorKind.THROTTLED
