"""Who is calling: a client certificate mapped to a tenant (mutual TLS), per-tenant API keys,
or the default tenant when the deployment explicitly runs without authentication.

Keys are configured as `key=tenant,key2=tenant2` (INTEGRATIONS_API_KEYS), each key either
plain or as its SHA-256 (`sha256:<64 hex digits>=tenant`, so a leaked configuration does not
leak keys). The list is parsed strictly at start-up — an empty entry, a space, a `;`, a
duplicated key or an illegal character is an error, never a silently different meaning — and
only the SHA-256 of each key is kept. A presented key is hashed and compared with every stored
digest in constant time. Transport-neutral: the API layer hands in the call's metadata as
(name, value) pairs and the common name of the client certificate, if any."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from service.domain.exceptions import Unauthenticated

#: A key as RFC 6750 allows a bearer token: letters, digits and -._~+/ (base64 padding `=`
#: may end it). At least 16 characters: anything shorter can be guessed.
_KEY = re.compile(r"[A-Za-z0-9\-._~+/]{16,512}=*")
_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
#: A tenant id as it is stored and logged.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BEARER = re.compile(r"Bearer ([^\s]+)", re.IGNORECASE)

EXAMPLE = "'key=tenant,sha256:<hex of the key>=tenant2'"


def parse_api_keys(text: str) -> dict[bytes, str]:
    """The SHA-256 digest of every key of `text`, mapped to its tenant; ValueError with a
    one-line message saying what is wrong (never naming a key)."""
    keys: dict[bytes, str] = {}
    if not text:
        return keys
    for number, entry in enumerate(text.split(","), start=1):
        where = f"API keys: entry {number}"
        if not entry:
            raise ValueError(f"{where} is empty (separate entries with one ',', e.g. {EXAMPLE})")
        if entry != entry.strip() or " " in entry:
            raise ValueError(f"{where} holds spaces; write 'key=tenant' without any")
        if ";" in entry:
            raise ValueError(f"{where} holds ';'; separate entries with ','")
        key, sep, tenant = entry.rpartition("=")
        if not sep or not key:
            raise ValueError(f"{where} is not 'key=tenant' (e.g. {EXAMPLE})")
        if not _TENANT.fullmatch(tenant):
            raise ValueError(
                f"{where}: the tenant must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        hashed = _HASHED.fullmatch(key)
        if hashed:
            digest = bytes.fromhex(hashed.group(1))
        elif _KEY.fullmatch(key):
            digest = hashlib.sha256(key.encode()).digest()
        else:
            raise ValueError(
                f"{where}: the key must be 16-512 characters of letters, digits and -._~+/ "
                "(or sha256:<64 lower-case hex digits>)"
            )
        if digest in keys:
            raise ValueError(f"{where} repeats a key given earlier (a key has one tenant)")
        keys[digest] = tenant
    return keys


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
            if not _TENANT.fullmatch(tenant.strip()):
                raise ValueError(
                    "client certificate tenants: the tenant must be 1-64 letters, digits, '.', "
                    "'_' or '-', starting with a letter or digit"
                )
            self._certificates[name.strip()] = tenant.strip()
        if certificates and not self._certificates:
            # "," or spaces: set, so authentication looks on, yet it would name no one, and
            # every caller would be let in. Refuse rather than fail open.
            raise ValueError(
                "client certificate tenants are set but name none; write 'cn=tenant,cn2=t2'"
            )
        self._keys = list(parse_api_keys(api_keys).items())

    @property
    def required(self) -> bool:
        return bool(self._keys)

    @property
    def by_certificate(self) -> bool:
        """Whether a client certificate can decide the tenant (so callers need its name)."""
        return bool(self._certificates)

    def tenant(
        self,
        metadata: Sequence[tuple[str, str | bytes]] | None,
        certificate_name: str | None = None,
    ) -> str:
        """The caller's tenant, or Unauthenticated when keys are required and none matches
        (no key, another scheme, a wrong key, or more than one authorization header). A client
        certificate listed in the mapping decides the tenant by itself."""
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
        presented = [value for name, value in metadata or () if name == "authorization"]
        match = (
            _BEARER.fullmatch(presented[0])
            if len(presented) == 1 and isinstance(presented[0], str)
            else None
        )
        digest = hashlib.sha256(match.group(1).encode() if match else b"").digest()
        tenant = None
        for key, owner in self._keys:
            # Compare with every key, so timing does not reveal which one was close.
            if hmac.compare_digest(key, digest) and match is not None:
                tenant = owner
        if tenant is None:
            raise Unauthenticated(
                "a valid API key is required: one metadata entry 'authorization: Bearer <key>'",
                reason="API_KEY_INVALID",
            )
        return tenant
