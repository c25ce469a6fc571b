"""The process's one LISTEN connection to the `integration_events` channel.

Every committed change runs `pg_notify('integration_events', '<tenant>:<revision>')`. A
notification is only a wake-up call: notifications sent while this connection is down are
lost for good, so after every (re)connection `on_connected` fires and the hub re-reads the
event table, which is the truth. The connection is watched two ways: asyncpg reports a
closed socket at once (pg_terminate_backend, a database restart), and a periodic `SELECT 1`
with a timeout catches a connection that silently stopped answering (a network partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from service.background import cancel_and_wait

log = structlog.get_logger(__name__)

CHANNEL = "integration_events"
APPLICATION_NAME = "integrations-watch-listener"

_FIRST_RETRY = 0.1
_LAST_RETRY = 5.0
_CHECK_TIMEOUT = 5.0


class ChangeListener:
    """Keeps one connection LISTENing, reconnecting with backoff whenever it is lost."""

    def __init__(
        self,
        dsn: str,
        *,
        on_change: Callable[[str, int], None],
        on_connected: Callable[[], None],
        check_interval: float,
    ) -> None:
        self.dsn = dsn
        self.on_change = on_change
        self.on_connected = on_connected
        self.check_interval = check_interval
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How many times a connection was established (1 after a clean start).
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of the current connection (for operators and tests)."""
        return self._conn.get_server_pid() if self.connected and self._conn else None

    async def start(self) -> None:
        """Connect (a failure is logged and retried in the background) and keep connected."""
        try:
            await self._connect()
        except Exception as exc:
            log.warning("watch_listener_connect_failed", error=repr(exc))
        self._task = asyncio.create_task(self._supervise(), name="watch-listener")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._disconnect()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self.dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        try:
            self._lost.clear()
            conn.add_termination_listener(self._on_termination)
            await conn.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connections += 1
        log.info(
            "watch_listener_connected",
            backend_pid=conn.get_server_pid(),
            reconnect=self.connections > 1,
        )
        # LISTEN is active: anything committed from now on will wake us, so this is the
        # moment to re-read whatever was missed while we were not listening.
        self.on_connected()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_termination)
            try:
                await asyncio.wait_for(conn.close(), timeout=_CHECK_TIMEOUT)
            except Exception:
                conn.terminate()

    async def _supervise(self) -> None:
        delay = _FIRST_RETRY
        while True:
            if not self.connected:
                await self._disconnect()
                try:
                    await self._connect()
                    delay = _FIRST_RETRY
                except Exception as exc:
                    log.warning("watch_listener_reconnect_failed", error=repr(exc), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _LAST_RETRY)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=self.check_interval)
            if self._lost.is_set() or not await self._alive():
                log.warning("watch_listener_lost")
                await self._disconnect()

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=_CHECK_TIMEOUT)
        except Exception:
            return False
        return True

    def _on_termination(self, _conn: object) -> None:
        self._lost.set()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        tenant, _, text = payload.rpartition(":")
        try:
            revision = int(text)
        except ValueError:
            log.warning("watch_listener_bad_payload", payload=payload)
            return
        self.on_change(tenant, revision)
