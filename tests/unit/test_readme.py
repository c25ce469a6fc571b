"""The README is what a newcomer reads first; keep the parts that can drift checked."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from integrations.cli.exits import ExitCode

from service.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for f in fields(Settings):
        row = f"| `{f.metadata['env']}` | `{f.metadata['flag']}` |"
        assert row in README, f"README's configuration table lacks {f.metadata['env']}"


def test_the_two_commands_come_first() -> None:
    assert README.index("make run") < README.index("## Trying it")
    assert README.index("make test") < README.index("## Trying it")


def test_the_exit_code_table_is_the_clis() -> None:
    table = README[README.index("| exit code | meaning |") :].split("\n\n")[0]
    documented = [int(row.split("|")[1]) for row in table.splitlines()[2:]]
    assert documented == [code.value for code in ExitCode]
