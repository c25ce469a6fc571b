"""Fault injection: what can go wrong with a provider, and the queues that decide when it does.

A fault targets a provider (``google``, ``oauth``, ``ics``, ``rest``) and optionally one of its
resources (a calendar id, the OAuth ``token`` or ``auth`` endpoint, a feed name, a dataset
name). Each target has a FIFO queue of armed faults; an armed fault fires for the next
``times`` requests, or for every request until cleared when ``times`` is ``None``. A request
consults its resource's queue first, then the provider-wide one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class Provider(StrEnum):
    """The kinds of external provider the sandbox mimics."""

    GOOGLE = "google"
    OAUTH = "oauth"
    ICS = "ics"
    REST = "rest"


class FaultKind(StrEnum):
    """Every failure the sandbox can inject; each provider renders it in its own error shape."""

    NOT_FOUND = "not_found"
    """HTTP 404 (Google ``notFound``)."""
    UNAUTHORIZED = "unauthorized"
    """HTTP 401 (Google ``authError``)."""
    FORBIDDEN = "forbidden"
    """HTTP 403 access denied (Google ``forbidden``; ``reason`` may pick another, see REASONS)."""
    QUOTA = "quota"
    """HTTP 403 rate limit (Google ``rateLimitExceeded``; ``reason`` may pick another)."""
    TOO_MANY_REQUESTS = "too_many_requests"
    """HTTP 429, with ``Retry-After`` when ``retry_after`` is set."""
    SERVER_ERROR = "server_error"
    """HTTP 500 (Google ``backendError``)."""
    UNAVAILABLE = "unavailable"
    """HTTP 503."""
    SLOW = "slow"
    """Hold the request on a gate (or for ``delay`` seconds), then answer normally."""
    RESET = "reset"
    """Abort the connection without sending any response.

    aiohttp clients retry an idempotent request once on a dropped connection: arm two
    resets (or ``times=None``) for such a client to see the error."""
    MALFORMED = "malformed"
    """HTTP 200 whose body does not parse (truncated JSON, broken iCalendar)."""
    WRONG_SHAPE = "wrong_shape"
    """HTTP 200 whose body parses but is not the expected document."""


REASONS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.FORBIDDEN: ("forbidden", "insufficientPermissions"),
    FaultKind.QUOTA: ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"),
}
"""The Google ``reason`` values a fault kind may carry; the first is its default."""


STATUSES: dict[FaultKind, int] = {
    FaultKind.NOT_FOUND: 404,
    FaultKind.UNAUTHORIZED: 401,
    FaultKind.FORBIDDEN: 403,
    FaultKind.QUOTA: 403,
    FaultKind.TOO_MANY_REQUESTS: 429,
    FaultKind.SERVER_ERROR: 500,
    FaultKind.UNAVAILABLE: 503,
    FaultKind.MALFORMED: 200,
    FaultKind.WRONG_SHAPE: 200,
}
"""The HTTP status of each fault kind that produces a response of its own."""


@dataclass(frozen=True)
class Fault:
    """One way a request fails. Only the fields that apply to ``kind`` are used."""

    kind: FaultKind
    """What goes wrong."""
    reason: str | None = None
    """Google error reason for FORBIDDEN / QUOTA (see ``REASONS``); ``None`` = the default."""
    retry_after: int | None = None
    """Seconds for a ``Retry-After`` header (any error kind); ``None`` = no header."""
    gate: str | None = None
    """SLOW: the gate to wait on (``Gates.DEFAULT`` when neither gate nor delay is given)."""
    delay: float | None = None
    """SLOW: seconds to wait instead of a gate (never use this from tests)."""
    body: str | None = None
    """MALFORMED / WRONG_SHAPE: an exact body to send instead of the provider's default."""
    purpose: str | None = None
    """Only requests marked with this purpose (``X-Sandbox-Purpose``, e.g. ``sync``) suffer it;
    others pass as if nothing were armed. ``None`` = every request."""

    def __post_init__(self) -> None:
        """Reject field combinations that cannot mean anything."""
        allowed = REASONS.get(self.kind)
        if self.reason is not None and (allowed is None or self.reason not in allowed):
            raise ValueError(f"reason {self.reason!r} does not apply to fault {self.kind}")
        if (self.gate is not None or self.delay is not None) and self.kind is not FaultKind.SLOW:
            raise ValueError("gate and delay only apply to slow faults")
        if self.gate is not None and self.delay is not None:
            raise ValueError("a slow fault waits on a gate or for a delay, not both")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if self.body is not None and self.kind not in (FaultKind.MALFORMED, FaultKind.WRONG_SHAPE):
            raise ValueError("body only applies to malformed and wrong_shape faults")

    @property
    def status(self) -> int:
        """The HTTP status the fault answers with (SLOW and RESET have none: 0)."""
        return STATUSES.get(self.kind, 0)

    @property
    def google_reason(self) -> str | None:
        """The Google error reason this fault reports, if its kind has one."""
        allowed = REASONS.get(self.kind)
        if allowed is None:
            return None
        return self.reason or allowed[0]


@dataclass(frozen=True)
class FaultTarget:
    """Where a fault applies: a provider, or one resource of it."""

    provider: Provider
    """The provider whose requests fail."""
    resource: str | None = None
    """Calendar id, ``token``/``auth``, feed name or dataset name; ``None`` = all of them."""


@dataclass
class ArmedFault:
    """A fault waiting in a queue, with how many more requests it will hit."""

    fault: Fault
    """The failure to produce."""
    remaining: int | None
    """Requests left to fail; ``None`` = every request until cleared."""


class FaultBoard:
    """The fault queues of every target."""

    def __init__(self) -> None:
        """Start with nothing armed."""
        self._queues: dict[FaultTarget, deque[ArmedFault]] = {}

    def inject(self, target: FaultTarget, fault: Fault, *, times: int | None = 1) -> None:
        """Make the next ``times`` requests to ``target`` fail (``None``: all, until cleared)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for until cleared)")
        self._queues.setdefault(target, deque()).append(ArmedFault(fault, times))

    def clear(self, provider: Provider | None = None, resource: str | None = None) -> None:
        """Disarm faults: all of them, a provider's (every resource), or one resource's."""
        for target in list(self._queues):
            if provider is not None and target.provider is not provider:
                continue
            if resource is not None and target.resource != resource:
                continue
            del self._queues[target]

    def take(
        self, provider: Provider, resource: str | None, purpose: str | None = None
    ) -> Fault | None:
        """The fault the next request to ``resource`` of ``provider`` (marked with
        ``purpose``) must suffer, if any.

        Consumes one use of a counted fault; the resource's queue wins over the provider's. A
        fault for another purpose stays armed and lets the request through.
        """
        targets = [FaultTarget(provider)]
        if resource is not None:
            targets.insert(0, FaultTarget(provider, resource))
        for target in targets:
            queue = self._queues.get(target)
            if not queue:
                continue
            armed = queue[0]
            if armed.fault.purpose is not None and armed.fault.purpose != purpose:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    queue.popleft()
            return armed.fault
        return None

    def armed(self) -> list[tuple[FaultTarget, ArmedFault]]:
        """Every armed fault in queue order, for inspection."""
        return [(target, armed) for target, queue in self._queues.items() for armed in queue]
