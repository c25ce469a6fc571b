"""`make demo` as a newcomer runs it: `python -m sandbox.walkthrough` starts the service and the
sandbox, syncs a calendar, breaks the provider and watches the integration recover by itself.
When something goes wrong it says what, with the service's own last log lines."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

#: The walkthrough's headlines, in the order the story tells them.
STEPS = (
    "starting the service",
    "Created and tested; now: integrationsctl sync --wait",
    "The live watch",
    "The provider breaks",
    "The safety brake is on",
    "The provider recovers",
    "Reactivated by itself",
)


async def walkthrough(*args: str, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.walkthrough",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"the walkthrough did not finish within {timeout:.0f}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    code, out, err = await walkthrough(
        "--data-dir", str(tmp_path / "demo"),
        "--ops-listen", "127.0.0.1:0",
        "--broken-for", "0",
        "--timeout", "30",
    )  # fmt: skip
    assert code == 0, f"{out}\n{err}"
    positions = [out.find(step) for step in STEPS]
    assert -1 not in positions, f"missing steps in:\n{out}"
    assert positions == sorted(positions)
    # The metrics address is the one the service really bound, not the :0 it was given.
    metrics = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", out)
    assert metrics is not None and int(metrics.group(1)) > 0, out
    # The live watch showed the failure, the brake and the recovery as they happened.
    broken, recovered = out.index("The provider breaks"), out.index("The provider recovers")
    assert "error: service unavailable" in out[broken:recovered]
    assert "brake on" in out[broken:recovered]
    assert "reactivated:" in out[recovered:]
    assert "sync run" in out and "succeeded" in out[recovered:]
    assert "late: late:" not in out  # a trigger and its reason, not the trigger twice


async def test_a_service_that_cannot_start_fails_the_demo_with_its_own_words(
    tmp_path: Path,
) -> None:
    code, _out, err = await walkthrough(
        "--data-dir", str(tmp_path / "demo"), "--ops-listen", "127.0.0.1:nope", timeout=30
    )
    assert code == 1
    assert "the demo failed: the service did not start (exit code 2)" in err
    # The service's stderr, otherwise hidden, explains why.
    assert "ops listen address must be host:port or off" in err
    assert "Traceback" not in err
