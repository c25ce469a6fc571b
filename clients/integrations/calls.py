"""What every call of `IntegrationsClient` goes through: the API key on each call, retries of
idempotent calls while a replica is unavailable, every page of a paginated list, and errors
decoded into `IntegrationsError`. The client's method groups (`history`, `webhooks`) build on
`Calls`; `IntegrationsClient` puts them together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from integrations.errors import IntegrationsError
from integrations.v1 import service_pb2_grpc

R = TypeVar("R")

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE}


def duration(value: timedelta | None) -> duration_pb2.Duration | None:
    """`value` as a protobuf Duration (None stays None: the field is left unset)."""
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


class Calls:
    """Calls the service's stub over `channel`, authenticated and retried."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        api_key: str | None,
        retries: int,
        retry_delay: timedelta,
    ) -> None:
        self.channel = channel
        self.stub = service_pb2_grpc.IntegrationServiceStub(channel)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.retries = retries
        self.retry_delay = retry_delay

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
