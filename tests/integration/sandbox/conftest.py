"""Fixtures for the tests of the sandbox provider itself, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox import Sandbox
from tests.support.sandbox_http import TOKEN


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    """A running sandbox with a ``primary`` calendar and a valid static token."""
    async with Sandbox() as sandbox:
        sandbox.state.add_access_token(TOKEN)
        sandbox.state.google.add_calendar("primary", "Work")
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session without a connection cap, so many requests can be held at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session
