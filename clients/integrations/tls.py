"""TLS for the client: channel credentials from PEM files (the CA that signed the server's
certificate, and for mutual TLS this client's certificate and key)."""

from __future__ import annotations

from pathlib import Path

import grpc


def tls_credentials(
    *,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials for TLS: `ca_file` is the CA that signed the server's certificate
    (None: the system's trusted CAs); `cert_file` and `key_file` are this client's certificate
    and key, for a server that requires mutual TLS."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("a client certificate needs its key, and a key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
