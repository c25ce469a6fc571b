"""Certificates renewed on disk while the service runs, as a process: the new one is served
without a restart or a signal, a broken file keeps the one in use, and the expiry gauge tells
which one that is. Without TLS the gauge has no value at all; plaintext with API keys on a
reachable address starts only when asked to, and then says so loudly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from integrations.client import IntegrationsClient, IntegrationsError, tls_credentials
from prometheus_client.parser import text_string_to_metric_families

from tests.support.pki import Pki
from tests.support.process import ServiceProcess
from tests.support.waiting import until

EXPIRY = "integrations_tls_certificate_expiry_timestamp_seconds"


@pytest.fixture
async def tls_service(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, Pki]]:
    """TLS (not mutual), the files checked for changes every 100 ms, metrics on."""
    pki = Pki.create(tmp_path / "pki")
    service = ServiceProcess(
        "--tls-cert", str(pki.server.cert),
        "--tls-key", str(pki.server.key),
        "--tls-reload-interval", "100ms",
        "--ops-listen", "127.0.0.1:0",
        env={"DATABASE_URL": database_url},
    )  # fmt: skip
    await service.start()
    yield service, pki
    await service.stop()


async def serves(service: ServiceProcess, ca: Path) -> bool:
    """Whether a client trusting only `ca` gets an answer (its handshake succeeds)."""
    client = IntegrationsClient(
        f"127.0.0.1:{service.port}", credentials=tls_credentials(ca_file=ca), retries=0
    )
    async with client:
        try:
            await client.list_page()
        except IntegrationsError:
            return False
        return True


async def expiry_samples(service: ServiceProcess) -> list[float]:
    """The values the expiry gauge exports (none, or one)."""
    [event] = service.events("ops_serving")
    async with aiohttp.ClientSession() as http, http.get(f"{event['url']}/metrics") as resp:
        text = await resp.text()
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == EXPIRY
    ]


def not_after(cert: Path) -> float:
    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp()


async def test_a_certificate_replaced_on_disk_is_served_without_a_restart(
    tls_service: tuple[ServiceProcess, Pki],
) -> None:
    service, pki = tls_service
    assert await serves(service, pki.server_ca)
    assert await expiry_samples(service) == [not_after(pki.server.cert)]

    renewal = datetime(2031, 6, 1, tzinfo=UTC)
    renewed_ca = pki.renew_server(not_after=renewal)  # no SIGHUP: the watcher notices

    async def renewed_served() -> bool:
        return await serves(service, renewed_ca)

    await until(renewed_served, "the renewed certificate to be served", timeout=10)
    assert service.events("tls_reloaded")
    assert not await serves(service, pki.server_ca)  # new connections get the new one only
    assert await expiry_samples(service) == [renewal.timestamp()]


async def test_a_broken_file_keeps_the_certificate_in_use(
    tls_service: tuple[ServiceProcess, Pki],
) -> None:
    service, pki = tls_service
    in_use = not_after(pki.server.cert)
    # A renewal gone wrong: the certificate file is not PEM any more (the key is unchanged).
    pki.server.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nhalf written\n")

    failed = await until(
        lambda: service.events("tls_reload_failed"), "the reload to fail", timeout=10
    )
    assert failed[0]["level"] in ("warning", "error")
    assert str(pki.server.cert) in str(failed[0]["error"])
    assert not service.events("tls_reloaded")
    # Still serving, with the certificate it had, and the gauge says which.
    assert await serves(service, pki.server_ca)
    assert await expiry_samples(service) == [in_use]
    assert service.proc is not None and service.proc.returncode is None


async def test_without_tls_the_certificate_expiry_is_absent(database_url: str) -> None:
    service = ServiceProcess("--ops-listen", "127.0.0.1:0", env={"DATABASE_URL": database_url})
    await service.start()
    try:
        # Absent, not 0: a dashboard's min() or an expiry alert must not see a 1970 date.
        assert await expiry_samples(service) == []
    finally:
        await service.stop()


async def test_insecure_plaintext_starts_with_a_loud_warning(database_url: str) -> None:
    # A wildcard address is what other machines could reach; the test talks over loopback.
    service = ServiceProcess(
        "--listen", "0.0.0.0:0",
        "--api-keys", "ops-key-0123456789abcdef=ops",
        "--insecure-plaintext", "true",
        env={"DATABASE_URL": database_url},
    )  # fmt: skip
    await service.start()
    try:
        [warning] = service.events("insecure_plaintext")
        assert warning["level"] == "warning"
        assert "API KEYS TRAVEL IN CLEAR TEXT" in str(warning["message"])
        assert warning["listen"] == "0.0.0.0:0"
        assert "ops-key-0123456789abcdef" not in str(service.log_lines)
        client = IntegrationsClient(
            f"127.0.0.1:{service.port}", api_key="ops-key-0123456789abcdef", retries=0
        )
        async with client:
            assert await client.list_page() == ([], "")
    finally:
        await service.stop()
