"""Push channels in PostgreSQL, and the integrations' push bookkeeping that is not a change.

A channel's token (the secret Google echoes in every notification) is sealed here like
credentials, bound to the channel's row, and opened only to be compared. A channel
whose integration let go of the credentials it was opened with (deleted, or reauthorized) keeps
a sealed copy of them until it is stopped (`migrations/0008_push.sql`,
`queries/credentials.sql`); they are opened here too, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from service.domain.credentials import Credentials
from service.domain.push import Channel
from service.storage.integrations import Row
from service.storage.queries import Q
from service.storage.sealed_rows import RekeyBatch, SealedRows
from service.storage.sealing import SealError, row_binding


def channel_from_row(row: Row) -> Channel:
    """The domain value of a `push_channels` row (without its token)."""
    return Channel(
        tenant_id=row["tenant_id"],
        channel_id=row["channel_id"],
        integration_id=row["integration_id"],
        connector_type=row["connector_type"],
        resource_id=row["resource_id"],
        config=row["config"],
        credentials_set_at=row["credentials_set_at"],
        opened_at=row["opened_at"],
        expires_at=row["expires_at"],
        stop_at=row["stop_at"],
    )


@dataclass(frozen=True)
class FoundChannel:
    """A channel a notification names, with its token opened for the comparison."""

    channel: Channel
    token: str = field(repr=False)


@dataclass(frozen=True)
class StopDue:
    """A retired channel claimed for its stop. `orphan_credentials`: the credentials it was
    opened with, kept when the integration let go of them (deleted, or replaced by a
    Reauthorize); None while the integration still has them, when it had none, or when they no
    longer open."""

    channel: Channel
    orphan_credentials: Credentials | None = field(repr=False)
    #: Stops tried so far, this one included.
    attempts: int = 1


def _token_binding(tenant_id: str, channel_id: str) -> bytes:
    return f"push/{tenant_id}/{channel_id}".encode()


class ChannelRows(SealedRows):
    """The `push_channels` table and the integrations' push columns, in one transaction."""

    __slots__ = ()

    async def insert(self, channel: Channel, token: str) -> None:
        """Remember a channel the provider opened, its token sealed (retired already when its
        `stop_at` is set: it was no longer wanted by the time it opened)."""
        sealed = self.keys.seal(
            token.encode(), _token_binding(channel.tenant_id, channel.channel_id)
        )
        await self._conn.execute(
            Q["push_channel_insert"],
            channel.tenant_id,
            channel.channel_id,
            channel.integration_id,
            channel.connector_type,
            sealed,
            channel.resource_id,
            channel.config,
            channel.credentials_set_at,
            channel.opened_at,
            channel.expires_at,
            channel.stop_at,
        )

    async def of(self, tenant_id: str, integration_id: UUID) -> list[Channel]:
        """The integration's channels (retired ones included), the newest first."""
        rows = await self._conn.fetch(Q["push_channels_of"], tenant_id, integration_id)
        return [channel_from_row(r) for r in rows]

    async def find(self, tenant_id: str, channel_id: str) -> FoundChannel | None:
        """The channel a notification names, or None when we have no such channel (or its
        token no longer opens: a key dropped from the ring)."""
        row = await self._conn.fetchrow(Q["push_channel_get"], tenant_id, channel_id)
        if row is None:
            return None
        try:
            token = self.keys.open(
                bytes(row["token_sealed"]), _token_binding(tenant_id, channel_id)
            ).decode()
        except SealError:
            return None
        return FoundChannel(channel_from_row(row), token)

    async def rekey_batch(self, after: tuple[str, str], limit: int) -> RekeyBatch:
        """Re-seal, with the key ring's primary key, the tokens and kept credentials of up to
        `limit` channels after the keyset position `after` (each row compare-and-set)."""
        rows = await self._conn.fetch(Q["push_channels_batch"], after[0], after[1], limit)
        resealed = skipped = 0
        keys = self.keys
        for row in rows:
            token = bytes(row["token_sealed"])
            kept = None if row["orphan_credentials"] is None else bytes(row["orphan_credentials"])
            fresh_token = keys.resealed(token, _token_binding(row["tenant_id"], row["channel_id"]))
            fresh_kept = kept and keys.resealed(
                kept, row_binding(row["tenant_id"], row["integration_id"])
            )
            if fresh_token is None and fresh_kept is None:
                continue
            status = await self._conn.execute(
                Q["push_channel_reseal"],
                row["tenant_id"],
                row["channel_id"],
                token,
                kept,
                fresh_token or token,
                fresh_kept or kept,
            )
            if status.endswith(" 1"):
                resealed += 1
            else:
                skipped += 1
        last = (rows[-1]["tenant_id"], rows[-1]["channel_id"]) if rows else None
        return RekeyBatch(len(rows), resealed, skipped, last)

    async def retire(self, tenant_id: str, channel_ids: Sequence[str], stop_at: datetime) -> None:
        """These channels must go: the reconciler stops them at `stop_at`."""
        if channel_ids:
            await self._conn.execute(
                Q["push_channels_retire"], tenant_id, list(channel_ids), stop_at
            )

    async def stops_due(self, now: datetime, limit: int, claim_until: datetime) -> list[StopDue]:
        """Claim up to `limit` retired channels whose stop is due (until `claim_until`)."""
        rows = await self._conn.fetch(Q["push_stops_due"], now, limit, claim_until)
        found = []
        for r in rows:
            credentials = None
            if r["orphan_credentials"] is not None:
                binding = row_binding(r["tenant_id"], r["integration_id"])
                try:
                    opened = self.keys.open(bytes(r["orphan_credentials"]), binding)
                    credentials = Credentials.from_bytes(opened)
                except SealError:
                    credentials = None  # sealed with a key since dropped: cannot authorise
            found.append(StopDue(channel_from_row(r), credentials, r["stop_attempts"]))
        return found

    async def stopped(self, tenant_id: str, channel_id: str) -> None:
        """The provider stopped the channel (or it is gone anyway): forget it."""
        await self._conn.execute(Q["push_channel_delete"], tenant_id, channel_id)

    async def stop_failed(self, tenant_id: str, channel_id: str, retry_at: datetime) -> None:
        await self._conn.execute(Q["push_stop_failed"], tenant_id, channel_id, retry_at)

    async def checks_due(
        self, now: datetime, types: Sequence[str], limit: int, claim_until: datetime
    ) -> list[tuple[str, UUID]]:
        """Claim up to `limit` integrations (of connector `types`) whose channel needs a look
        now, until `claim_until`; (tenant, integration) pairs."""
        rows = await self._conn.fetch(Q["push_checks_due"], now, list(types), limit, claim_until)
        return [(r["tenant_id"], r["id"]) for r in rows]

    async def set_check(self, tenant_id: str, integration_id: UUID, at: datetime | None) -> None:
        """When the reconciler looks next, without recording a change (nothing shown moved)."""
        await self._conn.execute(Q["push_check_set"], tenant_id, integration_id, at)

    async def notified(
        self,
        channel: Channel,
        *,
        now: datetime,
        due: datetime,
        message: int,
        lock_wait_ms: int,
    ) -> datetime | None:
        """A notification of `channel` asks for a sync: the integration is due by `due` (see
        the query). Waits at most `lock_wait_ms` for the integration's row (a page commit in
        progress), then LockTimeout. Returns when it is due; None when it does not sync on
        its own now (paused, braked, retrying a failure, gone)."""
        await self._conn.execute("SELECT set_config('lock_timeout', $1, true)", f"{lock_wait_ms}ms")
        value: datetime | None = await self._conn.fetchval(
            Q["push_notified"],
            channel.tenant_id,
            channel.integration_id,
            now,
            due,
            channel.channel_id,
            message,
        )
        return value
