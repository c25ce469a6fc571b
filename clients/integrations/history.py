"""The client's calls on an integration's history (its status events and sync runs) and its
data (the synced records and their change feed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from integrations.calls import Calls
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api


class HistoryCalls(Calls):
    """Events, sync runs, records and record changes, by page or all of them."""

    async def events(
        self, integration_id: str, page_size: int = 100
    ) -> AsyncIterator[pb.IntegrationEvent]:
        """The integration's history, newest first."""
        async for item in self._pages(
            self.stub.ListEvents,
            lambda token: api.ListEventsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "events",
        ):
            yield item

    async def sync_runs(
        self, integration_id: str, page_size: int = 100
    ) -> AsyncIterator[pb.SyncRun]:
        """The integration's sync runs, newest first."""
        async for item in self._pages(
            self.stub.ListSyncRuns,
            lambda token: api.ListSyncRunsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "runs",
        ):
            yield item

    async def sync_runs_page(
        self, integration_id: str, *, page_size: int = 20, page_token: str = ""
    ) -> tuple[list[pb.SyncRun], str]:
        """One page of sync runs, newest first, and the token of the next ("" at the end)."""
        page = await self._call(
            self.stub.ListSyncRuns,
            api.ListSyncRunsRequest(id=integration_id, page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return list(page.runs), page.next_page_token

    async def records_page(
        self, integration_id: str, *, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[pb.Record], str]:
        """One page of synced records and the token of the next ("" at the end)."""
        page = await self._call(
            self.stub.ListRecords,
            api.ListRecordsRequest(id=integration_id, page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return list(page.records), page.next_page_token

    async def records(self, integration_id: str, page_size: int = 500) -> AsyncIterator[pb.Record]:
        """The integration's synced records (for the cursor that goes with them, page through
        ListRecords yourself: every page's `cursor`)."""
        async for item in self._pages(
            self.stub.ListRecords,
            lambda token: api.ListRecordsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "records",
        ):
            yield item

    async def record_changes(
        self,
        integration_id: str,
        *,
        after: str = "",
        page_size: int = 500,
        follow: bool = False,
        poll_interval: timedelta = timedelta(seconds=5),
    ) -> AsyncIterator[api.ListRecordChangesResponse]:
        """The integration's change feed after the cursor `after` ("" = from the start), one
        page at a time, each with the cursor that resumes after it: apply a page's `changes`,
        then store its `cursor` (a crash in between replays the page, which is harmless: every
        change is the record's latest state). A page comes when it has changes or moves the
        cursor. Stops once caught up, unless `follow`, which keeps asking every
        `poll_interval` (or subscribe to the records.changed webhook and call this when one
        arrives). Raises IntegrationsError CURSOR_EXPIRED when the cursor is older than the
        feed keeps deletions: read everything again with ListRecords."""
        cursor = after
        while True:
            page = await self._call(
                self.stub.ListRecordChanges,
                api.ListRecordChangesRequest(id=integration_id, after=cursor, page_size=page_size),
                idempotent=True,
            )
            moved, cursor = page.cursor != cursor, page.cursor
            if page.changes or moved:
                yield page
            if page.has_more:
                continue
            if not follow:
                return
            await asyncio.sleep(poll_interval.total_seconds())
