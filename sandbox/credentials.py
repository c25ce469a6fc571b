"""HTTP credentials the providers check: basic auth, bearer tokens and API-key headers."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class BasicAuth:
    """A username and password for HTTP basic authentication (RFC 7617)."""

    username: str
    password: str

    def matches(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries exactly these credentials."""
        presented = parse_basic(authorization)
        if presented is None:
            return False
        # Both halves are compared (in constant time) whatever the first one's outcome.
        user_ok = _same(presented.username, self.username)
        password_ok = _same(presented.password, self.password)
        return user_ok and password_ok


def parse_basic(authorization: str | None) -> BasicAuth | None:
    """The credentials of a ``Basic`` ``Authorization`` header, or ``None``."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return BasicAuth(username, password) if colon else None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of a ``Bearer`` ``Authorization`` header, or ``None``."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _same(presented: str, expected: str) -> bool:
    return secrets.compare_digest(presented.encode(), expected.encode())
