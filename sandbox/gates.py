"""Named gates that hold slow requests until a test (or a control call) opens them.

A gate is the sandbox's replacement for ``sleep``: a "slow" fault parks each request on a
gate, the test observes how many requests are parked (``wait_for``) and then opens the gate
to let them all through. Nothing in a test ever has to guess a duration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class GateStatus:
    """A snapshot of one gate, as the control API reports it."""

    name: str
    """The gate's name."""
    is_open: bool
    """Whether requests currently pass straight through."""
    waiting: int
    """Requests parked on the gate right now."""
    arrived: int
    """Requests that have ever reached the gate (parked or passed)."""


class Gate:
    """A barrier for requests: closed until opened, then every waiter is released at once."""

    def __init__(self, name: str) -> None:
        """Create a closed gate called ``name``."""
        self.name = name
        self._opened = asyncio.Event()
        # Replaced (after being set) on every count change, so watchers wake without polling.
        self._changed = asyncio.Event()
        self.waiting = 0
        """Requests parked on the gate right now."""
        self.arrived = 0
        """Requests that have ever reached the gate."""

    @property
    def is_open(self) -> bool:
        """Whether requests pass straight through."""
        return self._opened.is_set()

    def open(self) -> None:
        """Release every parked request and let later ones through until closed again."""
        self._opened.set()

    def close(self) -> None:
        """Make later requests wait again (already released ones are unaffected)."""
        self._opened.clear()

    async def pass_through(self) -> None:
        """Wait here until the gate is open; the caller then continues normally."""
        self.arrived += 1
        self._count(+1)
        try:
            await self._opened.wait()
        finally:
            self._count(-1)

    async def wait_for(self, waiting: int) -> None:
        """Return once at least ``waiting`` requests are parked on the gate."""
        while self.waiting < waiting:
            await self._changed.wait()

    async def wait_for_arrivals(self, arrived: int) -> None:
        """Return once at least ``arrived`` requests have ever reached the gate."""
        while self.arrived < arrived:
            await self._changed.wait()

    def status(self) -> GateStatus:
        """Describe the gate's current state."""
        return GateStatus(self.name, self.is_open, self.waiting, self.arrived)

    def _count(self, delta: int) -> None:
        self.waiting += delta
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class Gates:
    """The registry of named gates; a gate springs into existence (closed) when first named."""

    DEFAULT = "default"
    """The gate a slow fault uses when it names neither a gate nor a delay."""

    def __init__(self) -> None:
        """Start with no gates."""
        self._gates: dict[str, Gate] = {}

    def __getitem__(self, name: str) -> Gate:
        """The gate called ``name``, created closed if it does not exist yet."""
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = Gate(name)
        return gate

    def open(self, name: str = DEFAULT) -> None:
        """Open the gate called ``name``."""
        self[name].open()

    def close(self, name: str = DEFAULT) -> None:
        """Close the gate called ``name``."""
        self[name].close()

    def open_all(self) -> None:
        """Open every gate, e.g. before a shutdown so no request stays parked."""
        for gate in self._gates.values():
            gate.open()

    def statuses(self) -> list[GateStatus]:
        """Describe every gate that has been named so far."""
        return [gate.status() for gate in self._gates.values()]
