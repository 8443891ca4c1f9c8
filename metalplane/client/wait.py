"""Waiting until nodes rest: the one polling loop behind the CLI's ``--wait`` and the
demo's phases.

What each caller fetches (the CLI asks per node, often one of many; the demo lists its
own nodes in one call), how it shows progress and what counts as success differ and stay
with the caller; when a node rests, and the bounded loop, are here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from metalplane.lifecycle.states import FAILED_STATES, RESTING_STATES

__all__ = ["WaitTimeout", "failed", "rests", "wait_until_rest"]

Nodes = dict[str, dict[str, Any]]


class WaitTimeout(Exception):
    """Not every node rested in time; ``nodes``: the last round polled."""

    def __init__(self, timeout: float, nodes: Nodes) -> None:
        super().__init__(f"timed out after {timeout:.0f} s")
        self.nodes = nodes


def rests(node: dict[str, Any]) -> bool:
    """The node is in a resting state (stable or failed) with no power change pending."""
    return node["provision_state"] in RESTING_STATES and not node.get("target_power_state")


def failed(node: dict[str, Any]) -> bool:
    return node["provision_state"] in FAILED_STATES


def wait_until_rest(poll: Callable[[], Nodes], timeout: float, interval: float,
                    show: Callable[[Nodes], None] = lambda nodes: None) -> Nodes:
    """Call ``poll`` (``{name: node}``) every ``interval`` s, ``show`` each round, until
    every node :func:`rests`; return the last round.

    Raises :class:`WaitTimeout` after ``timeout`` s; errors of ``poll`` pass through."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = poll()
        show(nodes)
        if all(rests(d) for d in nodes.values()):
            return nodes
        if time.monotonic() > deadline:
            raise WaitTimeout(timeout, nodes)
        time.sleep(interval)
