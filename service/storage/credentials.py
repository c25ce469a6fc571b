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
from typing import Any
from uuid import UUID

import asyncpg

from service.domain.credentials import Credentials
from service.storage.errors import LockTimeout
from service.storage.queries import Q
from service.storage.sealing import KeyRing, row_binding


@dataclass(frozen=True)
class StoredCredentials:
    """Credentials as read, with the sealed value they were opened from (their version)."""

    credentials: Credentials
    version: bytes = field(repr=False)
    #: When they were stored (a Reauthorize or Configure), which names them.
    set_at: datetime | None = None
    #: The digest of the provider account they belong to, once a test found it out.
    account: str | None = None


@dataclass(frozen=True)
class RekeyBatch:
    """What one batch of a re-key did, and where the next batch starts."""

    examined: int
    resealed: int
    #: Rows a concurrent change re-sealed first (already current).
    skipped: int
    #: The last row examined (the table's key); None when there was nothing left.
    last: tuple[str, Any] | None


class CredentialRows:
    """The `credentials` table in one transaction; `keys` seal and open."""

    __slots__ = ("_conn", "_keys")

    def __init__(self, conn: asyncpg.Connection, keys: KeyRing | None) -> None:
        self._conn = conn
        self._keys = keys

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise RuntimeError("this database was opened without a key ring")
        return self._keys

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
        sealed = bytes(row["sealed"])
        opened = self.keys.open(sealed, row_binding(tenant_id, integration_id))
        return StoredCredentials(
            Credentials.from_bytes(opened), sealed, row["set_at"], row["account"]
        )

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
        """Re-seal, with the key ring's primary key, up to `limit` credentials after the
        keyset position `after` (each row compare-and-set, so concurrent changes win)."""
        rows = await self._conn.fetch(Q["credentials_batch"], after[0], after[1], limit)
        resealed = skipped = 0
        keys = self.keys
        for row in rows:
            sealed = bytes(row["sealed"])
            if keys.key_id_of(sealed) == keys.primary_id:
                continue
            binding = row_binding(row["tenant_id"], row["integration_id"])
            fresh = keys.seal(keys.open(sealed, binding), binding)
            status = await self._conn.execute(
                Q["credentials_swap"], row["tenant_id"], row["integration_id"], sealed, fresh
            )
            if status.endswith(" 1"):
                resealed += 1
            else:
                skipped += 1
        last = (rows[-1]["tenant_id"], rows[-1]["integration_id"]) if rows else None
        return RekeyBatch(len(rows), resealed, skipped, last)
