"""`python -m service.rekey`: re-seal every stored credential with the newest key.

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
from service.storage.queries import Q
from service.storage.sealing import KeyRing, row_binding

BATCH = 500


@dataclass(frozen=True)
class RekeyReport:
    """What a re-key run did."""

    examined: int
    resealed: int
    #: Rows a concurrent change re-sealed first (already current).
    skipped: int


async def rekey(db: Database, keys: KeyRing) -> RekeyReport:
    """Re-seal every credential not sealed with the primary key."""
    examined = resealed = skipped = 0
    after: tuple[str, UUID] = ("", UUID(int=0))
    while True:
        rows = await db.fetch(Q["credentials_batch"], after[0], after[1], BATCH)
        if not rows:
            return RekeyReport(examined, resealed, skipped)
        for row in rows:
            examined += 1
            sealed = bytes(row["sealed"])
            if keys.key_id_of(sealed) == keys.primary_id:
                continue
            binding = row_binding(row["tenant_id"], row["integration_id"])
            fresh = keys.seal(keys.open(sealed, binding), binding)
            async with db.connection() as conn:
                status = await conn.execute(
                    Q["credentials_reseal"], row["tenant_id"], row["integration_id"], sealed, fresh
                )
            if status.endswith(" 1"):
                resealed += 1
            else:
                skipped += 1
        after = (rows[-1]["tenant_id"], rows[-1]["integration_id"])


def main(argv: Sequence[str] | None = None) -> None:
    settings = config.load(argv)
    logs.configure(settings.log_format, settings.log_level)

    async def run() -> RekeyReport:
        embedded = None
        dsn = settings.database_url
        if not dsn:
            embedded = EmbeddedPostgres(settings.data_dir)
            dsn = await embedded.start()
        db = await Database.open(dsn, pool_size=2)
        try:
            keys = (
                KeyRing.parse(settings.encryption_keys)
                if settings.encryption_keys
                else KeyRing.local(settings.data_dir / "encryption.keys")
            )
            return await rekey(db, keys)
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
