"""Validation of what callers send, as field violations (never exceptions half-way through).

Each check returns the violations it found; callers gather them and raise one InvalidArgument,
so a caller learns about every bad field at once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

from service.domain.exceptions import FieldViolation, InvalidArgument

__all__ = ["FieldViolation", "InvalidArgument"]

MAX_DISPLAY_NAME = 200
MAX_REQUEST_ID = 128
MAX_CONFIG_STRING = 2048
MAX_PAGE_SIZE = 1000
#: An integration's own breaker threshold (failures in a row that open the breaker).
MIN_BREAKER_THRESHOLD, MAX_BREAKER_THRESHOLD = 1, 100


@dataclass(frozen=True)
class IntervalBounds:
    """The sync intervals a deployment allows, and the default."""

    minimum: timedelta
    maximum: timedelta
    default: timedelta


def display_name(value: str, field: str = "display_name") -> list[FieldViolation]:
    """1 to 200 printable characters, not only spaces."""
    if not value.strip():
        return [FieldViolation(field, "must not be empty", "REQUIRED")]
    if len(value) > MAX_DISPLAY_NAME:
        return [FieldViolation(field, f"must be at most {MAX_DISPLAY_NAME} characters", "TOO_LONG")]
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return [FieldViolation(field, "must not contain control characters", "INVALID_CHARACTERS")]
    return []


def request_id(value: str) -> list[FieldViolation]:
    """Optional; at most 128 printable ASCII characters."""
    if len(value) > MAX_REQUEST_ID:
        return [
            FieldViolation("request_id", f"must be at most {MAX_REQUEST_ID} characters", "TOO_LONG")
        ]
    if value and not (value.isascii() and value.isprintable()):
        return [FieldViolation("request_id", "must be printable ASCII", "INVALID_CHARACTERS")]
    return []


def sync_interval(
    value: timedelta, bounds: IntervalBounds, field: str = "sync_interval"
) -> list[FieldViolation]:
    """Within the deployment's bounds."""
    if not bounds.minimum <= value <= bounds.maximum:
        return [
            FieldViolation(
                field,
                f"must be between {_human(bounds.minimum)} and {_human(bounds.maximum)}",
                "OUT_OF_BOUNDS",
            )
        ]
    return []


def breaker_threshold(value: int, field: str = "breaker_threshold") -> list[FieldViolation]:
    """1 to 100 failures in a row."""
    if not MIN_BREAKER_THRESHOLD <= value <= MAX_BREAKER_THRESHOLD:
        return [
            FieldViolation(
                field,
                f"must be between {MIN_BREAKER_THRESHOLD} and {MAX_BREAKER_THRESHOLD}",
                "OUT_OF_BOUNDS",
            )
        ]
    return []


def page_size(
    value: int, default: int, field: str = "page_size"
) -> tuple[int, list[FieldViolation]]:
    """0 means the default; negative is an error; above the cap is capped (AIP-158)."""
    if value < 0:
        return default, [FieldViolation(field, "must not be negative", "NEGATIVE")]
    if value == 0:
        return default, []
    return min(value, MAX_PAGE_SIZE), []


def integration_id(value: str, field: str = "id") -> UUID:
    """Parse an integration id, or raise InvalidArgument."""
    if not value:
        raise InvalidArgument([FieldViolation(field, "is required", "REQUIRED")])
    try:
        return UUID(value)
    except ValueError:
        raise InvalidArgument(
            [FieldViolation(field, "must be an integration id (a UUID)", "MALFORMED_ID")]
        ) from None


def raise_if(violations: list[FieldViolation]) -> None:
    """Raise one InvalidArgument carrying every violation, if there are any."""
    if violations:
        raise InvalidArgument(violations)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


MAX_URL = 2048
MAX_SCOPES = 50
MAX_SCOPE = 256


def return_url(value: str, field: str = "sign_in.return_url") -> list[FieldViolation]:
    """Optional; an absolute http(s) URL without credentials in it, at most 2048 characters."""
    if not value:
        return []
    return http_url(value, field)


def webhook_url(value: str, field: str = "url") -> list[FieldViolation]:
    """Required; an absolute http(s) URL without credentials in it, at most 2048 characters
    (the network guard checks where it points when it is used, as for connector URLs)."""
    if not value:
        return [FieldViolation(field, "is required", "REQUIRED")]
    return http_url(value, field)


def http_url(value: str, field: str) -> list[FieldViolation]:
    """An absolute http(s) URL without credentials in it, at most 2048 characters."""
    if len(value) > MAX_URL:
        return [FieldViolation(field, f"must be at most {MAX_URL} characters", "TOO_LONG")]
    invalid = [FieldViolation(field, "must be an absolute http or https URL", "INVALID_URL")]
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        return invalid
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(unicodedata.category(ch) == "Cc" or ch == " " for ch in value)
    ):
        return invalid
    if parts.username is not None or parts.password is not None:
        return [FieldViolation(field, "must not contain a user name or password", "INVALID_URL")]
    return []


def scopes(values: Sequence[str], field: str = "sign_in.scopes") -> list[FieldViolation]:
    """Optional; at most 50 OAuth2 scope tokens (RFC 6749 §3.3: printable ASCII, no spaces,
    quotes or backslashes), each at most 256 characters."""
    if len(values) > MAX_SCOPES:
        return [FieldViolation(field, f"must hold at most {MAX_SCOPES} scopes", "TOO_MANY")]
    found = []
    for i, scope in enumerate(values):
        if (
            not scope
            or len(scope) > MAX_SCOPE
            or not all(0x21 <= ord(ch) <= 0x7E and ch not in '"\\' for ch in scope)
        ):
            found.append(
                FieldViolation(
                    f"{field}[{i}]",
                    f"must be a scope: 1 to {MAX_SCOPE} printable ASCII characters without spaces",
                    "INVALID_SCOPE",
                )
            )
    return found
