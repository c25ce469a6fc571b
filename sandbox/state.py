"""The whole in-memory state of the sandbox: every provider's data, the faults and the log."""

from __future__ import annotations

from sandbox.calendars import CalendarStore
from sandbox.clock import Clock, utc_now
from sandbox.datasets import DatasetStore
from sandbox.faults import Fault, FaultBoard, FaultTarget, Provider
from sandbox.feeds import FeedStore
from sandbox.gates import Gates
from sandbox.push import PushChannels
from sandbox.request_log import RequestLog
from sandbox.tokens import AuthServer


class SandboxState:
    """Everything the sandbox knows, reachable from tests as ``sandbox.state``.

    Attributes are replaced by ``reset``: hold on to the state, not to its parts.
    """

    def __init__(self, clock: Clock = utc_now) -> None:
        """Create an empty sandbox that reads the time from ``clock``."""
        self.clock = clock
        self.gates = Gates()
        self._init()

    def _init(self) -> None:
        # Kept across resets (its HTTP client belongs to the server's life), but emptied.
        self.push: PushChannels = getattr(self, "push", None) or PushChannels(self.clock)
        self.push.clear()
        """Google push channels (events.watch) and the notifications they sent."""
        self.google = CalendarStore(self.clock, on_change=self.push.changed)
        """Google calendars and events."""
        self.oauth = AuthServer(self.clock)
        """OAuth clients, codes and tokens."""
        self.feeds = FeedStore(self.clock)
        """ICS feeds."""
        self.datasets = DatasetStore()
        """REST datasets."""
        self.faults = FaultBoard()
        """Armed faults."""
        self.log = RequestLog()
        """Provider requests seen so far."""

    def reset(self) -> None:
        """Forget all data, tokens, faults and log entries, releasing any parked request."""
        self.gates.open_all()
        self.gates = Gates()
        self._init()

    def inject(
        self,
        provider: Provider,
        fault: Fault,
        *,
        resource: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` requests to ``provider`` (or one of its resources) fail.

        ``times=None`` makes every request fail until ``clear_faults``.
        """
        self.faults.inject(FaultTarget(provider, resource), fault, times=times)

    def clear_faults(self, provider: Provider | None = None, resource: str | None = None) -> None:
        """Disarm all faults, or those of one provider or resource."""
        self.faults.clear(provider, resource)

    def add_access_token(
        self,
        token: str,
        *,
        expires_in: int = 3600,
        scope: str = "",
        account: str = "owner@example.com",
    ) -> None:
        """Register a static bearer token that the Google provider accepts until it expires,
        acting for ``account``."""
        self.oauth.add_access_token(token, expires_in=expires_in, scope=scope, account=account)
