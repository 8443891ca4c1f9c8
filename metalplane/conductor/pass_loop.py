"""A level-based controller's thread: one pass now and then, or at once when kicked.

Shared by the BareMetalHost reconcile (:mod:`metalplane.conductor.hosts`) and the Cluster
API controller (:mod:`metalplane.conductor.machines`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PassLoop"]

LOG = logging.getLogger(__name__)


class PassLoop:
    """Calls ``one_pass`` (which returns how many objects it looked at) on a thread named
    ``name`` between :meth:`start` and :meth:`stop`: every ``interval`` s, every
    ``10 * interval`` s while there are none, and at once after :meth:`kick`. A pass that
    raises is logged (as ``what`` failed) and the loop goes on.

    With ``fingerprint`` (a cheap callable whose value changes whenever anything the pass
    reads is written), a pass is skipped while the value is the one a completed pass saw,
    except once every ``resync`` s (time-based work: retry backoffs), as an informer's
    resync period in a Kubernetes controller."""

    def __init__(self, name: str, one_pass: Callable[[], int], interval: float,
                 what: str, fingerprint: Callable[[], Any] | None = None,
                 resync: float = 10.0) -> None:
        self.name, self.one_pass, self.interval, self.what = name, one_pass, interval, what
        self.fingerprint, self.resync = fingerprint, resync
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: Any = None  # the fingerprint before the last completed pass
        self._last_full = 0.0  # time.monotonic() of that pass
        self._count = 1  # what the last completed pass returned
        self.passes = self.skipped = 0  # counts, for tests and debugging

    def _due(self) -> tuple[bool, Any]:
        """(whether to run a pass now, the fingerprint read for it)."""
        if self.fingerprint is None:
            return True, None
        seen = self.fingerprint()
        fresh = time.monotonic() - self._last_full < self.resync
        return not (fresh and seen == self._seen), seen

    def run_once(self) -> int:
        """One pass unless nothing changed since the last (see the class); returns its
        count, or the last pass's count when skipped."""
        due, seen = self._due()
        if not due:
            self.skipped += 1
            return self._count
        self._count = count = self.one_pass()
        self.passes += 1
        self._seen, self._last_full = seen, time.monotonic()
        return count

    def kick(self) -> None:
        """Run the next pass now rather than at the end of the wait."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            count = 1
            try:
                count = self.run_once()
            except Exception:
                LOG.exception("%s failed", self.what)
            self._kick.wait(self.interval if count else 10 * self.interval)
            self._kick.clear()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the thread (waits for the pass under way, up to 10 s)."""
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
