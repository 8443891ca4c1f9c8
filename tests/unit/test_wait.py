"""The one loop that waits for nodes to rest (the CLI's --wait and the demo's phases)."""

from __future__ import annotations

from typing import Any

import pytest

from metalplane.client.wait import WaitTimeout, failed, rests, wait_until_rest


def node(state: str, power: str | None = None) -> dict[str, Any]:
    return {"provision_state": state, "target_power_state": power}


def test_waits_through_transient_and_wait_states_and_power_changes() -> None:
    rounds = [{"a": node("deploying"), "b": node("available")},
              {"a": node("wait call-back"), "b": node("available")},
              {"a": node("active", "power on"), "b": node("available")},
              {"a": node("active"), "b": node("deploy failed")}]
    shown: list[dict[str, Any]] = []
    last = wait_until_rest(lambda: rounds.pop(0), timeout=60, interval=0, show=shown.append)
    assert last == {"a": node("active"), "b": node("deploy failed")}
    assert len(shown) == 4 and rounds == []
    assert [n for n, d in last.items() if failed(d)] == ["b"]


def test_gives_up_after_the_timeout_with_the_last_round() -> None:
    with pytest.raises(WaitTimeout) as err:
        wait_until_rest(lambda: {"a": node("cleaning"), "b": node("manageable")},
                        timeout=0, interval=0)
    assert [n for n, d in err.value.nodes.items() if not rests(d)] == ["a"]
