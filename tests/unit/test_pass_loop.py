"""PassLoop: a pass is skipped while nothing it reads changed, but not past the resync."""

from __future__ import annotations

import contextlib
import time

from metalplane.conductor.pass_loop import PassLoop


def _loop(resync: float) -> tuple[PassLoop, list[int], list[int]]:
    world = [0]  # the fingerprint's value
    runs: list[int] = []

    def one_pass() -> int:
        runs.append(world[0])
        return 3

    loop = PassLoop("t", one_pass, 0.01, "test pass", fingerprint=lambda: world[0],
                    resync=resync)
    return loop, world, runs


def test_unchanged_world_skips_the_pass_and_a_change_runs_it() -> None:
    loop, world, runs = _loop(resync=60)
    assert loop.run_once() == 3
    assert loop.run_once() == 3  # skipped: the last pass's count
    assert runs == [0] and loop.skipped == 1
    world[0] = 1
    loop.run_once()
    assert runs == [0, 1] and loop.passes == 2


def test_the_resync_period_runs_a_pass_without_change() -> None:
    loop, _, runs = _loop(resync=0.05)
    loop.run_once()
    loop.run_once()
    assert len(runs) == 1
    time.sleep(0.06)
    loop.run_once()
    assert len(runs) == 2


def test_a_pass_that_raises_is_run_again() -> None:
    calls: list[int] = []

    def failing() -> int:
        calls.append(1)
        raise RuntimeError("boom")

    loop = PassLoop("t", failing, 0.01, "test pass", fingerprint=lambda: 0, resync=60)
    for _ in range(2):
        with contextlib.suppress(RuntimeError):
            loop.run_once()
    assert len(calls) == 2


def test_without_a_fingerprint_every_pass_runs() -> None:
    runs: list[int] = []
    loop = PassLoop("t", lambda: runs.append(1) or 0, 0.01, "test pass")
    loop.run_once()
    loop.run_once()
    assert runs == [1, 1]
