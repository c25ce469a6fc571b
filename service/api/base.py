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


def certificate_name(context: Context) -> str | None:
    """The common name of the caller's client certificate (mutual TLS), if any."""
    names = list(context.auth_context().get("x509_common_name") or ())
    return names[0].decode(errors="replace") if names else None


class RpcBase:
    """Base of the servicer mixins."""

    def __init__(self, app: App) -> None:
        self.app = app
        # Page tokens are signed with keys derived from the credential key ring, which every
        # replica shares already (see service.api.page_tokens).
        assert app.db.keys is not None, "the service's database always has its key ring"
        self.page_tokens = PageTokens.from_key_ring(app.db.keys)

    def tenant(self, context: Context) -> str:
        """The caller's tenant (UNAUTHENTICATED without a valid key when keys are set)."""
        return self.app.tenancy.tenant(
            tuple(context.invocation_metadata() or ()), certificate_name(context)
        )

    def out(self, integration: Integration) -> pb.Integration:
        """The API view of an integration, as of now."""
        return convert.integration_out(
            integration,
            now=self.app.clock(),
            threshold=self.app.schedule.threshold(integration),
        )
