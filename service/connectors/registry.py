"""The connectors this process knows: built-ins and plugins, found through entry points.

A third party adds a connector by installing a package that declares an entry point in the
group `integrations.connectors` (name = connector type, value = the Connector class).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

import structlog

from service.connectors.base import Connector, PushConnector

log = structlog.get_logger(__name__)

GROUP = "integrations.connectors"


class ConnectorRegistry:
    """Connector instances by type."""

    def __init__(self, connectors: Iterable[Connector]) -> None:
        self._by_type = {c.type: c for c in connectors}

    @classmethod
    def discover(cls) -> ConnectorRegistry:
        """Every connector installed in this environment."""
        found: list[Connector] = []
        for ep in entry_points(group=GROUP):
            try:
                connector_class = ep.load()
                found.append(connector_class())
            except Exception:
                # A broken plugin must not take the service down with it.
                log.exception("connector_failed_to_load", entry_point=ep.name)
        return cls(found)

    def get(self, connector_type: str) -> Connector | None:
        return self._by_type.get(connector_type)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_type))

    @property
    def pushing(self) -> frozenset[str]:
        """The types whose providers can push changes (they open channels)."""
        return frozenset(t for t, c in self._by_type.items() if isinstance(c, PushConnector))
