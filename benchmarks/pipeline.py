"""The baseline of the sync benchmark: a hand-written pipeline from the same provider into the
same table, as fast as we know how to write one with the same libraries.

aiohttp fetches Google's events.list a page of 1,000 at a time; each page is one transaction:
a binary COPY into a temporary staging table, one `INSERT … SELECT … ON CONFLICT DO UPDATE`
into `records`, the deletions, and the cursor (the page or sync token). No classification,
no leases, no run bookkeeping, no breaker: what is left is the floor a sync cannot go below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import aiohttp
import asyncpg

PAGE = 1000

_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS bench_staging (record_id text, data jsonb) "
    "ON COMMIT DELETE ROWS"
)
_UPSERT = (
    "INSERT INTO records (tenant_id, integration_id, record_id, data, updated_at) "
    "SELECT $1, $2, record_id, data, $3 FROM bench_staging "
    "ON CONFLICT (tenant_id, integration_id, record_id) "
    "DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
)
_DELETE = (
    "DELETE FROM records WHERE tenant_id = $1 AND integration_id = $2 "
    "AND record_id = ANY($3::text[])"
)
_CURSOR = "UPDATE integrations SET cursor = $3::jsonb WHERE tenant_id = $1 AND id = $2"


@dataclass(frozen=True)
class Synced:
    """What one pipeline sync did."""

    records: int
    pages: int
    sync_token: str


class Pipeline:
    """Syncs one calendar into one integration's records."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        conn: asyncpg.Connection,
        events_url: str,
        token: str,
        tenant: str,
        integration: UUID,
    ) -> None:
        self.session = session
        self.conn = conn
        self.events_url = events_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.tenant = tenant
        self.integration = integration

    async def sync(self, sync_token: str | None = None) -> Synced:
        """A full listing (no token) or the changes since `sync_token`."""
        await self.conn.execute(_STAGING)
        records = pages = 0
        params = {"maxResults": str(PAGE)}
        if sync_token:
            params["syncToken"] = sync_token
        while True:
            async with self.session.get(
                self.events_url, params=params, headers=self.headers
            ) as response:
                response.raise_for_status()
                page = json.loads(await response.read())
            records += await self._commit(page)
            pages += 1
            if "nextPageToken" in page:
                params = {"maxResults": str(PAGE), "pageToken": page["nextPageToken"]}
            else:
                return Synced(records, pages, page["nextSyncToken"])

    async def _commit(self, page: dict[str, object]) -> int:
        items = page.get("items")
        assert isinstance(items, list)
        upserts = [(i["id"], json.dumps(i)) for i in items if i.get("status") != "cancelled"]
        deletions = [i["id"] for i in items if i.get("status") == "cancelled"]
        cursor = json.dumps(
            {"page_token": page.get("nextPageToken"), "sync_token": page.get("nextSyncToken")}
        )
        async with self.conn.transaction():
            await self.conn.copy_records_to_table(
                "bench_staging", records=upserts, columns=("record_id", "data")
            )
            await self.conn.execute(_UPSERT, self.tenant, self.integration, datetime.now(UTC))
            if deletions:
                await self.conn.execute(_DELETE, self.tenant, self.integration, deletions)
            await self.conn.execute(_CURSOR, self.tenant, self.integration, cursor)
        return len(items)
