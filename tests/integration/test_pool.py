"""A connection goes back to the pool as clean as it came out, however its holder left.

asyncpg prepares a statement without a Sync and sends the Sync with the execute that follows.
A holder that leaves in between (a WatchStatus whose subscriber hung up just as its read was
prepared, or an argument the driver cannot encode) left the server in an implicit transaction
that holds a snapshot while the driver thought the connection idle: the next holder's
repeatable-read snapshot failed with INTERNAL, and the idle snapshot held back VACUUM.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from service.domain.watch import WatchFilter
from service.storage import watch as history
from service.storage.database import Database
from tests.support import postgres

_SELECTED = "SELECT id FROM integrations WHERE tenant_id = $1 LIMIT $2"


async def _hung_up_after_prepare(db: Database) -> None:
    """The block is cancelled just as its statement's prepare answered."""
    async with db.raw() as conn:
        await conn.prepare(_SELECTED)
        raise asyncio.CancelledError


async def _bad_argument(db: Database) -> None:
    """The statement is prepared, then its argument cannot be encoded."""
    async with db.raw() as conn:
        await conn.fetch(_SELECTED, "default", "not a number")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """One connection, so the next holder is the same session as the last."""
    db = await Database.open(database_url, pool_size=1, run_migrations=False)
    yield db
    await db.close()


@pytest.mark.parametrize("leave", [_hung_up_after_prepare, _bad_argument])
async def test_the_next_holder_gets_a_connection_with_no_transaction_open(
    db: Database, database_url: str, leave: Callable[[Database], Awaitable[None]]
) -> None:
    with pytest.raises((asyncio.CancelledError, asyncpg.DataError)):
        await leave(db)

    async with db.raw() as conn:
        pid = conn.get_server_pid()
    observer = await asyncpg.connect(database_url)
    try:
        state = await observer.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await observer.close()
    assert state == "idle"  # not "active": still inside the unsynced statement, its snapshot held

    # What failed next: a WatchStatus snapshot, one repeatable-read transaction.
    revision, integrations = await history.snapshot(db, "default", WatchFilter())
    assert (revision, integrations) == (0, [])


async def test_pooled_connections_give_up_on_a_server_that_went_silent(
    database_url: str,
) -> None:
    """A server that stops answering without closing the socket (a dead host, a failover)
    ends the connection within about a minute instead of leaving a statement waiting for
    ever. The kernel does that, so what is checked is that it was asked to."""
    async with postgres.over_tcp(database_url) as url:
        db = await Database.open(url, pool_size=1, run_migrations=False)
        try:
            async with db.raw() as conn:
                sock = conn.unproxied()._transport.get_extra_info("socket")
                assert sock.family == socket.AF_INET
                options = {
                    "SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    **{
                        name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
                        for name in (
                            "TCP_KEEPIDLE",
                            "TCP_KEEPINTVL",
                            "TCP_KEEPCNT",
                            "TCP_USER_TIMEOUT",
                        )
                    },
                }
                assert await conn.fetchval("SELECT 1") == 1  # and it works as before
        finally:
            await db.close()
    assert options == {
        "SO_KEEPALIVE": 1,
        "TCP_KEEPIDLE": 30,
        "TCP_KEEPINTVL": 10,
        "TCP_KEEPCNT": 3,
        "TCP_USER_TIMEOUT": 60_000,
    }
