"""The client's calls on the tenant's webhook endpoints: create, list, update, delete, rotate
the signing secret, and each endpoint's delivery log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from integrations.calls import Calls, duration
from integrations.v1 import webhooks_pb2 as wh


class WebhookCalls(Calls):
    """The tenant's webhook endpoints and their deliveries."""

    async def create_webhook(
        self,
        url: str,
        *,
        event_types: Sequence[wh.WebhookEventType.ValueType] = (),
        description: str = "",
    ) -> wh.CreateWebhookResponse:
        """Create a webhook endpoint; the response's `secret` is shown only this once. Not
        retried (a retry could create a second endpoint)."""
        request = wh.CreateWebhookRequest(
            url=url,
            description=description,
            filter=wh.WebhookEventFilter(event_types=list(event_types)),
        )
        return await self._call(self.stub.CreateWebhook, request, idempotent=False)

    async def webhooks(self, page_size: int = 100) -> AsyncIterator[wh.Webhook]:
        """The tenant's webhook endpoints, newest first."""
        async for item in self._pages(
            self.stub.ListWebhooks,
            lambda token: wh.ListWebhooksRequest(page_size=page_size, page_token=token),
            "webhooks",
        ):
            yield item

    async def update_webhook(
        self,
        webhook_id: str,
        *,
        etag: str = "",
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[wh.WebhookEventType.ValueType] | None = None,
        enabled: bool | None = None,
    ) -> wh.Webhook:
        """Change a webhook; `enabled=True` re-enables one the service disabled."""
        request = wh.UpdateWebhookRequest(id=webhook_id, etag=etag)
        if url is not None:
            request.url = url
        if description is not None:
            request.description = description
        if event_types is not None:
            request.filter.CopyFrom(wh.WebhookEventFilter(event_types=list(event_types)))
        if enabled is not None:
            request.enabled = enabled
        response = await self._call(self.stub.UpdateWebhook, request, idempotent=True)
        return response.webhook

    async def delete_webhook(self, webhook_id: str, *, etag: str = "") -> None:
        await self._call(
            self.stub.DeleteWebhook,
            wh.DeleteWebhookRequest(id=webhook_id, etag=etag),
            idempotent=bool(etag),
        )

    async def rotate_webhook_secret(
        self, webhook_id: str, *, etag: str = "", overlap: timedelta | None = None
    ) -> wh.RotateWebhookSecretResponse:
        """A new secret (shown only this once); the old one keeps signing for `overlap`."""
        return await self._call(
            self.stub.RotateWebhookSecret,
            wh.RotateWebhookSecretRequest(id=webhook_id, etag=etag, overlap=duration(overlap)),
            idempotent=False,
        )

    async def webhook_deliveries(
        self, webhook_id: str, page_size: int = 100
    ) -> AsyncIterator[wh.WebhookDelivery]:
        """A webhook's delivery log, newest first."""
        async for item in self._pages(
            self.stub.ListWebhookDeliveries,
            lambda token: wh.ListWebhookDeliveriesRequest(
                id=webhook_id, page_size=page_size, page_token=token
            ),
            "deliveries",
        ):
            yield item
