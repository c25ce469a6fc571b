"""What the lifecycle's requests ask for (decoded from protobuf) and what a Delete answers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from service.domain.credentials import Credentials
from service.domain.model import Integration


@dataclass(frozen=True)
class CreateSpec:
    """What a Create asks for (already decoded from protobuf)."""

    display_name: str
    connector_type: str
    request_id: str = ""
    config: dict[str, Any] | None = None
    credentials: Credentials | None = None
    sync_interval: timedelta | None = None
    #: The integration's own breaker threshold; None (or 0) uses the deployment's.
    breaker_threshold: int | None = None

    def fingerprint(self) -> str:
        """A digest of what a Create asked for, so a reused request id with another body is
        caught. Credentials are included only through their digest, never stored."""
        payload = {
            "display_name": self.display_name,
            "connector_type": self.connector_type,
            "config": self.config,
            "sync_interval": self.sync_interval.total_seconds() if self.sync_interval else None,
            "credentials": hashlib.sha256(self.credentials.to_bytes()).hexdigest()
            if self.credentials
            else None,
        }
        if self.breaker_threshold:  # only when given, so digests remembered before it stay valid
            payload["breaker_threshold"] = self.breaker_threshold
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ConfigureSpec:
    """What a Configure changes; None leaves a field as it is."""

    display_name: str | None = None
    config: dict[str, Any] | None = None
    credentials: Credentials | None = None
    sync_interval: timedelta | None = None
    #: A new breaker threshold for this integration; 0 goes back to the deployment's.
    breaker_threshold: int | None = None

    def reason(self) -> str:
        """The event reason of a change of settings: what changed."""
        changed = [
            name
            for name, value in (
                ("display name", self.display_name),
                ("credentials", self.credentials),
                ("sync interval", self.sync_interval),
                ("breaker threshold", self.breaker_threshold),
            )
            if value is not None
        ]
        return "changed: " + ", ".join(changed)


@dataclass(frozen=True)
class Deletion:
    """What a Delete removed."""

    #: The revision of the tombstone.
    revision: int
    #: How many synced records went with it.
    records: int
    #: The integration as it was.
    integration: Integration
    #: Its credentials as they were (so the tokens can be revoked at the provider).
    credentials: Credentials | None = field(repr=False)
