"""Waiting for state that has no event to await: another process, the database's own views,
tasks finishing. Polls with a deadline, so a broken test fails with a message instead of
hanging; it never stands in for synchronisation the code under test offers."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def until(
    condition: Callable[[], Any],
    what: str = "a condition",
    *,
    timeout: float = 20.0,
    every: float = 0.01,
    explain: Callable[[], Awaitable[object]] | None = None,
) -> Any:
    """Wait until `condition()` (plain or async) returns something truthy, and return it;
    after `timeout` seconds fail with `what` and, if given, what `explain()` says."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = condition()
                if inspect.isawaitable(found):
                    found = await found
                if found:
                    return found
                await asyncio.sleep(every)
    except TimeoutError:
        detail = await explain() if explain is not None else ""
        raise AssertionError(f"timed out waiting for {what}\n{detail}".rstrip()) from None
