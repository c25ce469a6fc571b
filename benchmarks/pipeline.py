"""The baseline of the sync benchmark: a hand-written pipeline from the same provider into the
same table, as fast as we know how to write one with the same libraries.

aiohttp fetches Google's events.list a page of 1,000 at a time; each page is one transaction:
the integration's row lock (its change-feed counter), a binary COPY into a temporary staging
table, one `INSERT … SELECT … ON CONFLICT DO UPDATE` into `records` with the change numbers,
the deletions as tombstones, and the cursor (the page or sync token). No classification,
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
    "CREATE TEMPORARY TABLE IF NOT EXISTS bench_staging (record_id text, data jsonb, n bigint) "
    "ON COMMIT DELETE ROWS"
)
# The change feed numbers every written record after the integration's change_seq, as the
# service does: the pipeline takes the same row lock and writes the same columns.
_HOLD = "SELECT change_seq FROM integrations WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
_UPSERT = (
    "INSERT INTO records (tenant_id, integration_id, record_id, data, updated_at, seq) "
    "SELECT $1, $2, record_id, data, $3, $4 + n FROM bench_staging "
    "ON CONFLICT (tenant_id, integration_id, record_id) DO UPDATE SET data = excluded.data, "
    "updated_at = excluded.updated_at, seq = excluded.seq, deleted_at = NULL"
)
_DELETE = (
    "UPDATE records r SET data = NULL, deleted_at = $3, updated_at = $3, seq = $4 + d.n "
    "FROM unnest($5::text[]) WITH ORDINALITY AS d (record_id, n) "
    "WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = d.record_id"
)
_CURSOR = (
    "UPDATE integrations SET cursor = $3::jsonb, change_seq = change_seq + $4 "
    "WHERE tenant_id = $1 AND id = $2"
)


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
        upserts = [
            (i["id"], json.dumps(i), n)
            for n, i in enumerate((i for i in items if i.get("status") != "cancelled"), 1)
        ]
        deletions = [i["id"] for i in items if i.get("status") == "cancelled"]
        cursor = json.dumps(
            {"page_token": page.get("nextPageToken"), "sync_token": page.get("nextSyncToken")}
        )
        now = datetime.now(UTC)
        async with self.conn.transaction():
            base = await self.conn.fetchval(_HOLD, self.tenant, self.integration)
            await self.conn.copy_records_to_table(
                "bench_staging", records=upserts, columns=("record_id", "data", "n")
            )
            await self.conn.execute(_UPSERT, self.tenant, self.integration, now, base)
            if deletions:
                await self.conn.execute(
                    _DELETE, self.tenant, self.integration, now, base + len(upserts), deletions
                )
            await self.conn.execute(
                _CURSOR, self.tenant, self.integration, cursor, len(upserts) + len(deletions)
            )
        return len(items)
