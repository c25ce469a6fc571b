"""Fixtures for tests that talk to the sandbox provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from integrations.v1 import integration_pb2 as pb

from sandbox import Sandbox
from tests.support.rpc import Stub
from tests.support.syncing import bearer, create, google, seed_calendar


@pytest.fixture
def calendar_events() -> int:
    """How many events the sandbox's calendar starts with (override per module)."""
    return 3


@pytest.fixture
async def sb(calendar_events: int) -> AsyncIterator[Sandbox]:
    """A running sandbox provider with one seeded Google calendar."""
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=calendar_events)
        yield sandbox


@pytest.fixture
async def calendar(stub: Stub, sb: Sandbox) -> str:
    """An ACTIVE Google Calendar integration on the sandbox, never synced."""
    created = await create(stub, "google_calendar", google(sb), bearer())
    assert created.status == pb.STATUS_ACTIVE
    return created.id
