"""Reauthorize, both ways, and the completion of a sign-in.

- **Direct credentials**: stored sealed and tested at once (the transition table's REAUTHORIZE
  row: ACTIVE, TESTING, ERROR and DISCONNECTED go to TESTING, PAUSED stays PAUSED). The test's
  outcome moves the integration on: ACTIVE (breaker closed, a sync due now that continues
  from the stored cursor) or the classified error.
- **Sign-in**: checks everything a completion will need (the transition, the connector's
  OAuth provider, the deployment's client, the callback) and answers the consent URL. When the
  browser comes back, `complete_sign_in` exchanges the code, stores the tokens and goes on
  exactly like direct credentials. Every way a sign-in can fail ends in a page for the person
  and, when the integration is known, an event in its history.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import structlog

from service.clock import Clock
from service.connectors.provider_failures import ProviderFailure, malformed
from service.connectors.registry import ConnectorRegistry
from service.domain.credentials import Credentials, SignIn
from service.domain.exceptions import (
    FailedPrecondition,
    NotFound,
    ServiceError,
)
from service.domain.model import Breaker, Integration, TestOutcome
from service.domain.status import Status, Trigger
from service.domain.taxonomy import ErrorCode, IntegrationError
from service.domain.validation import raise_if, return_url, scopes
from service.engine import changes
from service.engine.connection_tester import ConnectionTester
from service.engine.providers import Providers
from service.oauth import tokens
from service.oauth.providers import Endpoints, OAuthSetup
from service.oauth.sign_in import SignIns, Started
from service.oauth.token_endpoint import TokenEndpoint, TokenGrant
from service.storage.database import Database

log = structlog.get_logger(__name__)

#: The actor of changes a sign-in's callback makes (the person's browser, not an API caller).
CALLBACK_ACTOR = "oauth_callback"
#: The event trigger of a sign-in that did not complete (the status does not change).
SIGN_IN_FAILED = "sign_in_failed"

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True)
class SignInResult:
    """How a sign-in's callback ended, for the page the person sees."""

    ok: bool
    title: str
    detail: str
    return_url: str = ""
    integration: Integration | None = None
    test: TestOutcome | None = None


