"""The provision state machine: Ironic's states and verbs as one declarative table.

A row ``(source, event, destination)`` says that ``event`` moves a node from ``source`` to
``destination``. Events are either *verbs* a user sends to
``PUT /v1/nodes/{node}/states/provision`` (manage, provide, inspect, clean, deploy, rebuild,
undeploy, abort, adopt) or internal events the conductor fires while it works (done, wait,
resume, fail). A verb entering a transient state also sets ``target_provision_state``.
This module holds no I/O and no locking; :mod:`metalplane.conductor` applies it.
Source: Ironic's ``ironic/common/states.py`` (same state names, same verbs).
"""

from __future__ import annotations

import dataclasses

from metalplane.common.exceptions import InvalidStateRequested

__all__ = [
    "FAILED_STATES",
    "MAKE_SAFE_STATES",
    "STABLE_STATES",
    "TRANSITIONS",
    "VERBS",
    "WAIT_STATES",
    "Transition",
    "allowed_verbs",
    "next_state",
]

# Stable states: a node rests here until someone sends a verb.
ENROLL = "enroll"
MANAGEABLE = "manageable"
AVAILABLE = "available"
ACTIVE = "active"
ERROR = "error"
# Transient states: the conductor is working on the node.
VERIFYING = "verifying"
INSPECTING = "inspecting"
CLEANING = "cleaning"
DEPLOYING = "deploying"
DELETING = "deleting"
ADOPTING = "adopting"
# Wait states: the conductor waits for the node (its agent) to call back.
INSPECT_WAIT = "inspect wait"
CLEAN_WAIT = "clean wait"
DEPLOY_WAIT = "wait call-back"
# Failed states.
INSPECT_FAILED = "inspect failed"
CLEAN_FAILED = "clean failed"
DEPLOY_FAILED = "deploy failed"
ADOPT_FAILED = "adopt failed"

STABLE_STATES = frozenset({ENROLL, MANAGEABLE, AVAILABLE, ACTIVE, ERROR})
WAIT_STATES = frozenset({INSPECT_WAIT, CLEAN_WAIT, DEPLOY_WAIT})
TRANSIENT_STATES = frozenset({VERIFYING, INSPECTING, CLEANING, DEPLOYING, DELETING, ADOPTING})
FAILED_STATES = frozenset({INSPECT_FAILED, CLEAN_FAILED, DEPLOY_FAILED, ADOPT_FAILED, ERROR})
# States a user may leave a node in, i.e. not in the middle of anything.
RESTING_STATES = STABLE_STATES | FAILED_STATES
# The states of the flows that boot the ramdisk or touch the networks: a failure or an abort
# in one of them leaves the node powered off, off the provider networks, with no agent token.
MAKE_SAFE_STATES = frozenset({INSPECTING, INSPECT_WAIT, CLEANING, CLEAN_WAIT, DEPLOYING,
                             DEPLOY_WAIT, DELETING})

# User verbs (the API's "target" values); "active"/"deleted" are Ironic's older spellings.
VERBS = ("manage", "provide", "inspect", "clean", "deploy", "rebuild", "undeploy", "abort",
         "adopt")
VERB_ALIASES = {"active": "deploy", "deleted": "undeploy"}
# Internal events fired by the conductor.
EVENTS = ("done", "wait", "resume", "fail")


@dataclasses.dataclass(frozen=True)
class Transition:
    """One row of the table. ``target`` is the stable state the work aims at, if any."""

    source: str
    event: str
    dest: str
    target: str | None = None


