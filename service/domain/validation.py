"""Validation of what callers send, as field violations (never exceptions half-way through).

Each check returns the violations it found; callers gather them and raise one InvalidArgument,
so a caller learns about every bad field at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit
from uuid import UUID

from service.domain.exceptions import FieldViolation, InvalidArgument

__all__ = ["FieldViolation", "InvalidArgument"]

MAX_DISPLAY_NAME = 200
MAX_REQUEST_ID = 128
MAX_CONFIG_STRING = 2048
MAX_PAGE_SIZE = 1000
MAX_URL = 2048
MAX_SCOPES = 50
MAX_SCOPE = 256
MAX_PAGE_TOKEN = 4096

#: The longest value, in characters, of each string field of a request, by the field's name
#: (wherever it appears: `url` is every connector's URL). Any other string field, a plugin
#: config's keys and values included, may hold MAX_TEXT. A longer value is refused with a
#: BadRequest field violation (TOO_LONG) before anything reaches the database or an error
#: message; the README's "Limits" section is this table.
MAX_LENGTHS: dict[str, int] = {
    "id": 64,
    "ids": 64,
    "etag": 64,
    "request_id": MAX_REQUEST_ID,
    "display_name": MAX_DISPLAY_NAME,
    "reason": MAX_DISPLAY_NAME,
    "connector_type": 64,
    "page_token": MAX_PAGE_TOKEN,
    "url": MAX_URL,
    "api_base_url": MAX_URL,
    "token_url": MAX_URL,
    "authorization_url": MAX_URL,
    "return_url": MAX_URL,
    "scopes": MAX_SCOPE,
    "calendar_id": 1024,
    "api_key_header": 256,
    "access_token": 8192,
    "refresh_token": 8192,
    "bearer_token": 8192,
    "api_key": 8192,
    "username": 256,
    "password": 1024,
}
MAX_TEXT = MAX_CONFIG_STRING
#: The most items each repeated field of a request may hold; lists and objects inside a
#: plugin config may hold MAX_ITEMS_DEFAULT.
MAX_ITEMS: dict[str, int] = {"ids": 1000, "statuses": 16, "scopes": MAX_SCOPES}
MAX_ITEMS_DEFAULT = 1000

#: What no stored or compared text may hold: NUL (PostgreSQL text cannot), lone surrogates
#: (not Unicode scalar values: no encoding can carry them), and other control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text(value: str, field: str, limit: int, *, lines: bool = False) -> list[FieldViolation]:
    """A string of at most `limit` characters without NUL, lone surrogates or control
    characters (`lines`: tabs and line breaks allowed, for free-form text)."""
    if len(value) > limit:
        return [FieldViolation(field, f"must be at most {limit} characters", "TOO_LONG")]
    if (_CONTROL_BUT_LINES if lines else _CONTROL).search(value):
        return [
            FieldViolation(
                field,
                "must not contain control characters, NUL or unpaired surrogates",
                "INVALID_CHARACTERS",
            )
        ]
    return []


def max_length(name: str) -> int:
    """The bound of a string field named `name` (see MAX_LENGTHS)."""
    return MAX_LENGTHS.get(name, MAX_TEXT)


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


def return_url(
    value: str, field: str = "sign_in.return_url", allowed_origins: frozenset[str] = frozenset()
) -> list[FieldViolation]:
    """Optional; an absolute http(s) URL without credentials in it, at most 2048 characters,
    on one of `allowed_origins` (scheme://host[:port]) when the deployment lists any."""
    if not value:
        return []
    found = url(value, field, ("http", "https"))
    if found or not allowed_origins:
        return found
    if origin(value) not in allowed_origins:
        return [
            FieldViolation(
                field,
                "must be on an origin this deployment allows sign-ins to return to "
                "(INTEGRATIONS_SIGN_IN_RETURN_ORIGINS)",
                "RETURN_URL_NOT_ALLOWED",
            )
        ]
    return []


def webhook_url(value: str, field: str = "url") -> list[FieldViolation]:
    """Required; an absolute http(s) URL as `url` checks it (the network guard checks where it
    points when it is used, as for connector URLs)."""
    if not value:
        return [FieldViolation(field, "is required", "REQUIRED")]
    return url(value, field, ("http", "https"))


#: A DNS name as URLs carry it: dot-separated labels of letters, digits, hyphens (and the
#: underscores some internal names use), each 1-63 characters, 253 in all.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
#: Characters no URL we fetch may hold: whitespace and control characters (CR/LF would split
#: a request line), NUL, and backslashes (which parsers disagree about).
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\\ud800-\udfff]")


def url(value: str, field: str, schemes: Sequence[str]) -> list[FieldViolation]:
    """An absolute URL with one of `schemes`, a valid host and port, no user name or password,
    and no whitespace, control characters or backslashes; at most 2048 characters."""
    if len(value) > MAX_URL:
        return [FieldViolation(field, f"must be at most {MAX_URL} characters", "TOO_LONG")]
    if _URL_FORBIDDEN.search(value):
        return [
            FieldViolation(
                field,
                "must not contain spaces, control characters or backslashes",
                "INVALID_URL",
            )
        ]
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        return [
            FieldViolation(field, "is not a valid URL (check the host and port)", "INVALID_URL")
        ]
    if parts.scheme.lower() not in schemes or not parts.netloc:
        allowed = " or ".join(", ".join(schemes).rsplit(", ", 1))
        return [
            FieldViolation(field, f"must be an absolute URL with scheme {allowed}", "INVALID_URL")
        ]
    if "@" in parts.netloc:
        return [
            FieldViolation(
                field,
                "must not contain a user name or password; give credentials in the "
                "credentials field",
                "URL_HAS_CREDENTIALS",
            )
        ]
    if port == 0:
        return [FieldViolation(field, "must have a port between 1 and 65535", "INVALID_PORT")]
    return _host(parts.netloc, field)


def _host(netloc: str, field: str) -> list[FieldViolation]:
    host = netloc.rpartition(":")[0] if not netloc.endswith("]") and ":" in netloc else netloc
    if host.startswith("["):
        try:
            if "%" in host:  # a zone id ("%eth0") names this machine's interface
                raise ValueError(host)
            IPv6Address(host[1:-1])
        except ValueError:
            return [FieldViolation(field, "has an invalid IPv6 address", "INVALID_HOST")]
        return []
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        ascii_host = ""
    if not _HOSTNAME.fullmatch(ascii_host):
        return [FieldViolation(field, "must have a valid host name", "INVALID_HOST")]
    last = ascii_host.rstrip(".").rpartition(".")[2]
    if _numeric_label(last):
        # Browsers read a host ending in a number as an IPv4 address in any of several
        # notations (127.1, 0x7f.1, 2130706433); people and other tools do not. One form.
        try:
            if str(IPv4Address(ascii_host)) == ascii_host:
                return []
        except ValueError:
            pass
        return [
            FieldViolation(
                field,
                "must write an IPv4 address in dotted-decimal form, e.g. 192.0.2.10",
                "INVALID_HOST",
            )
        ]
    return []


def _numeric_label(label: str) -> bool:
    if label[:2].lower() == "0x":
        return all(c in "0123456789abcdefABCDEF" for c in label[2:])
    return label.isdigit()


def origin(value: str) -> str:
    """scheme://host[:port] of a URL, lower-cased, the port left out when it is the scheme's
    default; "" when it has none."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


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
