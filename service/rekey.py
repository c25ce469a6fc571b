"""`python -m service.rekey`: re-seal every sealed value the database holds with the newest
key: integrations' credentials, webhook secrets, push channels' tokens (and the credentials a
channel keeps for its stop), and the PKCE verifiers of sign-ins in flight.

Rotate by putting a new key first in INTEGRATIONS_ENCRYPTION_KEYS (keep the old ones after
it), restarting the replicas, then running this once; afterwards the old keys can be dropped.
It takes the same settings as the service, is safe to run while the service serves (each row
is compare-and-set), and safe to run again.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service import config, logs
from service.storage.database import Database, EmbeddedPostgres, Tx
from service.storage.sealed_rows import RekeyBatch

BATCH = 500

#: One table's re-key step: (keyset position after which to start, batch size) -> what it did.
Batch = Callable[[Any, int], Awaitable[RekeyBatch]]


@dataclass(frozen=True)
class RekeyReport:
    """What a re-key run did."""

    examined: int
    resealed: int
    #: Rows a concurrent change re-sealed first (already current).
    skipped: int


#: Every table with sealed values: its rows' batch, and where its keyset starts.
TABLES: tuple[tuple[Callable[[Tx], Batch], tuple[str, Any]], ...] = (
    (lambda tx: tx.credentials.rekey_batch, ("", UUID(int=0))),
    (lambda tx: tx.webhooks.rekey_batch, ("", UUID(int=0))),
    (lambda tx: tx.channels.rekey_batch, ("", "")),
    (lambda tx: tx.sign_ins.rekey_batch, ("", b"")),
)


async def rekey(db: Database) -> RekeyReport:
    """Re-seal every sealed value not sealed with the primary key of `db`'s key ring."""
    examined = resealed = skipped = 0
    for rows_of, start in TABLES:
        after: tuple[str, Any] | None = start
        while after is not None:
            async with db.connection() as tx:
                batch = await rows_of(tx)(after, BATCH)
            examined += batch.examined
            resealed += batch.resealed
            skipped += batch.skipped
            after = batch.last
    return RekeyReport(examined, resealed, skipped)


def main(argv: Sequence[str] | None = None) -> None:
    settings = config.load(argv)
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> RekeyReport:
        embedded = None
        dsn = settings.database_url
        if not dsn:
            embedded = EmbeddedPostgres(settings.data_dir)
            dsn = await embedded.start()
        db = await Database.open(dsn, keys=settings.key_ring(), pool_size=2)
        try:
            return await rekey(db)
        finally:
            await db.close()
            if embedded is not None:
                await embedded.stop()

    report = asyncio.run(run())
    print(
        f"examined {report.examined}, re-sealed {report.resealed}, "
        f"changed concurrently {report.skipped}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
