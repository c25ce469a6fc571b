"""Follow integrations' statuses with WatchStatus, across disconnects, restarts and replicas.

    watch = StatusWatch(stub, statuses=[pb.STATUS_ERROR, pb.STATUS_DISCONNECTED])
    async for message in watch:
        ...                     # every message the server sent, in order
        watch.view              # id -> Integration of everything selected, kept current
        watch.revision          # the newest revision seen: where a reconnection resumes

When a stream ends in a way that a retry can fix — UNAVAILABLE (the server is shutting down
or unreachable), RESOURCE_EXHAUSTED (this subscriber fell too far behind, or the replica serves
its maximum of streams), CANCELLED (by the server's transport or a proxy), DEADLINE_EXCEEDED,
ABORTED, INTERNAL or UNKNOWN (often a proxy in between), or a plain end without a status —
the watch reconnects with backoff (never sooner than the server's RetryInfo asks) and resumes
after `revision`, so no change is missed or repeated. A permanent refusal (UNAUTHENTICATED,
PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED…) is raised at once: retrying
the same request cannot fix it. When the server no
longer has the history to resume from (REVISION_COMPACTED), it starts over from a fresh
snapshot: the `snapshot` messages arrive again and `view` is replaced when the snapshot is
complete. Heartbeats advance `revision` too, so a quiet, filtered watch resumes from near
the head rather than from an old revision.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

if TYPE_CHECKING:
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub

log = logging.getLogger(__name__)

#: Codes after which the same request, resumed, can succeed. (CANCELLED reaches here only
#: from the other side: cancelling the watch locally ends the iteration with CancelledError.)
RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
#: ErrorInfo reasons that mean "your revision cannot be resumed from: take a new snapshot".
START_OVER = frozenset({"REVISION_COMPACTED", "REVISION_AHEAD"})


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: exponential, capped, with jitter."""

    first: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    #: Each delay varies by up to this fraction, so clients of a failed replica spread out.
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnection attempt `attempt` (1 for the first)."""
        base = min(self.maximum, self.first * self.multiplier ** max(0, attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class StatusWatch:
    """A WatchStatus subscription that reconnects and resumes by itself."""

    def __init__(
        self,
        stub: IntegrationServiceAsyncStub,
        *,
        ids: Iterable[str] = (),
        statuses: Iterable[pb.Status.ValueType] = (),
        connector_type: str = "",
        resume_after_revision: int = 0,
        metadata: Sequence[tuple[str, str]] = (),
        backoff: Backoff = Backoff(),
        max_attempts: int | None = None,
    ) -> None:
        """`resume_after_revision` 0 starts with a snapshot; `max_attempts` bounds
        consecutive failed reconnections (None: keep trying)."""
        self._stub = stub
        self._ids = list(ids)
        self._statuses = list(statuses)
        self._connector_type = connector_type
        self._metadata = tuple(metadata)
        self._backoff = backoff
        self._max_attempts = max_attempts
        #: The newest revision seen; the next connection resumes after it.
        self.revision = resume_after_revision
        #: The selected integrations by id, as of `revision`. Complete once a snapshot has
        #: completed (a watch started with resume_after_revision holds only what changed).
        self.view: dict[str, pb.Integration] = {}
        #: How many streams were opened (1 + reconnections).
        self.connections = 0
        self._incoming: dict[str, pb.Integration] | None = None

    def __aiter__(self) -> AsyncIterator[api.WatchStatusResponse]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[api.WatchStatusResponse]:
        failures = 0
        while True:
            call = self._stub.WatchStatus(self._request(), metadata=self._metadata)
            self.connections += 1
            ended: grpc.aio.AioRpcError | None = None
            try:
                async for message in call:
                    failures = 0
                    self._apply(message)
                    yield message
            except grpc.aio.AioRpcError as exc:
                if _reason(exc) in START_OVER:
                    self.revision = 0  # the next stream begins with a fresh snapshot
                elif exc.code() not in RESUMABLE:
                    raise
                ended = exc
            finally:
                call.cancel()
            # Here the stream broke in a resumable way, or ended without an error (a proxy
            # closing it): either way, resume after a pause.
            failures += 1
            if self._max_attempts is not None and failures > self._max_attempts:
                if ended is not None:
                    raise ended
                return
            delay = max(self._backoff.delay(failures), _retry_delay(ended))
            log.info(
                "watch stream ended (%s); resuming after revision %d in %.2fs",
                ended.code().name if ended is not None else "closed",
                self.revision,
                delay,
            )
            await asyncio.sleep(delay)

    def _request(self) -> api.WatchStatusRequest:
        self._incoming = {} if self.revision == 0 else None
        return api.WatchStatusRequest(
            ids=self._ids,
            statuses=self._statuses,
            connector_type=self._connector_type,
            resume_after_revision=self.revision,
        )

    def _apply(self, message: api.WatchStatusResponse) -> None:
        kind = message.WhichOneof("kind")
        if kind == "snapshot":
            if self._incoming is None:
                self._incoming = {}
            self._incoming[message.snapshot.id] = message.snapshot
        elif kind == "snapshot_complete":
            self.view = self._incoming or {}
            self._incoming = None
            self.revision = message.snapshot_complete.revision
        elif kind == "change":
            integration = message.change
            if self._statuses and integration.status not in self._statuses:
                self.view.pop(integration.id, None)  # it left the selected statuses
            else:
                self.view[integration.id] = integration
            self.revision = max(self.revision, integration.revision)
        elif kind == "deleted":
            self.view.pop(message.deleted.id, None)
            self.revision = max(self.revision, message.deleted.revision)
        elif kind == "heartbeat":
            self.revision = max(self.revision, message.heartbeat.revision)


def _details(error: grpc.aio.AioRpcError) -> list[Any]:
    """The google.rpc details of a failed call (none when it carries none, or garbage)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return list(status_pb2.Status.FromString(value).details)
            except Exception:  # a proxy's trailer need not be ours
                return []
    return []


def _reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of a failed call ('' when it has none)."""
    for detail in _details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def _retry_delay(error: grpc.aio.AioRpcError | None) -> float:
    """The seconds a google.rpc.RetryInfo of a failed call asks to wait (0 without one)."""
    for detail in _details(error) if error is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(0.0, float(info.retry_delay.ToTimedelta().total_seconds()))
    return 0.0
