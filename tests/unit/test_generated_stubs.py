"""The committed Python stubs are what `make proto` generates from protos/ today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").rglob("*.proto"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iprotos",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    generated = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py*")}
    assert generated, "protoc generated nothing"
    stale = [
        str(path)
        for path, content in generated.items()
        if (ROOT / "clients" / path).read_bytes() != content
    ]
    assert not stale, f"stale generated stubs (run `make proto`): {stale}"
