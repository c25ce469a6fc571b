"""ListRecords and ListRecordChanges: the synced data as consumers read it.

A listing is exact at one change number, carried in its page token and returned as its cursor
on every page; the change feed continues from that cursor (see `engine.record_feed`).

The feed is read in pages rather than streamed: a consumer that cannot hold a stream open (a
cron job, a serverless function, a service behind a proxy that cuts idle connections) reads
it the same way as one that can, a page is an obvious unit to apply and commit together with
its cursor, retrying one is harmless (the same cursor reads the same or newer changes), and a
replica holds nothing per consumer. Consumers that want to hear about changes at once
subscribe to the records.changed webhook and then read the feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from google.protobuf.message import Message
from integrations.v1 import service_pb2 as api

from service.api import convert, feed_cursors
from service.api.base import Context, RpcBase
from service.domain import validation
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.domain.sync import FeedPosition

M = TypeVar("M", bound=Message)

#: Changes per page when the caller does not say.
DEFAULT_CHANGES_PAGE = 500
#: A page of ListRecords or ListRecordChanges ends early (with more to read) once its
#: records add up to this many bytes as sent, so it stays under gRPC's default 4 MiB message
#: limit whatever the page size; a page always holds at least one (a record is never more
#: than the limit less some headroom, see RecordLimits.max_wire_bytes).
MAX_PAGE_BYTES = 2 * 1024 * 1024


class FeedRpcs(RpcBase):
    """The RPCs that read what syncs brought in."""

    async def ListRecords(
        self, request: api.ListRecordsRequest, context: Context
    ) -> api.ListRecordsResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        size, violations = validation.page_size(request.page_size, default=100)
        validation.raise_if(violations)
        filters = {"id": request.id}
        snapshot, after = _listing_position(
            self.page_tokens.decode(request.page_token, tenant, "records", filters)
        )
        found = await self.app.feed.records(
            tenant, integration_id, snapshot=snapshot, after_id=after, limit=size + 1
        )
        shown = _fitting([convert.record_out(r) for r in found.records[:size]], MAX_PAGE_BYTES)
        _, token = self.page_tokens.page(
            found.records[: len(shown) + 1],
            len(shown),
            tenant,
            "records",
            filters,
            lambda r: [found.snapshot, r.id],
        )
        return api.ListRecordsResponse(
            records=shown,
            next_page_token=token,
            cursor=feed_cursors.encode(
                self.page_tokens,
                tenant,
                integration_id,
                FeedPosition(found.snapshot, found.snapshot),
            ),
        )

    async def ListRecordChanges(
        self, request: api.ListRecordChangesRequest, context: Context
    ) -> api.ListRecordChangesResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        size, violations = validation.page_size(request.page_size, default=DEFAULT_CHANGES_PAGE)
        validation.raise_if(violations)
        position = feed_cursors.decode(self.page_tokens, tenant, request.after, integration_id)
        read = await self.app.feed.changes(tenant, integration_id, position, limit=size)
        changes = _fitting([convert.change_out(c) for c in read.changes], MAX_PAGE_BYTES)
        read = read.cut(len(changes))
        return api.ListRecordChangesResponse(
            changes=changes,
            cursor=feed_cursors.encode(self.page_tokens, tenant, integration_id, read.next),
            has_more=read.more,
        )


def _listing_position(position: list[object] | None) -> tuple[int | None, str | None]:
    """(snapshot, last id) of a ListRecords page token; (None, None) for the first page."""
    if position is None:
        return None, None
    if (
        len(position) == 2
        and isinstance(position[0], int)
        and not isinstance(position[0], bool)
        and 0 <= position[0] <= 2**63 - 1
        and isinstance(position[1], str)
        and "\x00" not in position[1]
    ):
        return position[0], position[1]
    raise InvalidArgument(
        [FieldViolation("page_token", "is not a page token of this list", "MALFORMED_PAGE_TOKEN")]
    )


def _fitting(messages: Sequence[M], budget: int) -> Sequence[M]:
    """The first messages that add up to at most `budget` bytes encoded (at least one)."""
    total = 0
    for n, message in enumerate(messages):
        total += message.ByteSize()
        if total > budget:
            return messages[: max(n, 1)]
    return messages
