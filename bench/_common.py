"""What every benchmark script prints and records: the machine, peak memory, percentiles,
and the results file ``bench/results/<script>.json``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    """CPU count, memory (MiB), Python and kernel of this machine."""
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {"cpus": os.cpu_count(), "memory_mib": mem, "python": platform.python_version(),
            "kernel": platform.release()}


def header(result: dict[str, Any]) -> None:
    """Print the machine, versions and parameters of ``result``, as every script does first."""
    print(f"machine: {result['machine']}\nversions: {result['versions']}\n"
          f"parameters: {result['parameters']}", flush=True)


def write_result(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


def ms_summary(values: list[float]) -> dict[str, float]:
    """Median, p90 and max of ``values`` (seconds) in milliseconds."""
    return {"median_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(percentile(values, 90) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1)}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (0 if empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_kib(pid: int) -> int:
    """Resident memory (KiB) of ``pid`` and its descendants now."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_by_command(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants, by
    command name (``comm``); children the tree already waited for (dnsmasq restarted,
    helper commands) are counted under ``"(exited children)"``. Source: proc(5)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            head, tail = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)
            fields = tail.split()
            comm = head.split("(", 1)[1]
            out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
            waited = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
            if waited:
                out["(exited children)"] = out.get("(exited children)", 0.0) + waited
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid``, its live descendants and the children it
    waited for (see :func:`cpu_by_command`)."""
    return sum(cpu_by_command(pid).values())


class PeakRSS:
    """Samples the resident memory of a process tree every ``interval`` seconds in a thread;
    ``peak_mib`` is the largest sum seen. Use as a context manager."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            self._stop.wait(self.interval)

    @property
    def peak_mib(self) -> float:
        return round(self.peak_kib / 1024, 1)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib(self.pid))


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
