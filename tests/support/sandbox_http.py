"""Calling the sandbox over plain HTTP, as a provider's own clients would: its static token,
a calendar's events.list, HTTP basic credentials, a small REST dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from sandbox import Sandbox

TOKEN = "test-token"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
SAFETY = 5.0  # seconds; a safety net for awaits that must never hang, never a sleep
RECORDS = [{"uuid": f"r{n}", "n": n} for n in range(5)]


async def events(
    http: aiohttp.ClientSession,
    sb: Sandbox,
    calendar: str = "primary",
    token: str | None = TOKEN,
    **params: str | int,
) -> tuple[int, dict[str, Any]]:
    """Call events.list; return the status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{sb.url}/calendar/v3/calendars/{calendar}/events"
    query = {k: str(v) for k, v in params.items()}
    async with http.get(url, params=query, headers=headers) as response:
        return response.status, await response.json()


def basic(username: str, password: str) -> dict[str, str]:
    """Headers carrying HTTP basic credentials."""
    return {"Authorization": aiohttp.encode_basic_auth(username, password)}