T = Transition
TRANSITIONS: tuple[Transition, ...] = (
    # enroll -> manageable: the conductor checks it can talk to the BMC.
    T(ENROLL, "manage", VERIFYING, MANAGEABLE),
    T(VERIFYING, "done", MANAGEABLE),
    T(VERIFYING, "fail", ENROLL),
    # inspection, in-band (wait for the agent) or out-of-band (done at once).
    T(MANAGEABLE, "inspect", INSPECTING, MANAGEABLE),
    T(INSPECTING, "done", MANAGEABLE),
    T(INSPECTING, "wait", INSPECT_WAIT, MANAGEABLE),
    T(INSPECTING, "fail", INSPECT_FAILED),
    T(INSPECT_WAIT, "done", MANAGEABLE),
    T(INSPECT_WAIT, "fail", INSPECT_FAILED),
    T(INSPECT_WAIT, "abort", INSPECT_FAILED),
    T(INSPECT_FAILED, "inspect", INSPECTING, MANAGEABLE),
    T(INSPECT_FAILED, "manage", MANAGEABLE),
    # cleaning: automated (provide -> available) or manual (clean -> manageable).
    T(MANAGEABLE, "provide", CLEANING, AVAILABLE),
    T(MANAGEABLE, "clean", CLEANING, MANAGEABLE),
    T(CLEANING, "done", AVAILABLE),  # the conductor goes to target_provision_state instead
    T(CLEANING, "wait", CLEAN_WAIT),
    T(CLEANING, "fail", CLEAN_FAILED),
    T(CLEAN_WAIT, "resume", CLEANING),
    T(CLEAN_WAIT, "done", AVAILABLE),
    T(CLEAN_WAIT, "fail", CLEAN_FAILED),
    T(CLEAN_WAIT, "abort", CLEAN_FAILED),
    T(CLEAN_FAILED, "manage", MANAGEABLE),
    T(AVAILABLE, "manage", MANAGEABLE),
    # deployment.
    T(AVAILABLE, "deploy", DEPLOYING, ACTIVE),
    T(DEPLOYING, "done", ACTIVE),
    T(DEPLOYING, "wait", DEPLOY_WAIT, ACTIVE),
    T(DEPLOYING, "fail", DEPLOY_FAILED),
    T(DEPLOY_WAIT, "resume", DEPLOYING, ACTIVE),
    T(DEPLOY_WAIT, "done", ACTIVE),
    T(DEPLOY_WAIT, "fail", DEPLOY_FAILED),
    T(DEPLOY_WAIT, "abort", DEPLOY_FAILED),
    T(DEPLOY_WAIT, "undeploy", DELETING, AVAILABLE),
    T(DEPLOY_FAILED, "deploy", DEPLOYING, ACTIVE),
    T(DEPLOY_FAILED, "rebuild", DEPLOYING, ACTIVE),
    T(DEPLOY_FAILED, "undeploy", DELETING, AVAILABLE),
    T(ACTIVE, "rebuild", DEPLOYING, ACTIVE),
    # undeploy: tear down, then clean, then available.
    T(ACTIVE, "undeploy", DELETING, AVAILABLE),
    T(DELETING, "done", CLEANING, AVAILABLE),
    T(DELETING, "fail", ERROR),
    T(ERROR, "rebuild", DEPLOYING, ACTIVE),
    T(ERROR, "undeploy", DELETING, AVAILABLE),
    # adoption of a node already running its OS (Metal3's externallyProvisioned).
    T(MANAGEABLE, "adopt", ADOPTING, ACTIVE),
    T(ADOPTING, "done", ACTIVE),
    T(ADOPTING, "fail", ADOPT_FAILED),
    T(ADOPT_FAILED, "adopt", ADOPTING, ACTIVE),
    T(ADOPT_FAILED, "manage", MANAGEABLE),
)

_INDEX: dict[tuple[str, str], Transition] = {}
for _t in TRANSITIONS:
    if (_t.source, _t.event) in _INDEX:  # pragma: no cover - a table bug, caught at import
        raise RuntimeError(f"duplicate transition {_t.source!r} --{_t.event}-->")
    _INDEX[(_t.source, _t.event)] = _t

ALL_STATES = frozenset({t.source for t in TRANSITIONS} | {t.dest for t in TRANSITIONS})


def normalize_verb(verb: str) -> str:
    """Map Ironic's older verb spellings ("active", "deleted") to the current ones."""
    return VERB_ALIASES.get(verb, verb)


def allowed_verbs(state: str) -> list[str]:
    """The user verbs accepted in ``state``, in table order."""
    return [t.event for t in TRANSITIONS if t.source == state and t.event in VERBS]


def next_state(state: str, event: str) -> Transition:
    """The transition ``event`` takes from ``state``.

    Raises :class:`InvalidStateRequested` (HTTP 400) naming the verbs allowed in ``state``.
    """
    event = normalize_verb(event)
    try:
        return _INDEX[(state, event)]
    except KeyError:
        if event in VERBS:
            allowed = allowed_verbs(state)
            where = ", ".join(allowed) if allowed else "none (the node is busy; wait or abort)"
            raise InvalidStateRequested(
                f"The requested action '{event}' cannot be performed on a node in state "
                f"'{state}'. Allowed verbs in '{state}': {where}"
            ) from None
        raise InvalidStateRequested(
            f"internal event {event!r} is not valid in state {state!r}") from None


def timeout_setting(state: str) -> str | None:
    """The Settings field holding the timeout of wait state ``state``, if it has one."""
    return {
        INSPECT_WAIT: "inspect_wait_timeout",
        CLEAN_WAIT: "clean_callback_timeout",
        DEPLOY_WAIT: "deploy_callback_timeout",
    }.get(state)
