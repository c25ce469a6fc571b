"""What every table with a sealed column shares: the key ring, and re-sealing with its newest
key in batches (`service.rekey`).

The tables (credentials, webhook secrets, sign-in verifiers, push channel tokens) seal and open
their own values, each binding its row's identity as associated data (`sealing`); this is the
one place that holds the key ring for them and walks a table re-sealing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.storage.sealing import KeyRing


@dataclass(frozen=True)
class RekeyBatch:
    """What one batch of a re-key did, and where the next batch starts."""

    examined: int
    resealed: int
    #: Rows a concurrent change re-sealed first (already current).
    skipped: int
    #: The last row examined (the table's key); None when there was nothing left.
    last: tuple[str, Any] | None


@dataclass(frozen=True)
class SealedColumn:
    """How to re-seal one table's sealed column: the batch query (rows after a keyset position
    $1/$2, at most $3), the compare-and-set (tenant, row key, old sealed value, new one), the
    column and the row key's names, and the row's associated data."""

    batch: str
    swap: str
    column: str
    row_id: str
    binding: Callable[[asyncpg.Record], bytes]


class SealedRows:
    """A table with a sealed column, in one transaction."""

    __slots__ = ("_conn", "_keys")

    def __init__(self, conn: asyncpg.Connection, keys: KeyRing | None) -> None:
        self._conn = conn
        self._keys = keys

    @property
    def keys(self) -> KeyRing:
        """The key ring; a database opened without one (a tool that never seals) refuses."""
        if self._keys is None:
            raise RuntimeError("this database was opened without a key ring")
        return self._keys

    async def _reseal(self, column: SealedColumn, after: tuple[str, Any], limit: int) -> RekeyBatch:
        """Re-seal, with the key ring's primary key, up to `limit` rows after the keyset
        position `after`, each row compare-and-set (so a concurrent change wins)."""
        rows: Sequence[asyncpg.Record] = await self._conn.fetch(
            column.batch, after[0], after[1], limit
        )
        resealed = skipped = 0
        for row in rows:
            sealed = bytes(row[column.column])
            fresh = self.keys.resealed(sealed, column.binding(row))
            if fresh is None:
                continue
            status = await self._conn.execute(
                column.swap, row["tenant_id"], row[column.row_id], sealed, fresh
            )
            if status.endswith(" 1"):
                resealed += 1
            else:
                skipped += 1
        last = (rows[-1]["tenant_id"], rows[-1][column.row_id]) if rows else None
        return RekeyBatch(len(rows), resealed, skipped, last)
