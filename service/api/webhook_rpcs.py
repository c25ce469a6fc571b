"""CreateWebhook, GetWebhook, ListWebhooks, UpdateWebhook, DeleteWebhook, RotateWebhookSecret
and ListWebhookDeliveries."""

from __future__ import annotations

from uuid import UUID

from integrations.v1 import webhooks_pb2 as wh

from service.api import convert
from service.api.base import Context, RpcBase
from service.api.webhook_messages import delivery_out, event_types_in, webhook_out
from service.domain import validation
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.engine.webhooks import EndpointChange, EndpointSpec


class WebhookRpcs(RpcBase):
    """The RPCs that manage a tenant's webhook endpoints."""

    async def CreateWebhook(
        self, request: wh.CreateWebhookRequest, context: Context
    ) -> wh.CreateWebhookResponse:
        tenant = self.tenant(context)
        spec = EndpointSpec(
            url=request.url.strip(),
            description=request.description,
            event_types=event_types_in(request.filter.event_types, "filter.event_types"),
        )
        created = await self.app.webhooks.create(tenant, spec)
        return wh.CreateWebhookResponse(
            webhook=webhook_out(created.endpoint), secret=created.secret
        )

    async def GetWebhook(
        self, request: wh.GetWebhookRequest, context: Context
    ) -> wh.GetWebhookResponse:
        tenant = self.tenant(context)
        endpoint = await self.app.webhooks.get(tenant, webhook_id(request.id))
        return wh.GetWebhookResponse(webhook=webhook_out(endpoint))

    async def ListWebhooks(
        self, request: wh.ListWebhooksRequest, context: Context
    ) -> wh.ListWebhooksResponse:
        tenant = self.tenant(context)
        size, violations = validation.page_size(request.page_size, default=50)
        validation.raise_if(violations)
        after = self.page_tokens.decode_keyset(request.page_token, tenant, "webhooks", {})
        found = await self.app.webhooks.list_page(tenant, after=after, limit=size + 1)
        page, token = self.page_tokens.page(
            found, size, tenant, "webhooks", {}, lambda e: [e.created_at.isoformat(), str(e.id)]
        )
        return wh.ListWebhooksResponse(
            webhooks=[webhook_out(e) for e in page], next_page_token=token
        )

    async def UpdateWebhook(
        self, request: wh.UpdateWebhookRequest, context: Context
    ) -> wh.UpdateWebhookResponse:
        tenant = self.tenant(context)
        change = EndpointChange(
            url=request.url.strip() if request.HasField("url") else None,
            description=request.description if request.HasField("description") else None,
            event_types=event_types_in(request.filter.event_types, "filter.event_types")
            if request.HasField("filter")
            else None,
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        endpoint = await self.app.webhooks.update(
            tenant, webhook_id(request.id), request.etag, change
        )
        return wh.UpdateWebhookResponse(webhook=webhook_out(endpoint))

    async def DeleteWebhook(
        self, request: wh.DeleteWebhookRequest, context: Context
    ) -> wh.DeleteWebhookResponse:
        tenant = self.tenant(context)
        endpoint_id = webhook_id(request.id)
        await self.app.webhooks.delete(tenant, endpoint_id, request.etag)
        return wh.DeleteWebhookResponse(id=str(endpoint_id))

    async def RotateWebhookSecret(
        self, request: wh.RotateWebhookSecretRequest, context: Context
    ) -> wh.RotateWebhookSecretResponse:
        tenant = self.tenant(context)
        rotated = await self.app.webhooks.rotate_secret(
            tenant,
            webhook_id(request.id),
            request.etag,
            convert.duration_in(request, "overlap"),
        )
        return wh.RotateWebhookSecretResponse(
            webhook=webhook_out(rotated.endpoint), secret=rotated.secret
        )

    async def ListWebhookDeliveries(
        self, request: wh.ListWebhookDeliveriesRequest, context: Context
    ) -> wh.ListWebhookDeliveriesResponse:
        tenant = self.tenant(context)
        endpoint_id = webhook_id(request.id)
        size, violations = validation.page_size(request.page_size, default=50)
        validation.raise_if(violations)
        filters = {"id": str(endpoint_id)}
        after = self.page_tokens.decode_keyset(
            request.page_token, tenant, "webhook_deliveries", filters
        )
        found = await self.app.webhooks.deliveries(tenant, endpoint_id, after=after, limit=size + 1)
        page, token = self.page_tokens.page(
            found,
            size,
            tenant,
            "webhook_deliveries",
            filters,
            lambda d: [d.created_at.isoformat(), str(d.event_id)],
        )
        return wh.ListWebhookDeliveriesResponse(
            deliveries=[delivery_out(d) for d in page], next_page_token=token
        )


def webhook_id(value: str, field: str = "id") -> UUID:
    """Parse a webhook id, or raise InvalidArgument."""
    if not value:
        raise InvalidArgument([FieldViolation(field, "is required", "REQUIRED")])
    try:
        return UUID(value)
    except ValueError:
        raise InvalidArgument(
            [FieldViolation(field, "must be a webhook id (a UUID)", "MALFORMED_ID")]
        ) from None
