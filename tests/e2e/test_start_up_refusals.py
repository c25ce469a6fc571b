"""A careless operator's settings stop `python -m service` at once, with one line saying what
is wrong, before anything starts: no embedded PostgreSQL, no socket, no traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest


async def start(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("INTEGRATIONS_") and k != "DATABASE_URL"
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        *args,
        env={**inherited, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {"INTEGRATIONS_API_KEYS": ","}, "entry 1 is empty"),
        ((), {"INTEGRATIONS_API_KEYS": "   "}, "spaces"),
        (("--api-keys", "ka-0123456789abcdef=a;kb-0123456789abcdef=b"), {}, "';'"),
        ((), {}, "INTEGRATIONS_ALLOW_UNAUTHENTICATED"),
        ((), {"INTEGRATIONS_ENCRYPTION_KEYS": "k1:not-base64!"}, "base64"),
    ],
)
async def test_bad_settings_stop_the_start_with_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    code, err = await start(tmp_path, *args, env=env)
    assert code == 2
    assert err.count("\n") == 1, err
    assert says in err and "Traceback" not in err
    assert not any(os.scandir(tmp_path))  # the embedded PostgreSQL was never started
