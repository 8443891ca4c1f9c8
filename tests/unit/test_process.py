"""Starting and stopping children (metalplane.common.process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from metalplane.common.process import spawn, stop


def test_a_child_runs_in_its_own_session_and_stops_on_sigterm() -> None:
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    assert stop(proc) == -15
    assert stop(proc) == -15  # idempotent


def test_a_child_that_ignores_sigterm_is_killed_with_its_group_after_the_grace() -> None:
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(60)\n")
    proc = spawn([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    t0 = time.monotonic()
    assert stop(proc, grace=0.5) == -9
    proc.stdout.close()
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5  # the grandchild (reaped by init) is gone too
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{grandchild}/stat").read_text()
        except FileNotFoundError:
            break
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # dead, awaiting its new parent
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the grandchild outlived its group's SIGKILL")
