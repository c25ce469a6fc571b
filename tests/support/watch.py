"""Reading WatchStatus streams in tests: a recorder that consumes a call in the background
and lets a test wait for a condition on what arrived (never for a length of time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable

import grpc
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.watch import StatusWatch

from service.api.convert import STATUS
from service.app import App
from service.domain.status import Status
from tests.support.waiting import until


class Recorder:
    """Consumes a stream of WatchStatusResponse in a task, keeping every message and the view
    it implies (id -> Integration)."""

    def __init__(
        self, stream: AsyncIterable[api.WatchStatusResponse], *, statuses: tuple[int, ...] = ()
    ) -> None:
        self.stream = stream
        self.messages: list[api.WatchStatusResponse] = []
        self.view: dict[str, pb.Integration] = {}
        self.revision = 0
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = False
        self._statuses = statuses
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read(stream))

    @property
    def changes(self) -> list[api.WatchStatusResponse]:
        """The change and deletion messages, in order."""
        return [m for m in self.messages if m.WhichOneof("kind") in ("change", "deleted")]

    @property
    def revisions(self) -> list[int]:
        return [m.event.revision for m in self.changes]

    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("kind")) for m in self.messages]

    async def _read(self, stream: AsyncIterable[api.WatchStatusResponse]) -> None:
        try:
            async for message in stream:
                self.messages.append(message)
                self._apply(message)
                self._arrived.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.ended = True
            self._arrived.set()

    def _apply(self, m: api.WatchStatusResponse) -> None:
        kind = m.WhichOneof("kind")
        if kind == "snapshot":
            self.view[m.snapshot.id] = m.snapshot
        elif kind == "snapshot_complete":
            self.revision = m.snapshot_complete.revision
        elif kind == "change":
            if self._statuses and m.change.status not in self._statuses:
                self.view.pop(m.change.id, None)
            else:
                self.view[m.change.id] = m.change
            self.revision = m.event.revision
        elif kind == "deleted":
            self.view.pop(m.deleted.id, None)
            self.revision = m.event.revision
        elif kind == "heartbeat":
            self.revision = max(self.revision, m.heartbeat.revision)

    async def until(self, condition: Callable[[Recorder], bool], timeout: float = 10) -> None:
        """Wait until `condition` holds (fails after `timeout` seconds, or if the stream ended
        without it)."""
        async with asyncio.timeout(timeout):
            while not condition(self):
                if self.ended:
                    raise AssertionError(
                        f"the stream ended ({self.error!r}) before the condition held"
                    )
                self._arrived.clear()
                await self._arrived.wait()

    async def until_snapshot(self, timeout: float = 10) -> None:
        await self.until(lambda r: "snapshot_complete" in r.kinds(), timeout)

    async def until_revision(self, revision: int, timeout: float = 10) -> None:
        await self.until(lambda r: r.revision >= revision, timeout)

    async def until_ended(self, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.task)

    async def stop(self) -> None:
        """Go away as a client does: cancel the call (and stop reading)."""
        cancel = getattr(self.stream, "cancel", None)
        if cancel is not None:
            cancel()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def database_view(app: App, tenant: str = "default") -> dict[str, tuple[int, int]]:
    """id -> (status number, revision) of every integration of the tenant, from the table."""
    async with app.db.raw() as conn:
        rows = await conn.fetch(
            "SELECT id, status, revision FROM integrations WHERE tenant_id = $1", tenant
        )
    return {str(r["id"]): (STATUS.to_pb[Status(r["status"])], r["revision"]) for r in rows}


def view_of(view: dict[str, pb.Integration]) -> dict[str, tuple[int, int]]:
    """The same shape as database_view, from a subscriber's view."""
    return {i: (int(v.status), v.revision) for i, v in view.items()}


async def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait until `condition` holds: for state that has no event to wait on (tasks
    finishing, connections being returned)."""
    await until(condition, "the condition", timeout=timeout, every=0.005)


def messages_of(watch: StatusWatch) -> AsyncGenerator[api.WatchStatusResponse, None]:
    """The watch's messages as the async generator they are, so a test can close them
    (StatusWatch declares only an AsyncIterator)."""
    messages = aiter(watch)
    assert isinstance(messages, AsyncGenerator)
    return messages
