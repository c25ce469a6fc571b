"""An async Python client for the integrations service.

It wraps the generated stub with what every caller otherwise rewrites: the API key on every
call, a request id on Create so retries are safe, retries of idempotent calls when a replica
is unavailable, iteration over every page, and errors decoded from google.rpc details into
one exception a caller can branch on (`error.reason`, `error.violations`).

TLS: pass `credentials=tls_credentials(ca_file=..., cert_file=..., key_file=...)` (the CA that
signed the server's certificate, and for mutual TLS this client's certificate and key).

The integration calls are here; `history` (events, sync runs, records, the change feed) and
`webhooks` add theirs, `calls` is what they all go through (API key, retries, pages),
`errors` holds `IntegrationsError` and `tls` `tls_credentials` (both importable from here).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import grpc

from integrations.calls import duration
from integrations.errors import IntegrationsError
from integrations.history import HistoryCalls
from integrations.tls import tls_credentials
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.watch import StatusWatch
from integrations.webhooks import WebhookCalls

__all__ = ["IntegrationsClient", "IntegrationsError", "tls_credentials"]


class IntegrationsClient(HistoryCalls, WebhookCalls):
    """Calls one integrations service. Use as `async with IntegrationsClient(target) as c:`."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        channel: grpc.aio.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retries: int = 3,
        retry_delay: timedelta = timedelta(milliseconds=200),
    ) -> None:
        """`credentials` (see `tls_credentials`) connect over TLS; without them the channel
        is plaintext, for a service on this machine."""
        self._own_channel = channel is None
        if channel is None:
            channel = (
                grpc.aio.secure_channel(target, credentials)
                if credentials is not None
                else grpc.aio.insecure_channel(target)
            )
        super().__init__(channel, api_key=api_key, retries=retries, retry_delay=retry_delay)

    async def __aenter__(self) -> IntegrationsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    # -- integrations ----------------------------------------------------------------------

    async def create(
        self,
        display_name: str,
        connector_type: str,
        *,
        config: pb.ConnectorConfig | None = None,
        credentials: pb.Credentials | None = None,
        sync_interval: timedelta | None = None,
        breaker_threshold: int | None = None,
        request_id: str | None = None,
    ) -> pb.Integration:
        """Create an integration. A request id is generated when none is given, so the
        retries this client makes never create two. `breaker_threshold` overrides the
        deployment's (1-100)."""
        request = api.CreateRequest(
            request_id=request_id or uuid.uuid4().hex,
            display_name=display_name,
            connector_type=connector_type,
            config=config,
            credentials=credentials,
            sync_interval=duration(sync_interval),
            breaker_threshold=breaker_threshold,
        )
        response = await self._call(self.stub.Create, request, idempotent=True)
        return response.integration

    async def get(self, integration_id: str) -> pb.Integration:
        response = await self._call(
            self.stub.Get, api.GetRequest(id=integration_id), idempotent=True
        )
        return response.integration

    async def list(
        self,
        *,
        statuses: Sequence[pb.Status.ValueType] = (),
        connector_type: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[pb.Integration]:
        """Every matching integration, newest first, fetching pages as needed."""
        async for item in self._pages(
            self.stub.List,
            lambda token: api.ListRequest(
                page_size=page_size,
                page_token=token,
                statuses=list(statuses),
                connector_type=connector_type,
            ),
            "integrations",
        ):
            yield item

    async def list_page(
        self,
        *,
        statuses: Sequence[pb.Status.ValueType] = (),
        connector_type: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[builtins.list[pb.Integration], str]:
        """One page of integrations, newest first, and the token of the next."""
        page = await self._call(
            self.stub.List,
            api.ListRequest(
                page_size=page_size,
                page_token=page_token,
                statuses=list(statuses),
                connector_type=connector_type,
            ),
            idempotent=True,
        )
        return list(page.integrations), page.next_page_token

    async def configure(
        self,
        integration_id: str,
        *,
        etag: str = "",
        display_name: str | None = None,
        config: pb.ConnectorConfig | None = None,
        credentials: pb.Credentials | None = None,
        sync_interval: timedelta | None = None,
        breaker_threshold: int | None = None,
    ) -> api.ConfigureResponse:
        """Change an integration; `breaker_threshold` 0 goes back to the deployment's."""
        request = api.ConfigureRequest(
            id=integration_id,
            etag=etag,
            config=config,
            credentials=credentials,
            sync_interval=duration(sync_interval),
            breaker_threshold=breaker_threshold,
        )
        if display_name is not None:
            request.display_name = display_name
        return await self._call(self.stub.Configure, request, idempotent=bool(etag), timeout=120)

    async def test_connection(self, integration_id: str) -> api.TestConnectionResponse:
        return await self._call(
            self.stub.TestConnection,
            api.TestConnectionRequest(id=integration_id),
            idempotent=True,
            timeout=120,
        )

    async def sync(
        self, integration_id: str, *, wait: bool = False, timeout: float | None = 600
    ) -> api.SyncResponse:
        """Start a sync (a second call while one runs returns the running one)."""
        return await self._call(
            self.stub.Sync,
            api.SyncRequest(id=integration_id, wait=wait),
            idempotent=True,
            timeout=timeout,
        )

    async def pause(
        self, integration_id: str, *, etag: str = "", reason: str = ""
    ) -> pb.Integration:
        response = await self._call(
            self.stub.Pause,
            api.PauseRequest(id=integration_id, etag=etag, reason=reason),
            idempotent=bool(etag),
        )
        return response.integration

    async def resume(self, integration_id: str, *, etag: str = "") -> pb.Integration:
        response = await self._call(
            self.stub.Resume, api.ResumeRequest(id=integration_id, etag=etag), idempotent=bool(etag)
        )
        return response.integration

    async def reauthorize(
        self,
        integration_id: str,
        *,
        etag: str = "",
        credentials: pb.Credentials | None = None,
        sign_in: api.OAuthSignIn | None = None,
    ) -> api.ReauthorizeResponse:
        request = api.ReauthorizeRequest(id=integration_id, etag=etag)
        if credentials is not None:
            request.credentials.CopyFrom(credentials)
        if sign_in is not None:
            request.sign_in.CopyFrom(sign_in)
        return await self._call(self.stub.Reauthorize, request, idempotent=False, timeout=120)

    async def delete(self, integration_id: str, *, etag: str = "") -> api.DeleteResponse:
        return await self._call(
            self.stub.Delete, api.DeleteRequest(id=integration_id, etag=etag), idempotent=bool(etag)
        )

    def watch(
        self,
        *,
        ids: Sequence[str] = (),
        statuses: Sequence[pb.Status.ValueType] = (),
        connector_type: str = "",
        resume_after_revision: int = 0,
    ) -> StatusWatch:
        """Follow status changes; reconnects and resumes by itself (see StatusWatch)."""
        return StatusWatch(
            self.stub,
            ids=ids,
            statuses=statuses,
            connector_type=connector_type,
            resume_after_revision=resume_after_revision,
            metadata=self.metadata,
        )
