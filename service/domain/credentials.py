"""Credentials as the domain holds them (a kind and secret fields that never print), and the
OAuth2 sign-ins that obtain them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

KINDS = ("oauth", "bearer_token", "api_key", "basic")


@dataclass(frozen=True)
class Credentials:
    """Secret material for one integration. `repr` and `str` never show the secrets, so a
    stray log line or exception message cannot leak them."""

    kind: str
    secret: dict[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown credentials kind {self.kind!r}")

    def __str__(self) -> str:
        return f"Credentials(kind={self.kind}, <redacted>)"

    def to_bytes(self) -> bytes:
        return json.dumps({"kind": self.kind, "secret": self.secret}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Credentials:
        parsed = json.loads(data)
        return cls(kind=parsed["kind"], secret=parsed["secret"])


@dataclass(frozen=True)
class SignIn:
    """An OAuth2 sign-in in flight: started by Reauthorize, completed by the browser's return
    to the callback (on any replica). `verifier` is the PKCE code verifier, secret until the
    code exchange (storage keeps it sealed)."""

    tenant_id: str
    integration_id: UUID
    provider: str
    verifier: str = field(repr=False)
    redirect_uri: str
    return_url: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at
