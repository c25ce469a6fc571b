"""Create, Get, List, Configure, Pause, Resume, Delete and ListEvents."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from integrations.v1 import service_pb2 as api

from service.api import convert
from service.api.base import Context, RpcBase
from service.connectors.base import Connector
from service.domain import validation
from service.engine.lifecycle import ConfigureSpec, CreateSpec


class LifecycleRpcs(RpcBase):
    """The RPCs that create, read and change integrations by hand."""

    async def Create(self, request: api.CreateRequest, context: Context) -> api.CreateResponse:
        tenant = self.tenant(context)
        connector = self.app.connectors.get(request.connector_type)
        config = convert.config_in(request.connector_type, request.config) if connector else None
        if connector is not None and config is not None:
            self._check_oauth_overrides(connector, config)
        spec = CreateSpec(
            display_name=request.display_name,
            connector_type=request.connector_type,
            request_id=request.request_id,
            config=config,
            credentials=convert.credentials_in(request.credentials),
            sync_interval=convert.duration_in(request, "sync_interval"),
            breaker_threshold=_optional(request, "breaker_threshold"),
        )
        integration = await self.app.lifecycle.create(tenant, spec)
        integration, _ = await self.app.tester.verify_if_testing(integration)
        return api.CreateResponse(integration=self.out(integration))

    def _check_oauth_overrides(self, connector: Connector, config: dict[str, Any]) -> None:
        """Refuse token / consent URL overrides this deployment would never use. Checked once
        the URLs are well-formed (the lifecycle reports malformed ones, with every other
        field), so a caller is not told about trust before syntax."""
        if connector.check_config(config).violations:
            return
        validation.raise_if(self.app.reauthorization.setup.override_violations(connector, config))

    async def Get(self, request: api.GetRequest, context: Context) -> api.GetResponse:
        tenant = self.tenant(context)
        integration = await self.app.lifecycle.get(tenant, validation.integration_id(request.id))
        return api.GetResponse(integration=self.out(integration))

    async def List(self, request: api.ListRequest, context: Context) -> api.ListResponse:
        tenant = self.tenant(context)
        size, violations = validation.page_size(request.page_size, default=50)
        statuses = []
        for i, number in enumerate(request.statuses):
            status = convert.STATUS.from_pb.get(number)
            if status is None:
                violations.append(
                    validation.FieldViolation(f"statuses[{i}]", "is not a status", "INVALID_ENUM")
                )
            else:
                statuses.append(status)
        validation.raise_if(violations)
        filters = {
            "statuses": sorted(s.value for s in statuses),
            "connector_type": request.connector_type,
        }
        after = self.page_tokens.decode_keyset(request.page_token, tenant, "integrations", filters)
        found = await self.app.lifecycle.list_page(
            tenant,
            statuses=statuses,
            connector_type=request.connector_type,
            after=after,
            limit=size + 1,
        )
        page, token = self.page_tokens.page(
            found,
            size,
            tenant,
            "integrations",
            filters,
            lambda i: [i.created_at.isoformat(), str(i.id)],
        )
        return api.ListResponse(integrations=[self.out(i) for i in page], next_page_token=token)

    async def Configure(
        self, request: api.ConfigureRequest, context: Context
    ) -> api.ConfigureResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        current = await self.app.lifecycle.get(tenant, integration_id)
        config = convert.config_in(current.connector_type, request.config)
        connector = self.app.connectors.get(current.connector_type)
        if connector is not None and config is not None:
            self._check_oauth_overrides(connector, config)
        spec = ConfigureSpec(
            display_name=request.display_name if request.HasField("display_name") else None,
            config=config,
            credentials=convert.credentials_in(request.credentials),
            sync_interval=convert.duration_in(request, "sync_interval"),
            breaker_threshold=_optional(request, "breaker_threshold"),
        )
        integration = await self.app.lifecycle.configure(tenant, integration_id, request.etag, spec)
        integration, outcome = await self.app.tester.verify_if_testing(integration)
        test = convert.test_out(outcome, self.out(integration)) if outcome else None
        return api.ConfigureResponse(integration=self.out(integration), test=test)

    async def Pause(self, request: api.PauseRequest, context: Context) -> api.PauseResponse:
        tenant = self.tenant(context)
        reason = request.reason.strip()
        validation.raise_if(validation.display_name(reason, "reason") if reason else [])
        integration = await self.app.lifecycle.pause(
            tenant, validation.integration_id(request.id), request.etag, reason
        )
        return api.PauseResponse(integration=self.out(integration))

    async def Resume(self, request: api.ResumeRequest, context: Context) -> api.ResumeResponse:
        tenant = self.tenant(context)
        integration = await self.app.lifecycle.resume(
            tenant, validation.integration_id(request.id), request.etag
        )
        return api.ResumeResponse(integration=self.out(integration))

    async def Delete(self, request: api.DeleteRequest, context: Context) -> api.DeleteResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        revision, records = await self.app.lifecycle.delete(tenant, integration_id, request.etag)
        return api.DeleteResponse(
            id=str(integration_id), revision=revision, records_deleted=records
        )

    async def ListEvents(
        self, request: api.ListEventsRequest, context: Context
    ) -> api.ListEventsResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        size, violations = validation.page_size(request.page_size, default=50)
        validation.raise_if(violations)
        filters = {"id": request.id}
        before = self.page_tokens.decode_one(request.page_token, tenant, "events", filters, int)
        found = await self.app.lifecycle.events(
            tenant, integration_id, before_revision=before, limit=size + 1
        )
        events, token = self.page_tokens.page(
            found, size, tenant, "events", filters, lambda e: [e.revision]
        )
        return api.ListEventsResponse(
            events=[convert.event_out(e) for e in events], next_page_token=token
        )


def _optional(request: Message, field: str) -> int | None:
    """An `optional` scalar field of a request; None when the caller did not set it."""
    return int(getattr(request, field)) if request.HasField(field) else None
