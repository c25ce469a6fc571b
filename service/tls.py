"""TLS for the service's listeners: the certificate files, checked at start-up and reloaded
without a restart.

One `ServerCertificates` serves gRPC (dynamic credentials: gRPC asks for the newest
configuration at every handshake) and the HTTP listeners (an SSL context whose SNI callback
hands every handshake the newest context). `reload()` re-reads the files; it runs on SIGHUP and
whenever `watch()` sees a file change. A reload that fails (a half-written file, a key that
does not match its certificate) keeps the certificates in use and says so in the log, so a
renewal in progress never takes the service down. Connections already open keep the
certificate they started with; new connections get the new one.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
import structlog
from cryptography import x509

from service.observability import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CertificateFiles:
    """Where the server's certificate, its key and (for mutual TLS) the client CA live."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def stamps(self) -> tuple[tuple[int, int], ...]:
        """What changes when a file is replaced (modification time and size; following
        symlinks, so a Kubernetes secret's swapped link counts)."""
        found = []
        for path in (self.cert, self.key, self.client_ca):
            if path is None:
                continue
            try:
                stat = os.stat(path)
            except OSError:
                found.append((-1, -1))
            else:
                found.append((stat.st_mtime_ns, stat.st_size))
        return tuple(found)


@dataclass(frozen=True)
class _Loaded:
    cert: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext
    not_after: datetime


class ServerCertificates:
    """The certificates in use; see the module docstring."""

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self._stamps = files.stamps()
        #: ValueError here stops the start: a service must not come up without its certificate.
        self._current = _load(files)
        self._generation = 0
        self._served_generation = 0
        self._on_switch: ssl.SSLContext | None = None
        self._expiry()

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by the client CA."""
        return self.files.client_ca is not None

    @property
    def not_after(self) -> datetime:
        """When the server certificate in use expires."""
        return self._current.not_after

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for `add_secure_port` that follow every reload."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            self._fetch,  # type: ignore[arg-type]  # gRPC documents None as "keep it"
            require_client_authentication=self.mutual,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for the HTTP listeners that follows every reload (client
        certificates are not asked for there: browsers and scrapers have none)."""
        switch = _server_context()
        switch.load_cert_chain(self.files.cert, self.files.key)

        def newest(sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
            sock.context = self._current.context

        switch.sni_callback = newest
        return switch

    def changed(self) -> bool:
        """Whether a file changed since the last (attempted) load."""
        return self.files.stamps() != self._stamps

    def reload(self) -> bool:
        """Re-read the files; True when the new certificates are in use."""
        self._stamps = self.files.stamps()
        try:
            loaded = _load(self.files)
        except ValueError as exc:
            log.error("tls_reload_failed", error=str(exc), kept_expiry=self.not_after.isoformat())
            return False
        self._current = loaded
        self._generation += 1
        self._expiry()
        log.info("tls_reloaded", expires=self.not_after.isoformat())
        return True

    async def watch(self, interval: float) -> None:
        """Reload whenever a file changes (checked every `interval` seconds); runs until
        cancelled."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload()

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on its own thread at every handshake: None keeps the configuration.
        generation = self._generation
        if generation == self._served_generation:
            return None
        self._served_generation = generation
        return self._grpc_configuration()

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        current = self._current
        return grpc.ssl_server_certificate_configuration(
            [(current.key, current.cert)], root_certificates=current.client_ca
        )

    def _expiry(self) -> None:
        metrics.TLS_CERTIFICATE_EXPIRY.set(self._current.not_after.timestamp())


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _load(files: CertificateFiles) -> _Loaded:
    """Read and check the files: the key must match the certificate, the CA must parse."""
    try:
        cert = files.cert.read_bytes()
        key = files.key.read_bytes()
        client_ca = files.client_ca.read_bytes() if files.client_ca is not None else None
        context = _server_context()
        context.load_cert_chain(files.cert, files.key)
        if files.client_ca is not None:
            context.load_verify_locations(files.client_ca)
        not_after = x509.load_pem_x509_certificate(cert).not_valid_after_utc
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"TLS files cannot be used ({files.cert}, {files.key}): {exc}") from exc
    return _Loaded(cert, key, client_ca, context, not_after)


def from_settings(cert: str, key: str, client_ca: str) -> ServerCertificates | None:
    """The server's certificates, or None when TLS is off (no certificate configured)."""
    if not cert:
        return None
    return ServerCertificates(
        CertificateFiles(Path(cert), Path(key), Path(client_ca) if client_ca else None)
    )
