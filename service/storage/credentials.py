"""Integrations' credentials in PostgreSQL, sealed on the way in and opened on the way out.

This is the one place credentials are sealed and opened (`sealing.KeyRing`, AES-256-GCM with
the row's identity bound as associated data): above storage, credentials only exist as
`Credentials` values, and nothing else ever sees a key or a sealed byte. A `StoredCredentials`
remembers which sealed value it was opened from, so a writer can compare-and-set over exactly
what it read (a token refresh, a re-key) without a Reauthorize that committed meanwhile being
overwritten blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from service.domain.credentials import Credentials
from service.storage.errors import LockTimeout
from service.storage.queries import Q
from service.storage.sealed_rows import RekeyBatch, SealedColumn, SealedRows
from service.storage.sealing import row_binding


@dataclass(frozen=True)
class StoredCredentials:
    """Credentials as read, with the sealed value they were opened from (their version)."""

    credentials: Credentials
    version: bytes = field(repr=False)
    #: When they were stored (a Reauthorize or Configure), which names them.
    set_at: datetime | None = None
    #: The digest of the provider account they belong to, once a test found it out.
    account: str | None = None


_SEALED = SealedColumn(
    Q["credentials_batch"],
    Q["credentials_swap"],
    "sealed",
    "integration_id",
    lambda row: row_binding(row["tenant_id"], row["integration_id"]),
)


class CredentialRows(SealedRows):
    """The `credentials` table in one transaction; `keys` seal and open."""

    __slots__ = ()

    async def put(
        self, tenant_id: str, integration_id: UUID, credentials: Credentials, now: datetime
    ) -> None:
        """Store (replace) the integration's credentials, sealed."""
        sealed = self.keys.seal(credentials.to_bytes(), row_binding(tenant_id, integration_id))
        await self._conn.execute(
            Q["credentials_put"], tenant_id, integration_id, credentials.kind, sealed, now
        )

    async def get(self, tenant_id: str, integration_id: UUID) -> StoredCredentials | None:
        """The integration's credentials, opened; None when it has none."""
        row = await self._conn.fetchrow(Q["credentials_get"], tenant_id, integration_id)
        if row is None:
            return None
        return self.opened(tenant_id, integration_id, row["sealed"], row["set_at"], row["account"])

    def opened(
        self,
        tenant_id: str,
        integration_id: UUID,
        sealed: bytes,
        set_at: datetime | None,
        account: str | None,
    ) -> StoredCredentials:
        """Credentials as read by another statement of this transaction (sealed), opened."""
        version = bytes(sealed)
        opened = self.keys.open(version, row_binding(tenant_id, integration_id))
        return StoredCredentials(Credentials.from_bytes(opened), version, set_at, account)

    async def set_account(
        self, tenant_id: str, integration_id: UUID, set_at: datetime, account: str
    ) -> None:
        """Record whose account the credentials stored at `set_at` belong to (credentials
        stored since are left alone)."""
        await self._conn.execute(
            Q["credentials_account_set"], tenant_id, integration_id, set_at, account
        )

    async def swap(
        self,
        tenant_id: str,
        integration_id: UUID,
        expected: StoredCredentials,
        replacement: Credentials,
    ) -> bool:
        """Replace the credentials if they are still exactly `expected`; False when they
        changed since they were read."""
        sealed = self.keys.seal(replacement.to_bytes(), row_binding(tenant_id, integration_id))
        status = await self._conn.execute(
            Q["credentials_swap"], tenant_id, integration_id, expected.version, sealed
        )
        return bool(status.endswith(" 1"))

    async def lock_for_refresh(self, tenant_id: str, integration_id: UUID, wait: timedelta) -> None:
        """Take the integration's refresh lock until the transaction ends, waiting at most
        `wait` (then LockTimeout)."""
        await self._conn.execute(
            "SELECT set_config('lock_timeout', $1, true)",
            f"{int(wait.total_seconds() * 1000)}ms",
        )
        try:
            await self._conn.execute(Q["credentials_refresh_lock"], tenant_id, integration_id)
        except asyncpg.LockNotAvailableError as exc:
            # The transaction is aborted now: the caller can only leave it.
            raise LockTimeout(str(exc)) from exc

    async def rekey_batch(self, after: tuple[str, UUID], limit: int) -> RekeyBatch:
        """Re-seal up to `limit` credentials after `after` with the newest key."""
        return await self._reseal(_SEALED, after, limit)
