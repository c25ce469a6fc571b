"""WatchStatus: a snapshot of the selected integrations, then every change, resumable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from integrations.v1 import service_pb2 as api

from service.api import convert
from service.api.base import Context, RpcBase
from service.api.kept import Kept
from service.app import App
from service.domain import validation
from service.domain.exceptions import FieldViolation
from service.domain.model import Event
from service.domain.status import Status
from service.domain.watch import (
    Change,
    Heartbeat,
    SnapshotComplete,
    SnapshotItem,
    WatchFilter,
    WatchMessage,
)

#: More ids than this is a different use case (watch everything and filter locally).
MAX_IDS = 1000
#: Changes whose message is kept, the most recent, for the other streams that send them.
CHANGES_KEPT = 1024


class WatchRpcs(RpcBase):
    """WatchStatus."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        #: (tenant, revision, commit time) -> the change's message. Every stream of a tenant
        #: sends the same message for a change, so it is built once, not once per subscriber:
        #: building one was most of what delivering it cost. (A revision never changes; its
        #: time tells it from the same number given again after a restore of the database.
        #: The late flag is as of the first stream that sent it, moments after the commit.)
        self._changes_out: Kept[tuple[str, int, datetime], api.WatchStatusResponse] = Kept(
            CHANGES_KEPT
        )

    async def WatchStatus(
        self, request: api.WatchStatusRequest, context: Context
    ) -> AsyncIterator[api.WatchStatusResponse]:
        tenant = self.tenant(context)
        selection = _selection(request)
        resume_after = request.resume_after_revision or None
        stream = self.app.watch.stream(tenant, selection, resume_after)
        # Runs however the call ends, including a client cancelling while this generator
        # is suspended at a yield (where no exception reaches it): the stream leaves its
        # feed at once instead of whenever the generator is garbage-collected.
        # (cast: the grpc stubs type the callback as a nominal class, not a callable.)
        context.add_done_callback(cast(Any, lambda _: stream.close()))
        try:
            async for message in stream:
                yield self._message_out(message)
        finally:
            stream.close()

    def _message_out(self, message: WatchMessage) -> api.WatchStatusResponse:
        match message:
            case SnapshotItem(integration):
                return api.WatchStatusResponse(snapshot=self.out(integration))
            case SnapshotComplete(revision):
                return api.WatchStatusResponse(
                    snapshot_complete=api.SnapshotComplete(revision=revision)
                )
            case Heartbeat(revision):
                return api.WatchStatusResponse(heartbeat=api.Heartbeat(revision=revision))
            case Change(event):
                return self._change_out(event)
        raise AssertionError(f"unknown watch message {message!r}")

    def _change_out(self, event: Event) -> api.WatchStatusResponse:
        key = (event.tenant_id, event.revision, event.occurred_at)
        message = self._changes_out.get(key)
        if message is None:
            message = self._changes_out.keep(key, _change_message(self, event))
        return message


def _change_message(rpcs: RpcBase, event: Event) -> api.WatchStatusResponse:
    """A change as WatchStatus sends it: the state after it, or the deletion."""
    if event.state is not None:
        return api.WatchStatusResponse(change=rpcs.out(event.state), event=convert.event_out(event))
    return api.WatchStatusResponse(
        deleted=api.IntegrationDeleted(
            id=str(event.integration_id),
            revision=event.revision,
            connector_type=event.connector_type or "",
        ),
        event=convert.event_out(event),
    )


def _selection(request: api.WatchStatusRequest) -> WatchFilter:
    """The request's filter, with every bad part reported at once."""
    violations: list[FieldViolation] = []
    ids: list[UUID] = []
    if len(request.ids) > MAX_IDS:
        violations.append(FieldViolation("ids", f"at most {MAX_IDS} ids", "TOO_MANY_IDS"))
    for i, text in enumerate(request.ids[:MAX_IDS]):
        try:
            ids.append(validation.integration_id(text, f"ids[{i}]"))
        except validation.InvalidArgument as exc:
            violations.extend(exc.violations)
    statuses: list[Status] = []
    for i, number in enumerate(request.statuses):
        status = convert.STATUS.from_pb.get(number)
        if status is None:
            violations.append(FieldViolation(f"statuses[{i}]", "is not a status", "INVALID_ENUM"))
        else:
            statuses.append(status)
    if request.resume_after_revision < 0:
        violations.append(
            FieldViolation("resume_after_revision", "must not be negative", "NEGATIVE")
        )
    validation.raise_if(violations)
    return WatchFilter.of(ids, statuses, request.connector_type)
