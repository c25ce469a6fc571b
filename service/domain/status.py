"""The integration lifecycle: statuses, what moves between them, and the transition table.

The table is data: one row per (status, trigger). Code asks `transition(status, trigger)`;
the README's state diagram is printed from the same table (`python -m service.domain.status`),
and a test keeps the two in step. Pure Python, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Status(enum.Enum):
    """Where an integration is in its life (Aura's seven statuses)."""

    DRAFT = "DRAFT"
    CONFIGURE = "CONFIGURE"
    TESTING = "TESTING"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ERROR = "ERROR"
    DISCONNECTED = "DISCONNECTED"


class SyncState(enum.Enum):
    """The sub-state of an ACTIVE integration (Pulse's "synced")."""

    SYNCED = "SYNCED"
    SYNCING = "SYNCING"


class Action(enum.Enum):
    """What a person (or a calling service) asks for; each is one RPC."""

    CONFIGURE = "Configure"
    TEST_CONNECTION = "TestConnection"
    SYNC = "Sync"
    PAUSE = "Pause"
    RESUME = "Resume"
    REAUTHORIZE = "Reauthorize"
    DELETE = "Delete"


class Trigger(enum.Enum):
    """Everything that can move an integration: people's actions and the outcomes of work."""

    CONFIGURE_INCOMPLETE = "configure_incomplete"  # a config was saved with required fields missing
    CONFIGURE_COMPLETE = "configure_complete"  # a complete config was saved: verify it
    TEST = "test"  # a connection test starts
    SYNC = "sync"  # a sync run starts
    SYNC_STOPPED = "sync_stopped"  # a sync run stopped unfinished (shutdown): no longer SYNCING
    PAUSE = "pause"
    RESUME = "resume"  # resumed with a complete config
    RESUME_INCOMPLETE = "resume_incomplete"  # resumed, but the config needs completing first
    REAUTHORIZE = "reauthorize"  # new credentials arrived: verify them
    CREDENTIALS_SAVED = "credentials_saved"  # signed in during setup: verified once configured
    SUCCEEDED = "succeeded"  # a test, sync or probe worked
    FAILED = "failed"  # a classified failure that leaves the integration in ERROR
    CONFIG_REJECTED = "config_rejected"  # the provider does not know the configured resource
    CREDENTIALS_REJECTED = "credentials_rejected"  # credentials revoked or no longer valid
    BREAKER_OPENED = "breaker_opened"  # too many consecutive failures: auto-pause
    REACTIVATED = "reactivated"  # a success closed the open breaker: back to work by itself
    PROBE_SUCCEEDED = "probe_succeeded"  # a probe passed while braked: a trial sync is due
    DELETE = "delete"


#: The action each user-facing trigger belongs to (for "allowed actions" in errors).
ACTION_OF: dict[Trigger, Action] = {
    Trigger.CONFIGURE_INCOMPLETE: Action.CONFIGURE,
    Trigger.CONFIGURE_COMPLETE: Action.CONFIGURE,
    Trigger.TEST: Action.TEST_CONNECTION,
    Trigger.SYNC: Action.SYNC,
    Trigger.PAUSE: Action.PAUSE,
    Trigger.RESUME: Action.RESUME,
    Trigger.RESUME_INCOMPLETE: Action.RESUME,
    Trigger.REAUTHORIZE: Action.REAUTHORIZE,
    Trigger.CREDENTIALS_SAVED: Action.REAUTHORIZE,
    Trigger.DELETE: Action.DELETE,
}

D, C, T, A, P, E, X = (
    Status.DRAFT,
    Status.CONFIGURE,
    Status.TESTING,
    Status.ACTIVE,
    Status.PAUSED,
    Status.ERROR,
    Status.DISCONNECTED,
)

#: The whole lifecycle. `None` as a target means the integration is gone.
#: Notes on the less obvious rows:
#: - Configuring a PAUSED integration saves the config and keeps it paused (pausing is a
#:   person's decision); Resume then verifies it. A DISCONNECTED one stays so until Reauthorize.
#: - TEST on ACTIVE or PAUSED does not pass through TESTING: the integration stays operational
#:   (or paused) while it is checked; on PAUSED the test only reports.
#: - Signing in is how a Google integration's setup usually starts ("Sign in", then pick the
#:   calendar): while the config is incomplete the credentials are only saved
#:   (CREDENTIALS_SAVED); completing the config then verifies them.
#: - CONFIG_REJECTED during the first verification sends the user back to CONFIGURE (fix the
#:   id); the same 404 on a working integration is an ERROR to be fixed and retried.
#: - BREAKER_OPENED is the failure that reaches the breaker's threshold (one event, not FAILED
#:   then BREAKER_OPENED); with a threshold of 1 that can be the first failure of an ACTIVE or
#:   TESTING integration. REACTIVATED is the success (trial sync, test, sync) that closes it;
#:   a probe's success is PROBE_SUCCEEDED: still braked until the trial sync succeeds.
TRANSITIONS: dict[tuple[Status, Trigger], Status | None] = {
    (D, Trigger.CONFIGURE_INCOMPLETE): C,
    (C, Trigger.CONFIGURE_INCOMPLETE): C,
    (T, Trigger.CONFIGURE_INCOMPLETE): C,
    (A, Trigger.CONFIGURE_INCOMPLETE): C,
    (E, Trigger.CONFIGURE_INCOMPLETE): C,
    (P, Trigger.CONFIGURE_INCOMPLETE): P,
    (X, Trigger.CONFIGURE_INCOMPLETE): X,
    (D, Trigger.CONFIGURE_COMPLETE): T,
    (C, Trigger.CONFIGURE_COMPLETE): T,
    (T, Trigger.CONFIGURE_COMPLETE): T,
    (A, Trigger.CONFIGURE_COMPLETE): T,
    (E, Trigger.CONFIGURE_COMPLETE): T,
    (P, Trigger.CONFIGURE_COMPLETE): P,
    (X, Trigger.CONFIGURE_COMPLETE): X,
    (C, Trigger.TEST): T,
    (T, Trigger.TEST): T,
    (A, Trigger.TEST): A,
    (P, Trigger.TEST): P,
    (E, Trigger.TEST): T,
    (X, Trigger.TEST): T,
    (A, Trigger.SYNC): A,
    (E, Trigger.SYNC): E,
    (A, Trigger.SYNC_STOPPED): A,
    (E, Trigger.SYNC_STOPPED): E,
    (A, Trigger.PAUSE): P,
    (E, Trigger.PAUSE): P,
    (P, Trigger.RESUME): A,
    (P, Trigger.RESUME_INCOMPLETE): C,
    (D, Trigger.CREDENTIALS_SAVED): D,
    (C, Trigger.CREDENTIALS_SAVED): C,
    (C, Trigger.REAUTHORIZE): T,
    (A, Trigger.REAUTHORIZE): T,
    (T, Trigger.REAUTHORIZE): T,
    (E, Trigger.REAUTHORIZE): T,
    (X, Trigger.REAUTHORIZE): T,
    (P, Trigger.REAUTHORIZE): P,
    (T, Trigger.SUCCEEDED): A,
    (A, Trigger.SUCCEEDED): A,
    (E, Trigger.SUCCEEDED): A,
    (T, Trigger.FAILED): E,
    (A, Trigger.FAILED): E,
    (E, Trigger.FAILED): E,
    (T, Trigger.CONFIG_REJECTED): C,
    (A, Trigger.CONFIG_REJECTED): E,
    (E, Trigger.CONFIG_REJECTED): E,
    (T, Trigger.CREDENTIALS_REJECTED): X,
    (A, Trigger.CREDENTIALS_REJECTED): X,
    (E, Trigger.CREDENTIALS_REJECTED): X,
    (T, Trigger.BREAKER_OPENED): E,
    (A, Trigger.BREAKER_OPENED): E,
    (E, Trigger.BREAKER_OPENED): E,
    (T, Trigger.REACTIVATED): A,
    (E, Trigger.REACTIVATED): A,
    (E, Trigger.PROBE_SUCCEEDED): E,
    **{(s, Trigger.DELETE): None for s in Status},
}


#: What to do instead, when the table does not allow an action from a status (shown with
#: FAILED_PRECONDITION beside the allowed actions).
HINTS: dict[tuple[Action, Status], str] = {
    (Action.SYNC, Status.PAUSED): "Resume it: it continues from where it left off.",
    (
        Action.SYNC,
        Status.DISCONNECTED,
    ): "Its credentials are no longer valid: Reauthorize it first.",
    (Action.SYNC, Status.DRAFT): "Configure it first.",
    (Action.SYNC, Status.CONFIGURE): "Complete its configuration with Configure first.",
    (Action.SYNC, Status.TESTING): "Its connection is being verified; sync once it is ACTIVE.",
    (Action.TEST_CONNECTION, Status.DRAFT): "Configure it first: there is nothing to test yet.",
}


@dataclass(frozen=True)
class Disallowed:
    """Why a trigger cannot apply: where the integration is and what it could do instead."""

    current: Status
    trigger: Trigger
    allowed: tuple[Action, ...]


def transition(current: Status, trigger: Trigger) -> Status | Disallowed | None:
    """The status `trigger` leads to from `current` (None: deleted), or why it cannot."""
    key = (current, trigger)
    if key in TRANSITIONS:
        return TRANSITIONS[key]
    return Disallowed(current, trigger, allowed_actions(current))


def _actions_from(current: Status) -> tuple[Action, ...]:
    present = {ACTION_OF[t] for (s, t) in TRANSITIONS if s is current and t in ACTION_OF}
    return tuple(a for a in Action if a in present)


# Derived once: every response and watch message shows an integration's allowed actions.
_ALLOWED = {status: _actions_from(status) for status in Status}


def allowed_actions(current: Status) -> tuple[Action, ...]:
    """The user actions the table allows from `current`, in a stable order."""
    return _ALLOWED[current]


def mermaid(rows: Iterable[tuple[tuple[Status, Trigger], Status | None]] = ()) -> str:
    """The state diagram of the table in Mermaid syntax (self-loops left out for legibility)."""
    lines = ["stateDiagram-v2", "    [*] --> DRAFT: Create"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (source, trigger), target in rows or TRANSITIONS.items():
        if target is source:
            continue
        to = "[*]" if target is None else target.value
        edges.setdefault((source.value, to), []).append(trigger.value)
    for (source_name, to), triggers in edges.items():
        lines.append(f"    {source_name} --> {to}: {', '.join(triggers)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(mermaid())
