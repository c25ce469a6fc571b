"""OAuth2 sign-ins in flight, in PostgreSQL, so whichever replica the browser returns to can
complete one. Only the SHA-256 of a sign-in's one-time state is stored, and its PKCE verifier
is sealed here (bound to this row), so a copy of the table cannot complete anyone's sign-in.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from service.domain.credentials import SignIn
from service.storage.credentials import RekeyBatch
from service.storage.queries import Q
from service.storage.sealing import KeyRing, row_binding


class SignInRows:
    """The `oauth_sign_ins` table in one transaction; `keys` seal and open verifiers."""

    __slots__ = ("_conn", "_keys")

    def __init__(self, conn: asyncpg.Connection, keys: KeyRing | None) -> None:
        self._conn = conn
        self._keys = keys

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise RuntimeError("this database was opened without a key ring")
        return self._keys

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
        """Re-seal, with the key ring's primary key, the verifiers of up to `limit` sign-ins in
        flight after the keyset position `after` (each row compare-and-set)."""
        rows = await self._conn.fetch(Q["sign_ins_batch"], after[0], after[1], limit)
        resealed = skipped = 0
        for row in rows:
            sealed = bytes(row["verifier_sealed"])
            digest = bytes(row["state_digest"])
            binding = _binding(row["tenant_id"], row["integration_id"], digest)
            fresh = self.keys.resealed(sealed, binding)
            if fresh is None:
                continue
            status = await self._conn.execute(
                Q["sign_in_reseal"], row["tenant_id"], digest, sealed, fresh
            )
            if status.endswith(" 1"):
                resealed += 1
            else:
                skipped += 1
        last = (rows[-1]["tenant_id"], bytes(rows[-1]["state_digest"])) if rows else None
        return RekeyBatch(len(rows), resealed, skipped, last)


def _binding(tenant_id: str, integration_id: UUID, digest: bytes) -> bytes:
    # Not the credentials' binding: a sealed verifier must not open as credentials, nor as
    # another sign-in's verifier.
    return row_binding(tenant_id, integration_id) + b"/oauth-sign-in/" + digest.hex().encode()
