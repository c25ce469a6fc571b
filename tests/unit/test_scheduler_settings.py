"""The scheduler's and the breaker's settings: defaults, parsing, and contradictions refused
at start-up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service import config
from service.config import ConnectorLimits
from service.domain.breaker import BreakerPolicy


def test_defaults() -> None:
    s = config.load([], environ={})
    assert s.scheduler is True
    assert s.scheduler_sweep_interval == timedelta(seconds=5)
    assert (s.sync_concurrency, s.connector_limits) == (16, ConnectorLimits(8))
    assert s.breaker_policy == BreakerPolicy(jitter=0.1)  # the policy's own defaults
    assert s.purpose_header == ""


def test_everything_is_settable_by_env_and_flag() -> None:
    s = config.load(
        ["--breaker-threshold", "3", "--schedule-jitter", "0.5", "--scheduler", "false"],
        environ={
            "INTEGRATIONS_BREAKER_BACKOFF": "2s",
            "INTEGRATIONS_BREAKER_BACKOFF_MAX": "1m",
            "INTEGRATIONS_BREAKER_PROBE_INTERVAL": "10s",
            "INTEGRATIONS_BREAKER_PROBE_INTERVAL_MAX": "5m",
            "INTEGRATIONS_BREAKER_PROBE_TIMEOUT": "3s",
            "INTEGRATIONS_CONNECTOR_CONCURRENCY": "4,google_calendar=2",
        },
    )
    assert s.scheduler is False
    assert s.breaker_policy == BreakerPolicy(
        threshold=3,
        backoff_initial=timedelta(seconds=2),
        backoff_max=timedelta(minutes=1),
        jitter=0.5,
        probe_initial=timedelta(seconds=10),
        probe_max=timedelta(minutes=5),
        probe_timeout=timedelta(seconds=3),
    )
    assert s.connector_limits.of("google_calendar") == 2
    assert s.connector_limits.of("ics_feed") == 4


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("8", ConnectorLimits(8)),
        (" 3 , ics_feed=1 ", ConnectorLimits(3, {"ics_feed": 1})),
        ("google_calendar=2,5", ConnectorLimits(5, {"google_calendar": 2})),
    ],
)
def test_connector_limits(text: str, limits: ConnectorLimits) -> None:
    assert ConnectorLimits.parse(text) == limits


@pytest.mark.parametrize("text", ["", "0", "google_calendar=2", "x=", "=3", "a=b", "-1"])
def test_malformed_connector_limits(text: str) -> None:
    with pytest.raises(ValueError, match="connector concurrency"):
        ConnectorLimits.parse(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--breaker-threshold", "0"], "breaker threshold must be between 1 and 100"),
        (["--breaker-threshold", "101"], "breaker threshold must be between 1 and 100"),
        (["--breaker-backoff", "1h"], "backoff_max must not be shorter than backoff_initial"),
        (["--breaker-probe-interval-max", "1s"], "probe_max must not be shorter"),
        (["--breaker-probe-timeout", "0s"], "probe_timeout must be positive"),
        (["--schedule-jitter", "1.5"], "jitter must be between 0 and 1"),
        (["--scheduler-sweep-interval", "0s"], "sweep interval must be positive"),
        (["--sync-concurrency", "0"], "sync concurrency must be at least 1"),
        (["--connector-concurrency", "x"], "connector concurrency"),
    ],
)
def test_contradictions_are_refused_at_start_up(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        config.load(argv, environ={})
    assert message in capsys.readouterr().err
