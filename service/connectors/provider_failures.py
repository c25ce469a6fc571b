"""How connectors report failures: one exception carrying the taxonomy's code.

A connector never decides statuses or builds the texts people read; it says *what* went wrong
(`ErrorCode`), the detail of this occurrence in a sentence (never a secret), how long the
provider asked us to wait, and, for malformed answers, diagnostic context that the engine logs
under a support reference. Pure Python, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from service.domain.taxonomy import ErrorCode

#: The longest Retry-After we honour; a provider asking for more gets retried after this.
MAX_RETRY_AFTER = timedelta(days=1)


class ProviderFailure(Exception):
    """A classified failure of a provider call (or of our handling of its answer)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retry_after: timedelta | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        #: Extra detail for the logs (URL without secrets, status, an excerpt of the body).
        self.context: dict[str, Any] = dict(context or {})

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker process (service.offload), it comes back whole: the default
        # would rebuild it from its message alone.
        return (_rebuilt, (type(self), self.code, self.message, self.retry_after, self.context))


def _rebuilt(
    cls: type[ProviderFailure],
    code: ErrorCode,
    message: str,
    retry_after: timedelta | None,
    context: dict[str, Any],
) -> ProviderFailure:
    failure = cls.__new__(cls)
    ProviderFailure.__init__(failure, code, message, retry_after=retry_after, context=context)
    return failure


def malformed(message: str, **context: Any) -> ProviderFailure:
    """The provider answered something we cannot use: a SYSTEM error with a support reference."""
    return ProviderFailure(ErrorCode.INTERNAL, message, context=context)


def unavailable(message: str, **context: Any) -> ProviderFailure:
    """The provider could not be reached or did not answer in time."""
    return ProviderFailure(ErrorCode.SERVICE_UNAVAILABLE, message, context=context)


def from_status(
    status: int,
    *,
    what: str,
    retry_after: timedelta | None = None,
    unauthorized: ErrorCode = ErrorCode.INVALID_CREDENTIALS,
    context: Mapping[str, Any] | None = None,
) -> ProviderFailure:
    """The failure an HTTP error status means, for providers without a richer error format.

    `what` names the thing asked for in words ("the feed at calendar.example.com");
    `unauthorized` is what a 401 means for this connector's credentials.
    """
    code, detail = _classify(status, unauthorized)
    message = f"{what} answered HTTP {status}: {detail}"
    return ProviderFailure(
        code,
        message,
        retry_after=retry_after if code in RETRYABLE else None,
        context={"status": status, **(context or {})},
    )


#: Codes for which a provider's Retry-After is kept.
RETRYABLE = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE})


def _classify(status: int, unauthorized: ErrorCode) -> tuple[ErrorCode, str]:
    if status == 401:
        return unauthorized, "the credentials were not accepted"
    if status == 403:
        return ErrorCode.ACCESS_DENIED, "access is forbidden"
    if status in (404, 410):
        return ErrorCode.RESOURCE_NOT_FOUND, "not found"
    if status == 429:
        return ErrorCode.RATE_LIMITED, "too many requests"
    if status == 408 or status >= 500:
        return ErrorCode.SERVICE_UNAVAILABLE, "the provider is failing or overloaded"
    # Any other 4xx says our request was wrong: a fault on our side, not the user's.
    return ErrorCode.INTERNAL, "the request was refused as invalid"


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) as a delay,
    capped at a day; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    delay: timedelta
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        delay = max(when - now, timedelta(0))
    return min(delay, MAX_RETRY_AFTER)
