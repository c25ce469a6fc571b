"""Talking to the service over gRPC in tests: the stub type, and reading google.rpc details off
a failed call exactly as the Python client does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from integrations.client import IntegrationsError
from integrations.v1 import service_pb2 as api

if TYPE_CHECKING:
    # The asyncio stub type exists for the type checker only (its calls are awaitable, its
    # streams async-iterable); at run time one generated class serves both channel kinds.
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub as Stub
else:
    from integrations.v1.service_pb2_grpc import IntegrationServiceStub as Stub

__all__ = ["RpcFailure", "Stub", "failure", "next_message"]

#: The decoded parts of a failed call a client acts on.
RpcFailure = IntegrationsError


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Decode a call's status and its google.rpc details."""
    return IntegrationsError.from_rpc(error)


async def next_message(
    call: grpc.aio.UnaryStreamCall[api.WatchStatusRequest, api.WatchStatusResponse],
) -> api.WatchStatusResponse:
    """A WatchStatus stream's next message, read by hand (the stream must not have ended)."""
    message = await call.read()
    assert isinstance(message, api.WatchStatusResponse), message
    return message
