"""Certificates made at test time (trustme): a CA and server certificate, client certificates
of a client CA (current, expired, and one from a CA the server does not trust), written as PEM
files the way an operator would hand them to the service and its clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pair:
    """A certificate (with its chain) and its key, as files."""

    cert: Path
    key: Path


def write(leaf: trustme.LeafCert, folder: Path, name: str) -> Pair:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return Pair(cert, key)


def write_ca(ca: trustme.CA, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ca.cert_pem.bytes())
    return path


@dataclass(frozen=True)
class Pki:
    """Everything a mutual-TLS deployment and its clients need."""

    folder: Path
    server_ca: Path
    server: Pair
    client_ca: Path
    #: Mapped to the tenant "billing" in the tests' deployments.
    billing: Pair
    #: Valid but not mapped to a tenant.
    reports: Pair
    expired: Pair
    #: Signed by a CA the server does not trust.
    stranger: Pair

    @classmethod
    def create(cls, folder: Path) -> Pki:
        server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
        long_ago = datetime.now(UTC) - timedelta(days=30)
        return cls(
            folder=folder,
            server_ca=write_ca(server_ca, folder / "server-ca.pem"),
            server=write(server_ca.issue_cert("127.0.0.1", "localhost"), folder, "server"),
            client_ca=write_ca(client_ca, folder / "client-ca.pem"),
            billing=write(
                client_ca.issue_cert("billing.example", common_name="billing-svc"),
                folder,
                "billing",
            ),
            reports=write(
                client_ca.issue_cert("reports.example", common_name="reports-svc"),
                folder,
                "reports",
            ),
            expired=write(
                client_ca.issue_cert(
                    "billing.example",
                    common_name="billing-svc",
                    not_before=long_ago,
                    not_after=long_ago + timedelta(days=1),
                ),
                folder,
                "expired",
            ),
            stranger=write(
                other_ca.issue_cert("billing.example", common_name="billing-svc"),
                folder,
                "stranger",
            ),
        )

    def renew_server(self, not_after: datetime | None = None) -> Path:
        """Replace the server's certificate files with one from a new CA (as a renewal with a
        new issuer would), expiring at `not_after` (trustme's default: the year 3000);
        returns that CA's file."""
        new_ca = trustme.CA()
        leaf = new_ca.issue_cert("127.0.0.1", "localhost", not_after=not_after)
        # Key first, then certificate: a watcher never sees a certificate without its key.
        staged = write(leaf, self.folder / "staged", "server")
        staged.key.replace(self.server.key)
        staged.cert.replace(self.server.cert)
        return write_ca(new_ca, self.folder / "renewed-ca.pem")
