"""The engine's side of the connectors: what a connector needs to talk to an integration's
provider, and what its failures mean to the integration.

Every failure becomes an `IntegrationError` here, once: a connector's `ProviderFailure` keeps
its code; anything else (a bug, a malformed answer we did not foresee) is INTERNAL. SYSTEM
errors get a support reference, and the log line carrying it holds the full context — which
integration, which operation, what the provider answered — but never a credential.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from service.clock import Clock
from service.connectors.auth import AccessTokens, StoredTokens
from service.connectors.base import Connector, Source
from service.connectors.http import HttpClient
from service.connectors.provider_failures import ProviderFailure
from service.connectors.redaction import SHAPES
from service.connectors.registry import ConnectorRegistry
from service.domain.credentials import Credentials
from service.domain.model import Integration
from service.domain.records import RecordLimits
from service.domain.taxonomy import ErrorCode, IntegrationError
from service.offload import INLINE, Offload
from service.storage.credentials import StoredCredentials
from service.storage.database import Database

log = structlog.get_logger(__name__)


class Unread:
    """The credentials were not read yet (`Providers.open` reads them)."""


UNREAD = Unread()

#: Builds the access tokens of an integration; the credentials work plugs a refresher in here.
TokensFactory = Callable[[Integration, Credentials | None], Awaitable[AccessTokens]]


async def stored_tokens(integration: Integration, credentials: Credentials | None) -> AccessTokens:
    """Tokens as stored, never refreshed (the default; the App plugs in the OAuth refresher,
    service.oauth.refresh.TokenRefresher.tokens_for)."""
    return StoredTokens(credentials)


@dataclass
class Providers:
    """Opens connectors' sources and classifies their failures."""

    connectors: ConnectorRegistry
    http: HttpClient
    db: Database
    clock: Clock
    page_size: int = 250
    tokens: TokensFactory = stored_tokens
    #: Where parsing and preparing big answers runs (worker processes; see service.offload).
    offload: Offload = INLINE
    #: What a record may be, for pages made storable where they are parsed.
    limits: RecordLimits = field(default_factory=RecordLimits)

    async def open(
        self, integration: Integration, stored: StoredCredentials | Unread | None = UNREAD
    ) -> tuple[Connector, Source]:
        """The integration's connector and its source (credentials unsealed): `stored` when
        the caller read them already (in the transaction that started the attempt), else
        read now."""
        connector = self.connectors.get(integration.connector_type)
        if connector is None:
            raise ProviderFailure(
                ErrorCode.INTERNAL,
                f"the connector {integration.connector_type!r} is not installed in this deployment",
                context={"connector_type": integration.connector_type},
            )
        if isinstance(stored, Unread):
            async with self.db.connection() as tx:
                stored = await tx.credentials.get(integration.tenant_id, integration.id)
        credentials = stored.credentials if stored else None
        source = Source(
            config=integration.config,
            credentials=credentials,
            http=self.http.for_connector(integration.connector_type),
            tokens=await self.tokens(integration, credentials),
            page_size=self.page_size,
            account_known=bool(stored and stored.account),
            offload=self.offload,
            limits=self.limits,
        )
        return connector, source

    def classify(
        self, exc: Exception, integration: Integration, operation: str
    ) -> IntegrationError:
        """The integration's view of a failure of `operation` ("test_connection", "sync")."""
        now = self.clock()
        where = {
            "tenant_id": integration.tenant_id,
            "integration_id": str(integration.id),
            "connector_type": integration.connector_type,
            "operation": operation,
        }
        if isinstance(exc, ProviderFailure):
            # Connectors quote providers (error texts, excerpts): whatever looks like a
            # credential goes before it is logged or stored. (The exact secrets a request
            # sent are already gone from excerpts: service.connectors.http.)
            exc = ProviderFailure(
                exc.code,
                SHAPES.text(exc.message),
                retry_after=exc.retry_after,
                context=SHAPES.value(exc.context),
            )
            reference = None
            if exc.code is ErrorCode.INTERNAL:
                reference = support_reference()
                log.error(
                    "provider_answer_unusable",
                    support_reference=reference,
                    message=exc.message,
                    context=exc.context,
                    **where,
                )
            else:
                log.info(
                    "provider_failure",
                    code=exc.code.value,
                    message=exc.message,
                    context=exc.context,
                    **where,
                )
            return IntegrationError(
                code=exc.code,
                message=exc.message,
                occurred_at=now,
                retry_after=exc.retry_after,
                support_reference=reference,
            )
        reference = support_reference()
        log.error("connector_crashed", support_reference=reference, exc_info=exc, **where)
        return IntegrationError(
            code=ErrorCode.INTERNAL,
            occurred_at=now,
            support_reference=reference,
            message=f"{operation.replace('_', ' ')} failed inside the service "
            f"({type(exc).__name__}); quote the support reference",
        )


def support_reference() -> str:
    """A short id that finds one failure's log line."""
    return uuid.uuid4().hex[:12]
