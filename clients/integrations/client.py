"""An async Python client for the integrations service.

It wraps the generated stub with what every caller otherwise rewrites: the API key on every
call, a request id on Create so retries are safe, retries of idempotent calls when a replica
is unavailable, iteration over every page, and errors decoded from google.rpc details into
one exception a caller can branch on (`error.reason`, `error.violations`).

TLS: pass `credentials=tls_credentials(ca_file=..., cert_file=..., key_file=...)` (the CA that
signed the server's certificate, and for mutual TLS this client's certificate and key).
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc
from integrations.v1 import webhooks_pb2 as wh
from integrations.watch import StatusWatch

R = TypeVar("R")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE}


@dataclass
class IntegrationsError(Exception):
    """A failed call, with the google.rpc details decoded."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    #: The ErrorInfo domain: "integrations.v1" for errors of this service.
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    #: field -> description, for INVALID_ARGUMENT
    violations: dict[str, str] = field(default_factory=dict)
    retry_after: timedelta | None = None
    #: For FAILED_PRECONDITION: the subjects that failed, e.g. the current status.
    precondition_subjects: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        return f"{text} [{self.reason}]" if self.reason else text

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> IntegrationsError:
        result = cls(error.code(), error.details() or "")
        for key, value in error.trailing_metadata() or ():
            if key != "grpc-status-details-bin" or not isinstance(value, bytes):
                continue
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    result.reason, result.domain = info.reason, info.domain
                    result.metadata = dict(info.metadata)
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    result.violations = {v.field: v.description for v in bad.field_violations}
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    result.retry_after = retry.retry_delay.ToTimedelta()
                elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                    failed = error_details_pb2.PreconditionFailure()
                    detail.Unpack(failed)
                    result.precondition_subjects = [v.subject for v in failed.violations]
        return result


def tls_credentials(
    *,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials for TLS: `ca_file` is the CA that signed the server's certificate
    (None: the system's trusted CAs); `cert_file` and `key_file` are this client's certificate
    and key, for a server that requires mutual TLS."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs its key, and a key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


def _duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


class IntegrationsClient:
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
        self.channel = channel or (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        self.stub = service_pb2_grpc.IntegrationServiceStub(self.channel)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.retries = retries
        self.retry_delay = retry_delay

    async def __aenter__(self) -> IntegrationsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_channel:
            await self.channel.close()

    async def _call(
        self,
        method: Callable[..., Awaitable[R]],
        request: Any,
        *,
        idempotent: bool,
        timeout: float | None = 30,
    ) -> R:
        attempt = 0
        while True:
            try:
                return await method(request, metadata=self.metadata, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                attempt += 1
                if not idempotent or error.code() not in _RETRYABLE or attempt > self.retries:
                    raise IntegrationsError.from_rpc(error) from None
                await asyncio.sleep(self.retry_delay.total_seconds() * 2 ** (attempt - 1))

    async def _pages(
        self, method: Callable[..., Awaitable[Any]], request: Callable[[str], Any], items: str
    ) -> AsyncIterator[Any]:
        """Every item of a paginated list: `request(token)` builds each page's request."""
        token = ""
        while True:
            page = await self._call(method, request(token), idempotent=True)
            for item in getattr(page, items):
                yield item
            token = page.next_page_token
            if not token:
                return

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
            sync_interval=_duration(sync_interval),
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
            sync_interval=_duration(sync_interval),
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

    # -- history and data ------------------------------------------------------------------

    async def events(
        self, integration_id: str, page_size: int = 100
    ) -> AsyncIterator[pb.IntegrationEvent]:
        """The integration's history, newest first."""
        async for item in self._pages(
            self.stub.ListEvents,
            lambda token: api.ListEventsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "events",
        ):
            yield item

    async def sync_runs(
        self, integration_id: str, page_size: int = 100
    ) -> AsyncIterator[pb.SyncRun]:
        """The integration's sync runs, newest first."""
        async for item in self._pages(
            self.stub.ListSyncRuns,
            lambda token: api.ListSyncRunsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "runs",
        ):
            yield item

    async def sync_runs_page(
        self, integration_id: str, *, page_size: int = 20, page_token: str = ""
    ) -> tuple[builtins.list[pb.SyncRun], str]:
        """One page of sync runs, newest first, and the token of the next ("" at the end)."""
        page = await self._call(
            self.stub.ListSyncRuns,
            api.ListSyncRunsRequest(id=integration_id, page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return list(page.runs), page.next_page_token

    async def records_page(
        self, integration_id: str, *, page_size: int = 50, page_token: str = ""
    ) -> tuple[builtins.list[pb.Record], str]:
        """One page of synced records and the token of the next ("" at the end)."""
        page = await self._call(
            self.stub.ListRecords,
            api.ListRecordsRequest(id=integration_id, page_size=page_size, page_token=page_token),
            idempotent=True,
        )
        return list(page.records), page.next_page_token

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

    async def records(self, integration_id: str, page_size: int = 500) -> AsyncIterator[pb.Record]:
        """The integration's synced records (for the cursor that goes with them, page through
        ListRecords yourself: every page's `cursor`)."""
        async for item in self._pages(
            self.stub.ListRecords,
            lambda token: api.ListRecordsRequest(
                id=integration_id, page_size=page_size, page_token=token
            ),
            "records",
        ):
            yield item

    async def record_changes(
        self,
        integration_id: str,
        *,
        after: str = "",
        page_size: int = 500,
        follow: bool = False,
        poll_interval: timedelta = timedelta(seconds=5),
    ) -> AsyncIterator[api.ListRecordChangesResponse]:
        """The integration's change feed after the cursor `after` ("" = from the start), one
        page at a time, each with the cursor that resumes after it: apply a page's `changes`,
        then store its `cursor` (a crash in between replays the page, which is harmless: every
        change is the record's latest state). A page comes when it has changes or moves the
        cursor. Stops once caught up, unless `follow`, which keeps asking every
        `poll_interval` (or subscribe to the records.changed webhook and call this when one
        arrives). Raises IntegrationsError CURSOR_EXPIRED when the cursor is older than the
        feed keeps deletions: read everything again with ListRecords."""
        cursor = after
        while True:
            page = await self._call(
                self.stub.ListRecordChanges,
                api.ListRecordChangesRequest(id=integration_id, after=cursor, page_size=page_size),
                idempotent=True,
            )
            moved, cursor = page.cursor != cursor, page.cursor
            if page.changes or moved:
                yield page
            if page.has_more:
                continue
            if not follow:
                return
            await asyncio.sleep(poll_interval.total_seconds())

    # -- webhooks --------------------------------------------------------------------------

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
            wh.RotateWebhookSecretRequest(id=webhook_id, etag=etag, overlap=_duration(overlap)),
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
