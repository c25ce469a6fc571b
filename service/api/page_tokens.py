"""Opaque page tokens (AIP-158): where the previous page ended, bound to the request's filter.

A token is URL-safe base64 of JSON; callers must not parse it. Changing the filter between
pages, or sending a token of another list, is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from service.domain.exceptions import FieldViolation, InvalidArgument

T = TypeVar("T")


def _fingerprint(kind: str, filters: Any) -> str:
    return hashlib.sha256(json.dumps([kind, filters], sort_keys=True).encode()).hexdigest()[:16]


def encode(kind: str, filters: Any, position: list[Any]) -> str:
    """A token for the page after `position` of the list `kind` filtered by `filters`."""
    body = {"f": _fingerprint(kind, filters), "p": position}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, kind: str, filters: Any) -> list[Any] | None:
    """The position in `token` (None for an empty token), or INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fingerprint, position = body["f"], body["p"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token", "is not a page token of this list", "MALFORMED_PAGE_TOKEN"
                )
            ]
        ) from None
    if fingerprint != _fingerprint(kind, filters) or not isinstance(position, list):
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token",
                    "belongs to a different query; the filters must not change between pages",
                    "PAGE_TOKEN_MISMATCH",
                )
            ]
        )
    return position


def decode_one(token: str, kind: str, filters: Any, value_type: type[T]) -> T | None:
    """The single value of a token whose position is one value (None for the first page)."""
    position = decode(token, kind, filters)
    if position is None:
        return None
    value = position[0] if len(position) == 1 else None
    if not isinstance(value, value_type) or isinstance(value, bool):
        raise InvalidArgument(
            [
                FieldViolation(
                    "page_token", "is not a page token of this list", "MALFORMED_PAGE_TOKEN"
                )
            ]
        )
    return value


def page(
    rows: Sequence[T], size: int, kind: str, filters: Any, position: Callable[[T], list[Any]]
) -> tuple[Sequence[T], str]:
    """Rows fetched with one extra (limit size + 1) as a page and its next_page_token: the
    extra row only tells that there is more."""
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode(kind, filters, position(rows[-1]))
