"""Opaque page tokens (AIP-158): where the previous page ended, bound to the caller's tenant,
the list and its filter, and authenticated so nobody can forge one.

A token is `<payload>.<tag>` in URL-safe base64: the payload is JSON (the filter's fingerprint
and the position), the tag an HMAC-SHA256 of it. The MAC keys are derived (HKDF-SHA256) from
the credential key ring every replica already shares (INTEGRATIONS_ENCRYPTION_KEYS), so there
is no new secret to distribute: the ring's first key signs, every key of the ring verifies,
and rotating the ring keeps the tokens of the previous key working while it is in the ring.

A token is checked in the order that keeps a forger out of every parser: its length first,
then base64, then the tag, and only then is the payload's JSON read (our own, so no nesting to
recurse into) and its position checked against what the list expects. Anything wrong is
INVALID_ARGUMENT; changing the filter between pages is PAGE_TOKEN_MISMATCH.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.domain import validation
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.storage.sealing import KeyRing

T = TypeVar("T")

#: HKDF's `info`: keys for this purpose only (never usable to open sealed credentials).
_PURPOSE = b"integrations.v1 page tokens"
_TAG_BYTES = 16
_INT64_MAX = 2**63 - 1
#: What no position read from the database can hold (record ids may hold other characters).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _malformed() -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation("page_token", "is not a page token of this list", "MALFORMED_PAGE_TOKEN")]
    )


def _fingerprint(tenant: str, kind: str, filters: Any) -> str:
    body = json.dumps([tenant, kind, filters], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Makes and reads the page tokens of every list RPC."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("page tokens need at least one key")
        self._keys = tuple(keys)

    @classmethod
    def from_key_ring(cls, ring: KeyRing) -> PageTokens:
        """MAC keys derived from each key of the credential key ring, the primary first."""
        return cls(
            [
                HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(key)
                for _, key in ring.keys
            ]
        )

    def _tag(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, tenant: str, kind: str, filters: Any, position: list[Any]) -> str:
        """A token for the page after `position` of the list `kind` filtered by `filters`."""
        payload = json.dumps(
            {"f": _fingerprint(tenant, kind, filters), "p": position}, separators=(",", ":")
        ).encode()
        return f"{_b64(payload)}.{_b64(self._tag(self._keys[0], payload))}"

    def decode(self, token: str, tenant: str, kind: str, filters: Any) -> list[Any] | None:
        """The position in `token` (None for an empty token), or INVALID_ARGUMENT."""
        if not token:
            return None
        if len(token) > validation.MAX_PAGE_TOKEN or token.count(".") != 1:
            raise _malformed()
        encoded, _, tag_text = token.partition(".")
        try:
            payload, tag = _unb64(encoded), _unb64(tag_text)
        except (binascii.Error, ValueError):
            raise _malformed() from None
        if not any(hmac.compare_digest(self._tag(key, payload), tag) for key in self._keys):
            raise _malformed()
        try:
            body = json.loads(payload)
            fingerprint, position = body["f"], body["p"]
        except (ValueError, KeyError, TypeError):
            raise _malformed() from None
        if fingerprint != _fingerprint(tenant, kind, filters):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "page_token",
                        "belongs to a different query; the filters must not change between pages",
                        "PAGE_TOKEN_MISMATCH",
                    )
                ]
            )
        if not isinstance(position, list):
            raise _malformed()
        return position

    def decode_one(
        self, token: str, tenant: str, kind: str, filters: Any, value_type: type[T]
    ) -> T | None:
        """The single value of a token whose position is one value (None for the first
        page): an int within 0..2^63-1, or a string without NUL or surrogates."""
        position = self.decode(token, tenant, kind, filters)
        if position is None:
            return None
        value = position[0] if len(position) == 1 else None
        if not isinstance(value, value_type) or isinstance(value, bool):
            raise _malformed()
        if isinstance(value, int) and not 0 <= value <= _INT64_MAX:
            raise _malformed()
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise _malformed()
        return value

    def decode_keyset(
        self, token: str, tenant: str, kind: str, filters: Any
    ) -> tuple[datetime, UUID] | None:
        """A (time, id) position, as integrations are listed by creation time then id."""
        position = self.decode(token, tenant, kind, filters)
        if position is None:
            return None
        try:
            created, ident = position
            when = datetime.fromisoformat(created)
            if when.tzinfo is None or not isinstance(ident, str):
                raise ValueError(ident)
            return when, UUID(ident)
        except (ValueError, TypeError):
            raise _malformed() from None

    def page(
        self,
        rows: Sequence[T],
        size: int,
        tenant: str,
        kind: str,
        filters: Any,
        position: Callable[[T], list[Any]],
    ) -> tuple[Sequence[T], str]:
        """Rows fetched with one extra (limit size + 1) as a page and its next_page_token:
        the extra row only tells that there is more."""
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, self.encode(tenant, kind, filters, position(rows[-1]))
