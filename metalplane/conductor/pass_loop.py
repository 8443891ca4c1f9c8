"""A level-based controller's thread: one pass now and then, or at once when kicked.

Shared by the BareMetalHost reconcile (:mod:`metalplane.conductor.hosts`) and the Cluster
API controller (:mod:`metalplane.conductor.machines`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["PassLoop"]

LOG = logging.getLogger(__name__)


class PassLoop:
    """Calls ``one_pass`` (which returns how many objects it looked at) on a thread named
    ``name`` between :meth:`start` and :meth:`stop`: every ``interval`` s, every
    ``10 * interval`` s while there are none, and at once after :meth:`kick`. A pass that
    raises is logged (as ``what`` failed) and the loop goes on."""

    def __init__(self, name: str, one_pass: Callable[[], int], interval: float,
                 what: str) -> None:
        self.name, self.one_pass, self.interval, self.what = name, one_pass, interval, what
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        """Run the next pass now rather than at the end of the wait."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            count = 1
            try:
                count = self.one_pass()
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
