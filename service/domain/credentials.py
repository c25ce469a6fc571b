"""Credentials as the domain holds them: a kind and secret fields that never print."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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
