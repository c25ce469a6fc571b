"""Who is calling: per-tenant API keys, or the default tenant when no keys are configured.

Transport-neutral: the API layer hands in the call's metadata as (name, value) pairs."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from service.domain.exceptions import Unauthenticated


class Tenancy:
    """Resolves the caller's tenant from `authorization: Bearer <key>` metadata."""

    def __init__(self, default_tenant: str, api_keys: str = "") -> None:
        self.default_tenant = default_tenant
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

    def tenant(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
        """The caller's tenant, or Unauthenticated when keys are required and none matches."""
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
