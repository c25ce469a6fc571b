"""Settings: env vars, flags winning over them, and clear errors for bad values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service import config


def test_defaults_suit_a_laptop() -> None:
    s = config.load([], environ={})
    assert s.listen == "127.0.0.1:50051"
    assert s.database_url == ""
    assert s.default_sync_interval == timedelta(minutes=15)


def test_env_then_flags() -> None:
    env = {"INTEGRATIONS_MIN_SYNC_INTERVAL": "30s", "INTEGRATIONS_LISTEN": "0.0.0.0:1"}
    s = config.load(["--listen", "127.0.0.1:2"], environ=env)
    assert s.min_sync_interval == timedelta(seconds=30)
    assert s.listen == "127.0.0.1:2"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("250ms", 0.25)]
)
def test_durations(text: str, seconds: float) -> None:
    assert config.parse_duration(text).total_seconds() == seconds


def test_bad_values_exit_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config.load(["--min-sync-interval", "soon"], environ={})
    assert "not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config.load(["--min-sync-interval", "2h", "--max-sync-interval", "1h"], environ={})
    with pytest.raises(SystemExit):
        config.load(["--log-level", "verbose"], environ={})
    assert "log level must be debug, info, warning or error" in capsys.readouterr().err
