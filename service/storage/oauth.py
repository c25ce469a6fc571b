"""OAuth2 sign-ins in flight, and the credential row operations of a token refresh.

Like the other repositories, every function takes the caller's connection, so the caller
decides what commits together (and, for a refresh, how long the lock is held).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from service.storage.queries import Q


@dataclass(frozen=True)
class StoredSignIn:
    """A sign-in as stored: the verifier still sealed."""

    tenant_id: str
    integration_id: UUID
    provider: str
    verifier_sealed: bytes = field(repr=False)
    redirect_uri: str
    return_url: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime


async def insert_sign_in(
    conn: asyncpg.Connection, state_digest: bytes, sign_in: StoredSignIn
) -> None:
    """Remember a new sign-in (and forget the tenant's expired ones)."""
    await conn.execute(Q["sign_ins_purge_expired"], sign_in.tenant_id, sign_in.created_at)
    await conn.execute(
        Q["sign_in_insert"],
        sign_in.tenant_id,
        state_digest,
        sign_in.integration_id,
        sign_in.provider,
        sign_in.verifier_sealed,
        sign_in.redirect_uri,
        sign_in.return_url,
        list(sign_in.scopes),
        sign_in.created_at,
        sign_in.expires_at,
    )


async def take_sign_in(
    conn: asyncpg.Connection, tenant_id: str, state_digest: bytes
) -> StoredSignIn | None:
    """The sign-in of this state, removed so it cannot be used again; None when there is
    none (never made, already used, or its integration deleted). Expired ones are returned:
    the caller says so."""
    row = await conn.fetchrow(Q["sign_in_take"], tenant_id, state_digest)
    if row is None:
        return None
    return StoredSignIn(
        tenant_id=row["tenant_id"],
        integration_id=row["integration_id"],
        provider=row["provider"],
        verifier_sealed=bytes(row["verifier_sealed"]),
        redirect_uri=row["redirect_uri"],
        return_url=row["return_url"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


async def lock_for_refresh(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID, wait: timedelta
) -> None:
    """Take the integration's refresh lock until the transaction ends, waiting at most `wait`
    (then asyncpg raises LockNotAvailableError)."""
    await conn.execute(
        "SELECT set_config('lock_timeout', $1, true)", f"{int(wait.total_seconds() * 1000)}ms"
    )
    await conn.execute(Q["credentials_refresh_lock"], tenant_id, integration_id)


async def swap_credentials(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID, expected: bytes, sealed: bytes
) -> bool:
    """Replace the sealed credentials if they are still `expected`; False when they changed."""
    status = await conn.execute(Q["credentials_swap"], tenant_id, integration_id, expected, sealed)
    return bool(status.endswith(" 1"))
