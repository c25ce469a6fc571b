"""Log output never carries the local variables of a failing frame (they may be secrets)."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets

import pytest
import structlog

from service import logs


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_exception_does_not_show_locals(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(fmt, "info")
    canary = f"canary-{secrets.token_hex(8)}"  # made at run time: source lines are printed
    try:

        def connect(password: str) -> None:
            raise ConnectionError("refused")

        try:
            connect(canary)
        except ConnectionError:
            structlog.get_logger("t").exception("connect_failed")
        err = capsys.readouterr().err
        assert "connect_failed" in err and "ConnectionError" in err
        assert canary not in err
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_a_json_line_shows_a_logged_object_by_its_repr(capsys: pytest.CaptureFixture[str]) -> None:
    # orjson renders JSON lines; left to itself it would write every field of a dataclass,
    # the ones its repr hides (a token) among them.
    @dataclasses.dataclass
    class Grant:
        account: str
        token: str = dataclasses.field(repr=False)

    logs.configure("json", "info")
    canary = f"canary-{secrets.token_hex(8)}"
    try:
        structlog.get_logger("t").info("granted", grant=Grant("alice", canary), count=2)
        logging.getLogger("lib").warning("a library's record")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert lines[0]["grant"].endswith("Grant(account='alice')")
        assert canary not in str(lines)
        assert (lines[0]["count"], lines[1]["event"]) == (2, "a library's record")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
