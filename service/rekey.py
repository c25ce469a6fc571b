"""`python -m service.rekey`: re-seal every stored credential and webhook secret with the
newest key.

Rotate by putting a new key first in INTEGRATIONS_ENCRYPTION_KEYS (keep the old ones after
it), restarting the replicas, then running this once; afterwards the old keys can be dropped.
It takes the same settings as the service, is safe to run while the service serves (each row
is compare-and-set), and safe to run again.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from service import config, logs
from service.storage.database import Database, EmbeddedPostgres

BATCH = 500


@dataclass(frozen=True)
class RekeyReport:
    """What a re-key run did."""

    examined: int
    resealed: int
    #: Rows a concurrent change re-sealed first (already current).
    skipped: int


async def rekey(db: Database) -> RekeyReport:
    """Re-seal every credential and webhook secret not sealed with the primary key of `db`'s
    key ring."""
    examined = resealed = skipped = 0
    for table in ("credentials", "webhooks"):
        after: tuple[str, UUID] | None = ("", UUID(int=0))
        while after is not None:
            async with db.connection() as tx:
                rows = tx.credentials if table == "credentials" else tx.webhooks
                batch = await rows.rekey_batch(after, BATCH)
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
