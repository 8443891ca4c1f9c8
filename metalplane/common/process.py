"""Child processes: one way to start them and one way to stop them.

:func:`spawn` starts a command in a session (and process group) of its own, so a signal
meant for the parent's terminal does not reach it and :func:`stop` can end it together
with whatever it started (``ip netns exec`` wrappers, qemu-img, uvicorn's workers).
:func:`stop` sends SIGTERM to the group, waits a bounded time, then SIGKILLs the group and
reaps the child, so no zombie and no orphan is left behind. Both are for children of this
process; daemons known only by a pid file (the lab's, across commands) are stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

__all__ = ["spawn", "stop"]

Target = int | IO[Any] | None


def spawn(cmd: list[str], *, env: dict[str, str] | None = None, stdout: Target = None,
          stderr: Target = None, stdin: Target = subprocess.DEVNULL,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session; ``stdin`` defaults to /dev/null (a daemon must not
    read the parent's terminal). Raises what :class:`subprocess.Popen` raises
    (FileNotFoundError for a missing program)."""
    return subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, stdin=stdin, cwd=cwd,
                            start_new_session=True)


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[Any] | None, grace: float = 10.0,
         also: Iterable[int] = ()) -> int | None:
    """Stop ``proc`` (started by :func:`spawn`): SIGTERM its process group and the pids in
    ``also`` (processes that left the group, e.g. a daemon whose pid file names it), wait
    up to ``grace`` s, then SIGKILL the group and reap. Idempotent: a child that already
    ended is just reaped. Returns its exit status (None if it could not be reaped)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    _signal_group(proc, signal.SIGTERM)
    for pid in also:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=10)
    return None
