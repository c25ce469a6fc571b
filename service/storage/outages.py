"""Telling a database outage apart from a bug: the exceptions that mean PostgreSQL is out of
reach (stopped, restarting, unreachable, or the connection was cut), so callers can answer
"retry shortly" instead of reporting an internal error."""

from __future__ import annotations

import asyncpg

# SQLSTATE classes 08 (connection exception) and 57P (operator intervention: admin shutdown,
# crash shutdown, cannot connect now) are the database going away, not a query going wrong.
_OUTAGE_STATES = ("08", "57P")

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionFailureError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionError,  # refused, reset, aborted
    FileNotFoundError,  # the Unix socket of a stopped server
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) means the database cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES):
            return True
        if isinstance(current, asyncpg.PostgresError):
            state = getattr(current, "sqlstate", "") or ""
            if state.startswith(_OUTAGE_STATES):
                return True
        if isinstance(current, asyncpg.InterfaceError) and "connection" in str(current).lower():
            return True  # e.g. "cannot call Connection.fetch(): connection is closed"
        current = current.__cause__ or current.__context__
    return False
