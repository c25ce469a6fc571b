"""Reading google.rpc details off a failed call, exactly as the Python client does."""

from __future__ import annotations

import grpc
from integrations.client import IntegrationsError

#: The decoded parts of a failed call a client acts on.
RpcFailure = IntegrationsError


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Decode a call's status and its google.rpc details."""
    return IntegrationsError.from_rpc(error)
