"""Reading what the service stored, through its own storage port (for assertions)."""

from __future__ import annotations

from uuid import UUID

from service.app import App
from service.domain.credentials import Credentials


async def credentials_of(app: App, tenant: str, integration_id: UUID) -> Credentials | None:
    """The integration's stored credentials, opened with the app's key ring."""
    async with app.db.connection() as tx:
        stored = await tx.credentials.get(tenant, integration_id)
    return stored.credentials if stored else None
