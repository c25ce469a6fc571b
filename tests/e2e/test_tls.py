"""The service over TLS and mutual TLS, as a process, with certificates made at test time:
handshakes, refusals, client certificates mapped to tenants, a reload on SIGHUP, and the
clients (Python, integrationsctl, grpcurl) given a CA, a certificate and a key."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from integrations.client import IntegrationsClient, IntegrationsError, tls_credentials
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from tests.support import postgres
from tests.support.pki import Pair, Pki
from tests.support.process import ServiceProcess
from tests.support.waiting import until

GRPCURL = Path(sys.executable).parent / "grpcurl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def mtls_service(admin_database_url: str, pki: Pki) -> AsyncIterator[ServiceProcess]:
    """The service under mutual TLS; certificate 'billing-svc' acts for tenant billing; an API
    key serves callers whose certificate is not mapped."""
    url = await postgres.create_database(admin_database_url)
    service = ServiceProcess(
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--tls-client-ca",
        str(pki.client_ca),
        "--tls-client-tenants",
        "billing-svc=billing",
        "--api-keys",
        "reports-key-0123456789=reports",
        "--tls-reload-interval",
        "1h",  # only SIGHUP reloads here
        env={"DATABASE_URL": url, "INTEGRATIONS_ENCRYPTION_KEYS": _key()},
    )
    await service.start()
    yield service
    await service.stop()
    await postgres.drop_database(admin_database_url, url)


def _key() -> str:
    import base64

    return "k1:" + base64.b64encode(os.urandom(32)).decode()


def _client(
    service: ServiceProcess, ca: Path, pair: Pair | None, api_key: str | None = None
) -> IntegrationsClient:
    credentials = tls_credentials(
        ca_file=ca, cert_file=pair.cert if pair else None, key_file=pair.key if pair else None
    )
    return IntegrationsClient(
        f"127.0.0.1:{service.port}", credentials=credentials, retries=0, api_key=api_key
    )


async def test_mutual_tls_maps_certificates_to_tenants(
    mtls_service: ServiceProcess, pki: Pki
) -> None:
    async with _client(mtls_service, pki.server_ca, pki.billing) as billing:
        created = await billing.create("Billing calendar", "google_calendar")
        assert [i.id async for i in billing.list()] == [created.id]
    # A valid but unmapped certificate needs an API key: with one it is that key's tenant...
    async with _client(
        mtls_service, pki.server_ca, pki.reports, api_key="reports-key-0123456789"
    ) as other:
        assert [i.id async for i in other.list()] == []
        with pytest.raises(IntegrationsError) as raised:
            await other.get(created.id)
        assert raised.value.code is grpc.StatusCode.NOT_FOUND
    # ...and without one it is refused, saying why.
    async with _client(mtls_service, pki.server_ca, pki.reports) as anonymous:
        with pytest.raises(IntegrationsError) as raised:
            await anonymous.get(created.id)
    assert raised.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.reason == "API_KEY_INVALID"


@pytest.mark.parametrize("who", ["no certificate", "expired", "unknown CA"])
async def test_bad_client_certificates_are_refused(
    mtls_service: ServiceProcess, pki: Pki, who: str
) -> None:
    pair = {"no certificate": None, "expired": pki.expired, "unknown CA": pki.stranger}[who]
    async with _client(mtls_service, pki.server_ca, pair) as client:
        with pytest.raises(IntegrationsError) as raised:
            await client.list_page()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE  # the handshake failed


async def test_a_plaintext_client_is_refused(mtls_service: ServiceProcess) -> None:
    async with IntegrationsClient(f"127.0.0.1:{mtls_service.port}", retries=0) as client:
        with pytest.raises(IntegrationsError) as raised:
            await client.list_page()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE


async def test_cli_and_grpcurl_take_a_ca_a_certificate_and_a_key(
    mtls_service: ServiceProcess, pki: Pki
) -> None:
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin"}
    ctl = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "integrations.cli",
        "--target",
        f"127.0.0.1:{mtls_service.port}",
        "--ca",
        str(pki.server_ca),
        "--cert",
        str(pki.billing.cert),
        "--key",
        str(pki.billing.key),
        "create",
        "From the CLI",
        "ics_feed",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await ctl.communicate()
    assert ctl.returncode == 0, err.decode()
    assert "From the CLI" in out.decode() and "configure" in out.decode()
    # The README's mTLS example, as written there (paths and port aside).
    grpcurl = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-cacert",
        str(pki.server_ca),
        "-cert",
        str(pki.billing.cert),
        "-key",
        str(pki.billing.key),
        f"127.0.0.1:{mtls_service.port}",
        "integrations.v1.IntegrationService/List",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await grpcurl.communicate()
    assert grpcurl.returncode == 0, err.decode()
    assert "From the CLI" in out.decode()


async def test_api_keys_on_a_reachable_plaintext_address_refuse_to_start() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--listen",
        "0.0.0.0:50999",
        "--api-keys",
        "key-0123456789abcdef=tenant",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"clear text" in err and b"--tls-cert" in err and b"--insecure-plaintext" in err


async def test_stub_level_handshake_needs_the_servers_ca(
    mtls_service: ServiceProcess, pki: Pki
) -> None:
    """A client that trusts another CA does not talk to this server (no silent downgrade)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.client_ca.read_bytes(),
        private_key=pki.billing.key.read_bytes(),
        certificate_chain=pki.billing.cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{mtls_service.port}", credentials) as channel:
        stub = service_pb2_grpc.IntegrationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.List(api.ListRequest(), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_sighup_reloads_the_certificate(mtls_service: ServiceProcess, pki: Pki) -> None:
    """Runs last in this module: it changes the server's certificate."""
    renewed_ca = pki.renew_server()
    assert mtls_service.proc is not None
    mtls_service.proc.send_signal(signal.SIGHUP)

    async def new_certificate_served() -> bool:
        async with _client(mtls_service, renewed_ca, pki.billing) as client:
            try:
                await client.list_page()
            except IntegrationsError:
                return False
            return True

    await until(new_certificate_served, "the renewed certificate to be served", timeout=10)
    assert mtls_service.events("tls_reloaded")
    # New connections no longer get the old certificate.
    async with _client(mtls_service, pki.server_ca, pki.billing) as old:
        with pytest.raises(IntegrationsError) as raised:
            await old.list_page()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
