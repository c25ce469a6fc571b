"""The transition table, walked pair by pair: what a person can do from each status."""

from __future__ import annotations

import itertools

import pytest

from service.domain.status import (
    TRANSITIONS,
    Action,
    Disallowed,
    Status,
    Trigger,
    allowed_actions,
    mermaid,
    transition,
)

S = Status
T = Trigger

# The whole lifecycle written out independently of the table, so a change to either one is
# caught. None = the integration is deleted; absent = not allowed.
EXPECTED: dict[Status, dict[Trigger, Status | None]] = {
    S.DRAFT: {
        T.CONFIGURE_INCOMPLETE: S.CONFIGURE,
        T.CONFIGURE_COMPLETE: S.TESTING,
        T.CREDENTIALS_SAVED: S.DRAFT,
        T.DELETE: None,
    },
    S.CONFIGURE: {
        T.CONFIGURE_INCOMPLETE: S.CONFIGURE,
        T.CONFIGURE_COMPLETE: S.TESTING,
        T.TEST: S.TESTING,
        T.CREDENTIALS_SAVED: S.CONFIGURE,
        T.REAUTHORIZE: S.TESTING,
        T.DELETE: None,
    },
    S.TESTING: {
        T.CONFIGURE_INCOMPLETE: S.CONFIGURE,
        T.CONFIGURE_COMPLETE: S.TESTING,
        T.TEST: S.TESTING,
        T.REAUTHORIZE: S.TESTING,
        T.SUCCEEDED: S.ACTIVE,
        T.FAILED: S.ERROR,
        T.CONFIG_REJECTED: S.CONFIGURE,
        T.CREDENTIALS_REJECTED: S.DISCONNECTED,
        T.BREAKER_OPENED: S.ERROR,
        T.REACTIVATED: S.ACTIVE,
        T.DELETE: None,
    },
    S.ACTIVE: {
        T.CONFIGURE_INCOMPLETE: S.CONFIGURE,
        T.CONFIGURE_COMPLETE: S.TESTING,
        T.TEST: S.ACTIVE,
        T.SYNC: S.ACTIVE,
        T.SYNC_STOPPED: S.ACTIVE,
        T.PAUSE: S.PAUSED,
        T.REAUTHORIZE: S.TESTING,
        T.SUCCEEDED: S.ACTIVE,
        T.FAILED: S.ERROR,
        T.CONFIG_REJECTED: S.ERROR,
        T.CREDENTIALS_REJECTED: S.DISCONNECTED,
        T.BREAKER_OPENED: S.ERROR,
        T.DELETE: None,
    },
    S.PAUSED: {
        T.CONFIGURE_INCOMPLETE: S.PAUSED,
        T.CONFIGURE_COMPLETE: S.PAUSED,
        T.TEST: S.PAUSED,
        T.RESUME: S.ACTIVE,
        T.RESUME_INCOMPLETE: S.CONFIGURE,
        T.REAUTHORIZE: S.PAUSED,
        T.DELETE: None,
    },
    S.ERROR: {
        T.CONFIGURE_INCOMPLETE: S.CONFIGURE,
        T.CONFIGURE_COMPLETE: S.TESTING,
        T.TEST: S.TESTING,
        T.SYNC: S.ERROR,
        T.SYNC_STOPPED: S.ERROR,
        T.PAUSE: S.PAUSED,
        T.REAUTHORIZE: S.TESTING,
        T.SUCCEEDED: S.ACTIVE,
        T.FAILED: S.ERROR,
        T.CONFIG_REJECTED: S.ERROR,
        T.CREDENTIALS_REJECTED: S.DISCONNECTED,
        T.BREAKER_OPENED: S.ERROR,
        T.REACTIVATED: S.ACTIVE,
        T.PROBE_SUCCEEDED: S.ERROR,
        T.DELETE: None,
    },
    S.DISCONNECTED: {
        T.CONFIGURE_INCOMPLETE: S.DISCONNECTED,
        T.CONFIGURE_COMPLETE: S.DISCONNECTED,
        T.TEST: S.TESTING,
        T.REAUTHORIZE: S.TESTING,
        T.DELETE: None,
    },
}


@pytest.mark.parametrize(
    ("status", "trigger"), list(itertools.product(Status, Trigger)), ids=lambda v: v.value
)
def test_every_status_and_trigger_pair(status: Status, trigger: Trigger) -> None:
    outcome = transition(status, trigger)
    expected = EXPECTED[status]
    if trigger in expected:
        assert outcome == expected[trigger]
    else:
        assert isinstance(outcome, Disallowed)
        assert outcome.current is status
        assert outcome.allowed == allowed_actions(status)


def test_the_table_has_no_rows_beyond_the_expected_ones() -> None:
    expected_rows = {(s, t) for s, rows in EXPECTED.items() for t in rows}
    assert set(TRANSITIONS) == expected_rows


@pytest.mark.parametrize(
    ("status", "actions"),
    [
        (S.DRAFT, (Action.CONFIGURE, Action.REAUTHORIZE, Action.DELETE)),
        (
            S.CONFIGURE,
            (Action.CONFIGURE, Action.TEST_CONNECTION, Action.REAUTHORIZE, Action.DELETE),
        ),
        (
            S.ACTIVE,
            (
                Action.CONFIGURE,
                Action.TEST_CONNECTION,
                Action.SYNC,
                Action.PAUSE,
                Action.REAUTHORIZE,
                Action.DELETE,
            ),
        ),
        (
            S.PAUSED,
            (
                Action.CONFIGURE,
                Action.TEST_CONNECTION,
                Action.RESUME,
                Action.REAUTHORIZE,
                Action.DELETE,
            ),
        ),
        (
            S.ERROR,
            (
                Action.CONFIGURE,
                Action.TEST_CONNECTION,
                Action.SYNC,
                Action.PAUSE,
                Action.REAUTHORIZE,
                Action.DELETE,
            ),
        ),
        (
            S.DISCONNECTED,
            (Action.CONFIGURE, Action.TEST_CONNECTION, Action.REAUTHORIZE, Action.DELETE),
        ),
    ],
)
def test_allowed_actions_per_status(status: Status, actions: tuple[Action, ...]) -> None:
    assert allowed_actions(status) == actions


def test_pulse_pause_and_unpause_only_from_where_they_make_sense() -> None:
    # "You can choose to pause an active integration or un-pause a paused integration."
    assert transition(S.ACTIVE, T.PAUSE) is S.PAUSED
    assert transition(S.PAUSED, T.RESUME) is S.ACTIVE
    assert isinstance(transition(S.PAUSED, T.PAUSE), Disallowed)
    assert isinstance(transition(S.ACTIVE, T.RESUME), Disallowed)


def test_disconnected_is_left_only_by_new_credentials_or_deletion() -> None:
    leaving = {
        t
        for t in Trigger
        if transition(S.DISCONNECTED, t) not in (S.DISCONNECTED,)
        and not isinstance(transition(S.DISCONNECTED, t), Disallowed)
    }
    assert leaving == {T.REAUTHORIZE, T.TEST, T.DELETE}


def test_the_readme_diagram_is_the_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert mermaid() in readme, (
        "README's state diagram is stale: paste `python -m service.domain.status` into it"
    )
