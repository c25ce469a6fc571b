"""The request log: what every provider endpoint was asked and what it answered."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sandbox.faults import FaultKind, Provider


@dataclass(frozen=True)
class LoggedRequest:
    """One request to a mimicked provider (control traffic is not logged)."""

    at: datetime
    """When the request arrived."""
    method: str
    """HTTP method."""
    path: str
    """URL path, without the query string."""
    query: str
    """Raw query string ("" when absent)."""
    provider: Provider
    """Which provider served it."""
    resource: str | None
    """Calendar id, OAuth endpoint, feed or dataset name."""
    purpose: str | None
    """The client's ``X-Sandbox-Purpose`` header, e.g. ``probe``."""
    status: int | None
    """The response status; ``None`` when the connection was reset or the handler crashed."""
    fault: FaultKind | None
    """The injected fault this request suffered, if any."""


class RequestLog:
    """A bounded, ordered log of provider requests."""

    def __init__(self, capacity: int = 10_000) -> None:
        """Keep at most ``capacity`` most recent entries (``total`` counts all of them)."""
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self.total = 0
        """Requests logged since the last clear, including those that fell off the end."""

    def record(self, entry: LoggedRequest) -> None:
        """Append one entry."""
        self._entries.append(entry)
        self.total += 1

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self.total = 0

    def entries(
        self,
        *,
        provider: Provider | None = None,
        resource: str | None = None,
        purpose: str | None = None,
    ) -> list[LoggedRequest]:
        """The retained entries, oldest first, optionally filtered."""
        return [
            entry
            for entry in self._entries
            if (provider is None or entry.provider is provider)
            and (resource is None or entry.resource == resource)
            and (purpose is None or entry.purpose == purpose)
        ]

    def __iter__(self) -> Iterator[LoggedRequest]:
        """Iterate the retained entries, oldest first."""
        return iter(list(self._entries))

    def __len__(self) -> int:
        """How many entries are retained."""
        return len(self._entries)
