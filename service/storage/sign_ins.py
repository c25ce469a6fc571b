"""OAuth2 sign-ins in flight, in PostgreSQL, so whichever replica the browser returns to can
complete one. Only the SHA-256 of a sign-in's one-time state is stored, and its PKCE verifier
is sealed here (bound to this row), so a copy of the table cannot complete anyone's sign-in.
"""

from __future__ import annotations

from uuid import UUID

from service.domain.credentials import SignIn
from service.storage.queries import Q
from service.storage.sealed_rows import RekeyBatch, SealedColumn, SealedRows
from service.storage.sealing import row_binding


class SignInRows(SealedRows):
    """The `oauth_sign_ins` table in one transaction; `keys` seal and open verifiers."""

    __slots__ = ()

    async def insert(self, state_digest: bytes, sign_in: SignIn) -> None:
        """Remember a new sign-in (and forget the tenant's expired ones)."""
        sealed = self.keys.seal(
            sign_in.verifier.encode(),
            _binding(sign_in.tenant_id, sign_in.integration_id, state_digest),
        )
        await self._conn.execute(Q["sign_ins_purge_expired"], sign_in.tenant_id, sign_in.created_at)
        await self._conn.execute(
            Q["sign_in_insert"],
            sign_in.tenant_id,
            state_digest,
            sign_in.integration_id,
            sign_in.provider,
            sealed,
            sign_in.redirect_uri,
            sign_in.return_url,
            list(sign_in.scopes),
            sign_in.created_at,
            sign_in.expires_at,
        )

    async def take(self, tenant_id: str, state_digest: bytes) -> SignIn | None:
        """The sign-in of this state, removed so it cannot be used again; None when there is
        none (never made, already used, or its integration deleted). Expired ones are
        returned: the caller says so."""
        row = await self._conn.fetchrow(Q["sign_in_take"], tenant_id, state_digest)
        if row is None:
            return None
        binding = _binding(tenant_id, row["integration_id"], state_digest)
        verifier = self.keys.open(bytes(row["verifier_sealed"]), binding).decode()
        return SignIn(
            tenant_id=row["tenant_id"],
            integration_id=row["integration_id"],
            provider=row["provider"],
            verifier=verifier,
            redirect_uri=row["redirect_uri"],
            return_url=row["return_url"],
            scopes=tuple(row["scopes"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    async def rekey_batch(self, after: tuple[str, bytes], limit: int) -> RekeyBatch:
        """Re-seal up to `limit` verifiers of sign-ins in flight after `after` with the newest
        key."""
        return await self._reseal(_SEALED, after, limit)


def _binding(tenant_id: str, integration_id: UUID, digest: bytes) -> bytes:
    # Not the credentials' binding: a sealed verifier must not open as credentials, nor as
    # another sign-in's verifier.
    return row_binding(tenant_id, integration_id) + b"/oauth-sign-in/" + digest.hex().encode()


_SEALED = SealedColumn(
    Q["sign_ins_batch"],
    Q["sign_in_reseal"],
    "verifier_sealed",
    "state_digest",
    lambda row: _binding(row["tenant_id"], row["integration_id"], bytes(row["state_digest"])),
)
