"""Who is calling: a client certificate mapped to a tenant (mutual TLS), per-tenant API keys,
or the default tenant when neither is configured.

Transport-neutral: the API layer hands in the call's metadata as (name, value) pairs and the
common name of the client certificate, if any."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from service.domain.exceptions import Unauthenticated


class Tenancy:
    """Resolves the caller's tenant from `authorization: Bearer <key>` metadata."""

    def __init__(self, default_tenant: str, api_keys: str = "", certificates: str = "") -> None:
        self.default_tenant = default_tenant
        #: Client certificate common name -> tenant ("cn=tenant,cn2=tenant2").
        self._certificates: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in certificates.split(","))):
            name, _, tenant = part.rpartition("=")
            if not name.strip() or not tenant.strip():
                raise ValueError("client certificate tenants must look like 'cn=tenant,cn2=t2'")
            self._certificates[name.strip()] = tenant.strip()
        # "key=tenant,key2=tenant2"; kept as bytes for constant-time comparison.
        self._keys: list[tuple[bytes, str]] = []
        for part in filter(None, (p.strip() for p in api_keys.split(","))):
            key, _, tenant = part.partition("=")
            if not key or not tenant:
                raise ValueError("API keys must look like 'key=tenant,key2=tenant2'")
            self._keys.append((key.encode(), tenant))

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def tenant(
        self,
        metadata: Sequence[tuple[str, str | bytes]] | None,
        certificate_name: str | None = None,
    ) -> str:
        """The caller's tenant, or Unauthenticated when keys are required and none matches.
        A client certificate listed in the mapping decides the tenant by itself."""
        if self._certificates:
            owner = self._certificates.get(certificate_name or "")
            if owner is not None:
                return owner
            if not self._keys:
                raise Unauthenticated(
                    f"the client certificate {certificate_name or '(none)'!r} is not mapped to "
                    "a tenant; ask the operator to add its common name to "
                    "INTEGRATIONS_TLS_CLIENT_TENANTS",
                    reason="CLIENT_CERTIFICATE_UNKNOWN",
                )
        if not self._keys:
            return self.default_tenant
        presented = b""
        for name, value in metadata or ():
            if (
                name == "authorization"
                and isinstance(value, str)
                and value.lower().startswith("bearer ")
            ):
                presented = value[7:].strip().encode()
        tenant = None
        for key, owner in self._keys:
            # Compare against every key so timing does not reveal which one was close.
            if hmac.compare_digest(key, presented):
                tenant = owner
        if tenant is None:
            raise Unauthenticated(
                "a valid API key is required: metadata 'authorization: Bearer <key>'",
                reason="API_KEY_INVALID",
            )
        return tenant
