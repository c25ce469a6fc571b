"""What a WatchStatus subscriber selects and what its stream carries. Pure Python, no I/O.

A stream is a snapshot (the current state of every selected integration), a marker that the
snapshot is complete, then every change after it in revision order. Which changes a
subscriber receives follows from one rule that needs no memory of what was sent before, so
a resumed stream (on any replica) selects exactly what the original stream would have:

- a change is sent when the integration matches the filter before *or* after it, so an
  integration that leaves the selected statuses is sent once more (and the subscriber drops
  it);
- a deletion is sent to every stream whose `ids` (if any) name the integration and whose
  connector type (if any) is the integration's, whatever its status: a tombstone carries no
  state to test, and a subscriber that never held the id simply ignores it. Sending it can
  never be wrong; withholding it could leave a subscriber holding a deleted integration
  forever. (Deletions recorded before events named their connector type go to every stream.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from service.domain.model import Event, Integration
from service.domain.status import Status


@dataclass(frozen=True)
class WatchFilter:
    """Which integrations a stream selects; empty parts select everything."""

    ids: frozenset[UUID] = frozenset()
    statuses: frozenset[Status] = frozenset()
    connector_type: str = ""

    @classmethod
    def of(
        cls, ids: Iterable[UUID] = (), statuses: Iterable[Status] = (), connector_type: str = ""
    ) -> WatchFilter:
        return cls(frozenset(ids), frozenset(statuses), connector_type)

    def matches(self, integration: Integration) -> bool:
        """Whether the integration, in its current state, belongs to the selection."""
        return (
            (not self.ids or integration.id in self.ids)
            and (not self.statuses or integration.status in self.statuses)
            and (not self.connector_type or integration.connector_type == self.connector_type)
        )

    def selects(self, event: Event) -> bool:
        """Whether a subscriber with this filter receives the event (see the module doc)."""
        if self.ids and event.integration_id not in self.ids:
            return False
        after = event.state
        if after is None:
            kind = event.connector_type
            return not self.connector_type or kind is None or kind == self.connector_type
        if self.connector_type and after.connector_type != self.connector_type:
            return False  # the connector type of an integration never changes
        if not self.statuses:
            return True
        return after.status in self.statuses or event.from_status in self.statuses


@dataclass(frozen=True)
class SnapshotItem:
    """One integration of the initial snapshot."""

    integration: Integration


@dataclass(frozen=True)
class SnapshotComplete:
    """The snapshot is complete and consistent with `revision`; changes after it follow."""

    revision: int


@dataclass(frozen=True)
class Change:
    """An integration changed (`event.state` is its full new state) or was deleted
    (`event.state` is None)."""

    event: Event

    @property
    def revision(self) -> int:
        return self.event.revision


@dataclass(frozen=True)
class Heartbeat:
    """Nothing selected happened for a while; the stream has seen everything up to
    `revision` (a subscriber may resume from it)."""

    revision: int


WatchMessage = SnapshotItem | SnapshotComplete | Change | Heartbeat
"""One message of a stream."""
