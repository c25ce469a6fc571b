"""A local stand-in for the providers our connectors talk to, with fault injection.

It mimics Google Calendar API v3 (events.list with sync tokens), an OAuth 2.0 authorization
server (PKCE, rotating refresh tokens), iCalendar feeds and paginated REST JSON APIs. Tests
use ``async with Sandbox() as sb:``; other processes run ``python -m sandbox`` and drive it
through the ``/_control`` HTTP API.
"""

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox, create_app
from sandbox.state import SandboxState

__all__ = ["Fault", "FaultKind", "Provider", "Sandbox", "SandboxState", "create_app"]
