"""TestConnection, Sync and ListSyncRuns (records are read through feed_rpcs)."""

from __future__ import annotations

from integrations.v1 import service_pb2 as api

from service.api import convert
from service.api.base import Context, RpcBase
from service.domain import validation

#: With `wait`, answer this long before the caller's deadline rather than miss it.
DEADLINE_MARGIN = 0.25


class SyncRpcs(RpcBase):
    """The RPCs that talk to providers, and the history of their syncs."""

    async def TestConnection(
        self, request: api.TestConnectionRequest, context: Context
    ) -> api.TestConnectionResponse:
        tenant = self.tenant(context)
        integration, outcome = await self.app.tester.test(
            tenant, validation.integration_id(request.id)
        )
        return convert.test_out(outcome, self.out(integration))

    async def Sync(self, request: api.SyncRequest, context: Context) -> api.SyncResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        started = await self.app.syncs.start(tenant, integration_id)
        run, integration = started.run, started.integration
        if request.wait:
            remaining = context.time_remaining()
            budget = None if remaining is None else max(0.0, remaining - DEADLINE_MARGIN)
            run = await self.app.syncs.wait(run, timeout=budget)
            integration = await self.app.lifecycle.get(tenant, integration_id)
        return api.SyncResponse(run=convert.sync_run_out(run), integration=self.out(integration))

    async def ListSyncRuns(
        self, request: api.ListSyncRunsRequest, context: Context
    ) -> api.ListSyncRunsResponse:
        tenant = self.tenant(context)
        integration_id = validation.integration_id(request.id)
        size, violations = validation.page_size(request.page_size, default=50)
        validation.raise_if(violations)
        filters = {"id": request.id}
        before = self.page_tokens.decode_one(request.page_token, tenant, "sync_runs", filters, int)
        found = await self.app.syncs.runs(tenant, integration_id, before_seq=before, limit=size + 1)
        runs, token = self.page_tokens.page(
            found, size, tenant, "sync_runs", filters, lambda r: [r.seq]
        )
        return api.ListSyncRunsResponse(
            runs=[convert.sync_run_out(r) for r in runs], next_page_token=token
        )
