"""The provision state table, checked as a whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalplane.common.exceptions import InvalidStateRequested
from metalplane.lifecycle import diagram, states


def test_every_transient_and_wait_state_can_fail() -> None:
    for state in states.TRANSIENT_STATES | states.WAIT_STATES:
        assert states.next_state(state, "fail").dest in states.FAILED_STATES | {states.ENROLL}


def test_every_wait_state_has_a_timeout_and_an_abort() -> None:
    for state in states.WAIT_STATES:
        assert states.timeout_setting(state)
        assert states.next_state(state, "abort").dest in states.FAILED_STATES


def test_every_state_is_reachable_from_enroll() -> None:
    seen, todo = {states.ENROLL}, [states.ENROLL]
    while todo:
        s = todo.pop()
        for t in states.TRANSITIONS:
            if t.source == s and t.dest not in seen:
                seen.add(t.dest)
                todo.append(t.dest)
    assert seen == states.ALL_STATES


def test_verbs_entering_work_set_a_target() -> None:
    for t in states.TRANSITIONS:
        if t.event in states.VERBS and t.dest in states.TRANSIENT_STATES:
            assert t.target in states.STABLE_STATES, t


def test_ironic_lifecycle_path() -> None:
    path = [("enroll", "manage", "verifying"), ("verifying", "done", "manageable"),
            ("manageable", "inspect", "inspecting"), ("inspecting", "done", "manageable"),
            ("manageable", "provide", "cleaning"), ("cleaning", "done", "available"),
            ("available", "deploy", "deploying"), ("deploying", "wait", "wait call-back"),
            ("wait call-back", "resume", "deploying"), ("deploying", "done", "active"),
            ("active", "undeploy", "deleting"), ("deleting", "done", "cleaning")]
    for source, event, dest in path:
        assert states.next_state(source, event).dest == dest


def test_old_verb_spellings() -> None:
    assert states.next_state("available", "active").dest == "deploying"
    assert states.next_state("active", "deleted").dest == "deleting"


@pytest.mark.parametrize(("state", "verb"), [("enroll", "deploy"), ("active", "provide"),
                                             ("deploying", "undeploy")])
def test_invalid_verb_names_allowed_ones(state: str, verb: str) -> None:
    with pytest.raises(InvalidStateRequested) as err:
        states.next_state(state, verb)
    assert err.value.code == 400  # Ironic's InvalidStateRequested
    for allowed in states.allowed_verbs(state):
        assert allowed in err.value.message
    if not states.allowed_verbs(state):
        assert "busy" in err.value.message


def test_state_diagram_in_docs_is_current() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "states.md"
    assert doc.read_text() == diagram.render()
    for t in states.TRANSITIONS:
        assert f"| {t.source} |" in diagram.render()
