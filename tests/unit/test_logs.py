"""Log output never carries the local variables of a failing frame (they may be secrets)."""

from __future__ import annotations

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
