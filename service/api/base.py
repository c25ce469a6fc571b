"""What every group of RPCs shares: the running application and the caller's tenant."""

from __future__ import annotations

from typing import Any

import grpc
from integrations.v1 import integration_pb2 as pb

from service.api import convert
from service.api.page_tokens import PageTokens
from service.app import App
from service.domain.model import Integration

Context = grpc.aio.ServicerContext[Any, Any]


class RpcBase:
    """Base of the servicer mixins."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.page_tokens = PageTokens.from_key_ring(app.lifecycle.keys)

    def tenant(self, context: Context) -> str:
        """The caller's tenant (UNAUTHENTICATED without a valid key when keys are set)."""
        return self.app.tenancy.tenant(tuple(context.invocation_metadata() or ()))

    def out(self, integration: Integration) -> pb.Integration:
        """The API view of an integration, as of now."""
        return convert.integration_out(
            integration, now=self.app.clock(), default_threshold=self.app.breaker_threshold
        )
