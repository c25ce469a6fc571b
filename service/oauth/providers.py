"""Which client this deployment signs in as, and which endpoints one integration may use. Pure
values, no I/O.

A connector that signs in with OAuth2 names its `OAuthProvider` (its class attribute `oauth`).
The client id and secret are the deployment's (settings such as INTEGRATIONS_GOOGLE_CLIENT_ID),
never a tenant's. A connector's config may override the token and consent URLs (a sandbox, a
regional endpoint), but the token URL receives the deployment's client secret, so an override
is honoured only when its origin is the provider's own or one the deployment trusts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from service.connectors.auth import OAuthProvider
from service.domain.exceptions import FailedPrecondition, FieldViolation


@dataclass(frozen=True)
class OAuthClient:
    """The deployment's registration at a provider."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class Endpoints:
    """What one integration signs in and refreshes with."""

    provider: OAuthProvider
    client: OAuthClient
    authorization_url: str
    token_url: str
    #: Where tokens are revoked (RFC 7009); None when the provider does not say.
    revocation_url: str | None = None


def provider_of(connector: Any) -> OAuthProvider | None:
    """The OAuth2 provider a connector signs in with, if any."""
    declared = getattr(connector, "oauth", None)
    return declared if isinstance(declared, OAuthProvider) else None


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased; "" when it has none."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{port}"


class OAuthSetup:
    """The deployment's OAuth configuration: its clients and the origins it trusts."""

    def __init__(
        self, clients: Mapping[str, OAuthClient], trusted_origins: Iterable[str] = ()
    ) -> None:
        self.clients = dict(clients)
        self.trusted_origins = frozenset(o for o in (origin(u) for u in trusted_origins) if o)

    def endpoints(self, connector: Any, config: Mapping[str, Any]) -> Endpoints:
        """The endpoints and client of an integration, or FailedPrecondition saying why it
        cannot sign in (no OAuth for this connector, no client configured, untrusted override)."""
        provider = provider_of(connector)
        connector_type = str(getattr(connector, "type", ""))
        if provider is None:
            raise FailedPrecondition(
                f"connector {connector_type!r} does not sign in with OAuth2; give its "
                "credentials directly instead",
                reason="SIGN_IN_NOT_SUPPORTED",
                metadata={"connector_type": connector_type},
            )
        client = self.clients.get(provider.name)
        if client is None:
            env = f"INTEGRATIONS_{provider.name.upper()}_CLIENT_ID"
            raise FailedPrecondition(
                f"this deployment has no OAuth client for {provider.name}; the operator must "
                f"set {env} and its secret",
                reason="OAUTH_CLIENT_NOT_CONFIGURED",
                metadata={"provider": provider.name, "setting": env},
            )
        token_url = self._url(config, "token_url", provider.token_url)
        revocation_url = provider.revocation_url
        if revocation_url and token_url != provider.token_url:
            # An overridden token endpoint (a sandbox, a region) revokes beside itself.
            revocation_url = str(URL(token_url).parent / "revoke")
        return Endpoints(
            provider,
            client,
            self._url(config, "authorization_url", provider.authorization_url),
            token_url,
            revocation_url,
        )

    def override_violations(
        self, connector: Any, config: Mapping[str, Any], prefix: str = "config"
    ) -> list[FieldViolation]:
        """The token / consent URL overrides of `config` that this deployment would refuse to
        use, as field violations (checked when the config is given, not at the first refresh)."""
        provider = provider_of(connector)
        if provider is None:
            return []
        found = []
        for key, default in (
            ("authorization_url", provider.authorization_url),
            ("token_url", provider.token_url),
        ):
            value = config.get(key)
            if not isinstance(value, str) or not value.strip():
                continue
            where = origin(value)
            if where and where != origin(default) and where not in self.trusted_origins:
                found.append(
                    FieldViolation(
                        f"{prefix}.{key}",
                        f"points at {where}, which this deployment does not trust for OAuth "
                        "(its client secret would be sent there); remove the override or ask "
                        "the operator to add the origin to INTEGRATIONS_OAUTH_TRUSTED_ORIGINS",
                        "OAUTH_ENDPOINT_NOT_TRUSTED",
                    )
                )
        return found

    def _url(self, config: Mapping[str, Any], key: str, default: str) -> str:
        value = config.get(key)
        if not isinstance(value, str) or not value.strip():
            return default
        found = origin(value)
        if found != origin(default) and found not in self.trusted_origins:
            raise FailedPrecondition(
                f"config.{key} points at {found or 'an invalid URL'}, which this deployment "
                "does not trust for OAuth (its client secret would be sent there); remove the "
                "override or ask the operator to add the origin to "
                "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS",
                reason="OAUTH_ENDPOINT_NOT_TRUSTED",
                metadata={"field": f"config.{key}", "origin": found},
            )
        return value.strip()
