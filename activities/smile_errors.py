"""How calls to Smile fail, by what a retry could fix. No httpx here, so workflow code can import
the non-retryable type names for its retry policies."""

from __future__ import annotations

from datetime import timedelta


class SmileError(Exception):
    """A failed call to Smile. ``retryable`` says whether trying again could help."""

    retryable = False
    type_name = "SmileError"

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SmileUnreachable(SmileError):
    retryable = True
    type_name = "SmileUnreachable"


class SmileTimeout(SmileError):
    """Smile did not answer in time, or answered 408 Request Timeout."""

    retryable = True
    type_name = "SmileTimeout"


class SmileServerError(SmileError):
    retryable = True
    type_name = "SmileServerError"


class SmileRateLimited(SmileError):
    retryable = True
    type_name = "SmileRateLimited"


class SmileBadRequest(SmileError):
    type_name = "SmileBadRequest"


class SmileUnauthorized(SmileError):
    type_name = "SmileUnauthorized"


class SmileForbidden(SmileError):
    type_name = "SmileForbidden"


class SmileNotFound(SmileError):
    type_name = "SmileNotFound"


class SmileProtocolError(SmileError):
    """Smile answered 2xx with something that is not its documented shape."""

    type_name = "SmileProtocolError"


NON_RETRYABLE_TYPES = [
    cls.type_name
    for cls in (SmileBadRequest, SmileUnauthorized, SmileForbidden, SmileNotFound,
                SmileProtocolError)
]  # fmt: skip