class Reauthorization:
    """Renews integrations' credentials; see the module docstring."""

    def __init__(
        self,
        db: Database,
        connectors: ConnectorRegistry,
        providers: Providers,
        tester: ConnectionTester,
        setup: OAuthSetup,
        sign_ins: SignIns,
        endpoint: TokenEndpoint,
        clock: Clock,
        *,
        return_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.providers = providers
        self.tester = tester
        self.setup = setup
        self.sign_ins = sign_ins
        self.endpoint = endpoint
        self.clock = clock
        #: The origins a sign-in's return_url may be on (INTEGRATIONS_SIGN_IN_RETURN_ORIGINS);
        #: empty: any http(s) URL.
        self.return_origins = return_origins
        #: The redirect URI of sign-ins: the callback endpoint's public URL, set when it
        #: starts serving; None while it does not (sign-ins are then refused).
        self.callback_url: str | None = None

    # -- direct credentials ------------------------------------------------------------

    async def with_credentials(
        self,
        tenant: str,
        integration_id: UUID,
        etag: str,
        credentials: Credentials,
        *,
        actor: str = "api",
        reason: str = "new credentials given; verifying the connection",
    ) -> tuple[Integration, TestOutcome | None]:
        """Store `credentials` and test them at once (no test on a PAUSED integration)."""
        integration = await self._store(tenant, integration_id, etag, credentials, actor, reason)
        if integration.status is not Status.TESTING:
            return integration, None
        return await self.tester.verify(integration, actor=actor)

    async def _store(
        self,
        tenant: str,
        integration_id: UUID,
        etag: str,
        credentials: Credentials,
        actor: str,
        reason: str,
    ) -> Integration:
        async with self.db.transaction() as tx:
            current = await changes.lock(tx, tenant, integration_id, etag)
            _check(current)
            connector = self.connectors.get(current.connector_type)
            if connector is not None:
                raise_if(connector.check_credentials(credentials))
            now = self.clock()
            await tx.credentials.put(tenant, integration_id, credentials, now)
            # A person's reauthorization is an explicit retry: the breaker closes now, and
            # the verification's outcome counts afresh.
            trigger = _trigger(current)
            if trigger is Trigger.CREDENTIALS_SAVED:
                reason = "credentials saved; they are verified once the configuration is complete"
            return await changes.apply(
                tx,
                current,
                trigger,
                actor=actor,
                reason=reason,
                now=now,
                mutate=lambda i: i.replace(
                    credentials_kind=credentials.kind,
                    credentials_set_at=now,
                    breaker=Breaker(threshold=i.breaker.threshold),
                ),
            )

    # -- sign-in -----------------------------------------------------------------------

    async def start_sign_in(
        self,
        tenant: str,
        integration_id: UUID,
        etag: str,
        *,
        return_to: str,
        scope_list: Sequence[str],
    ) -> tuple[Integration, Started]:
        """Begin a sign-in; nothing about the integration changes until it completes."""
        raise_if(return_url(return_to, allowed_origins=self.return_origins) + scopes(scope_list))
        async with self.db.transaction() as tx:
            # Locked only to check the etag and the status the way every change does.
            current = await changes.lock(tx, tenant, integration_id, etag)
        _check(current)
        endpoints = self.setup.endpoints(
            self.connectors.get(current.connector_type), current.config
        )
        if self.callback_url is None:
            raise FailedPrecondition(
                "this replica does not serve the sign-in callback; give the credentials directly",
                reason="SIGN_IN_UNAVAILABLE",
            )
        started = await self.sign_ins.start(
            current,
            endpoints,
            redirect_uri=self.callback_url,
            return_url=return_to,
            scopes=scope_list,
        )
        log.info(
            "sign_in_started",
            tenant_id=tenant,
            integration_id=str(integration_id),
            provider=endpoints.provider.name,
        )
        return current, started

    async def complete_sign_in(self, state: str, code: str, error: str) -> SignInResult:
        """The callback: consume the sign-in of `state`, then either record why it failed
        or exchange `code` and reauthorize with the tokens. Never raises for anything a
        browser can send."""
        sign_in = await self.sign_ins.take(state) if state else None
        if sign_in is None:
            log.info("sign_in_unknown", has_state=bool(state))
            return SignInResult(
                False,
                "This sign-in link does not work",
                "It is unknown or was already used. Start the sign-in again from the application.",
            )
        if sign_in.expired(self.clock()):
            return await self._failed(
                sign_in,
                "This sign-in has expired",
                "the sign-in expired before the browser came back",
            )
        if error:
            return await self._provider_refused(sign_in, error)
        exchanged = await self._exchange(sign_in, code)
        if isinstance(exchanged, SignInResult):
            return exchanged
        endpoints, grant = exchanged
        if not grant.refresh_token:
            log.warning(
                "sign_in_without_refresh_token",
                tenant_id=sign_in.tenant_id,
                integration_id=str(sign_in.integration_id),
            )
        return await self._reauthorize(sign_in, endpoints, tokens.from_grant(grant, self.clock()))

    async def _provider_refused(self, sign_in: SignIn, error: str) -> SignInResult:
        """The provider sent the browser back with `?error=` (RFC 6749 §4.1.2.1)."""
        provider = sign_in.provider.capitalize()
        error = error if _ERROR_CODE.fullmatch(error) else "invalid_response"
        if error == "access_denied":
            return await self._failed(
                sign_in,
                "Access was not granted",
                f"access was declined on {provider}'s consent page",
                IntegrationError(
                    ErrorCode.ACCESS_DENIED,
                    f"Access was declined on {provider}'s consent page.",
                    self.clock(),
                ),
            )
        return await self._failed(
            sign_in, "The sign-in did not complete", f"{provider} ended the sign-in with '{error}'"
        )

    async def _exchange(
        self, sign_in: SignIn, code: str
    ) -> tuple[Endpoints, TokenGrant] | SignInResult:
        """Redeem the code, if the integration can still take the tokens (a code that
        cannot be used is better left unredeemed)."""
        try:
            async with self.db.connection() as tx:
                integration = await tx.integrations.get(sign_in.tenant_id, sign_in.integration_id)
        except NotFound:
            return _deleted(sign_in)
        try:
            _check(integration)
            endpoints = self.setup.endpoints(
                self.connectors.get(integration.connector_type), integration.config
            )
            if not code:
                raise malformed(
                    f"{sign_in.provider.capitalize()} sent the browser back without a code"
                )
            return endpoints, await self.endpoint.exchange_code(
                endpoints, code, redirect_uri=sign_in.redirect_uri, code_verifier=sign_in.verifier
            )
        except ServiceError as refused:
            return await self._failed(sign_in, "The sign-in cannot be completed", refused.message)
        except ProviderFailure as failure:
            classified = self.providers.classify(failure, integration, "sign_in")
            return await self._failed(
                sign_in,
                "The sign-in could not be completed",
                f"exchanging the code failed: {failure.message}",
                classified,
            )

    async def _reauthorize(
        self, sign_in: SignIn, endpoints: Endpoints, credentials: Credentials
    ) -> SignInResult:
        provider = endpoints.provider.name.capitalize()
        try:
            integration, outcome = await self.with_credentials(
                sign_in.tenant_id,
                sign_in.integration_id,
                "",
                credentials,
                actor=CALLBACK_ACTOR,
                reason=f"signed in with {provider}; verifying the connection",
            )
        except NotFound:
            return _deleted(sign_in)
        except ServiceError as refused:
            return await self._failed(sign_in, "The sign-in cannot be completed", refused.message)
        log.info(
            "sign_in_completed",
            tenant_id=sign_in.tenant_id,
            integration_id=str(sign_in.integration_id),
            status=integration.status.value,
        )
        name = integration.display_name
        if outcome is None:
            detail = (
                f"The new credentials of “{name}” are saved. It stays paused until it is resumed."
                if integration.status is Status.PAUSED
                else f"The new credentials of “{name}” are saved."
            )
            return SignInResult(True, "Signed in", detail, sign_in.return_url, integration)
        if outcome.ok:
            return SignInResult(
                True,
                "Signed in",
                f"“{name}” is connected and working again.",
                sign_in.return_url,
                integration,
                outcome,
            )
        assert outcome.error is not None
        return SignInResult(
            False,
            "Signed in, but the connection test failed",
            f"{outcome.error.message} {outcome.error.solution}",
            sign_in.return_url,
            integration,
            outcome,
        )

    async def _failed(
        self, sign_in: SignIn, title: str, why: str, error: IntegrationError | None = None
    ) -> SignInResult:
        """Record in the integration's history that a sign-in did not complete (its status
        does not change) and say so to the person."""
        log.info(
            "sign_in_failed",
            tenant_id=sign_in.tenant_id,
            integration_id=str(sign_in.integration_id),
            why=why,
        )
        integration: Integration | None = None
        try:
            async with self.db.transaction() as tx:
                current = await tx.integrations.lock(sign_in.tenant_id, sign_in.integration_id)
                integration = await changes.note(
                    tx,
                    current,
                    SIGN_IN_FAILED,
                    actor=CALLBACK_ACTOR,
                    reason=f"sign-in not completed: {why}",
                    now=self.clock(),
                    error=error,
                )
        except NotFound:
            pass  # deleted meanwhile: there is no history left to write to
        detail = (
            why[0].upper() + why[1:] + ". Nothing was changed; start the sign-in again "
            "from the application."
        )
        return SignInResult(False, title, detail, sign_in.return_url, integration)


def _deleted(sign_in: SignIn) -> SignInResult:
    return SignInResult(
        False,
        "This integration no longer exists",
        "It was deleted while the sign-in was in progress.",
        sign_in.return_url,
    )


def _trigger(current: Integration) -> Trigger:
    """Verify new credentials at once, unless the setup is still incomplete: then they are
    only saved, and completing the configuration verifies them."""
    if current.status in (Status.DRAFT, Status.CONFIGURE) and not current.config_complete:
        return Trigger.CREDENTIALS_SAVED
    return Trigger.REAUTHORIZE


def _check(current: Integration) -> None:
    """TransitionNotAllowed unless the table lets `current` be reauthorized."""
    changes.allowed(current.status, _trigger(current))
