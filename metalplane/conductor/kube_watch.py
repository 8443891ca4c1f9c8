"""The watch hub of the Kubernetes-style API: the recent changes of every kind stored in
``kube_objects``, in ``resourceVersion`` order, for watches to replay and follow.

Fed by one hook: every write of :mod:`metalplane.db.kube` ends in a
:class:`~metalplane.db.kube.KubeChange` (``"kube_objects"`` listeners), so any kind stored
there (Namespaces, Secrets, BareMetalHosts, and any kind added later) is watchable with no
list of kinds here. History is kept per kind, the last ``capacity`` changes; a watch from a
``resourceVersion`` older than that is told :class:`TooOld` (kube-apiserver's watch cache
answers the same, HTTP 410 "Expired"). Waiting is asyncio's: a watcher holds no thread;
the writers' threads wake it with ``call_soon_threadsafe``. This module does not render
objects (the API does) and never logs their contents (a Secret's data).

Only this process's writes are seen: several servers on one PostgreSQL store would each
watch their own (documented in docs/kubernetes.md).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from metalplane.db.engine import Database
from metalplane.db.kube import TOPIC, KubeChange, kube_revision
from metalplane.db.listeners import listen

__all__ = ["TooOld", "WatchHub", "Watcher"]


class TooOld(Exception):
    """The changes after ``rv`` are no longer all kept: the oldest one kept follows
    ``oldest``. kube-apiserver's words: ``too old resource version: {rv} ({oldest})``."""

    def __init__(self, rv: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {rv} ({oldest})")
        self.rv, self.oldest = rv, oldest


class _History:
    """One kind's recent changes; every change with ``resource_version > since`` is in
    ``changes`` (sorted)."""

    def __init__(self, since: int) -> None:
        self.since = since
        self.rvs: list[int] = []
        self.changes: list[KubeChange] = []


class Watcher:
    """One open watch's wake-up: ``wait()`` returns when changes were published since the
    last ``wait()`` (or at once after the hub closed), or after ``timeout`` s."""

    def __init__(self, hub: WatchHub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub, self._loop = hub, loop
        self._event = asyncio.Event()
        self.pending = False  # a wake is scheduled; guarded by the hub's lock

    def wake(self) -> None:
        """From any thread (with the hub's lock held, or from ``close``: a wake more or
        less is harmless, the watch looks at the hub after each)."""
        if not self.pending:
            self.pending = True
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits
                self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        with self._hub._lock:
            self.pending = False


class WatchHub:
    """Recent changes by kind (``capacity`` each) and the watchers to wake on a new one.
    ``start()`` hooks it to the store's writes, ``close()`` ends every watch (server
    stop)."""

    def __init__(self, db: Database, capacity: int = 4096) -> None:
        self.db, self.capacity = db, capacity
        self._lock = threading.Lock()
        self._kinds: dict[str, _History] = {}
        self._watchers: set[Watcher] = set()
        self._since = 0
        self.revision = 0  # the newest resourceVersion published
        self.closed = False
        self._unhook: Callable[[], None] | None = None

    def start(self) -> None:
        """Follow the store's writes from now on (a migrated store is needed); changes
        before now are too old."""
        if self._unhook is not None:
            return
        self._unhook = listen(self.db, TOPIC, self.publish)
        rv = kube_revision(self.db)
        with self._lock:
            self.closed = False
            self._since = rv
            self.revision = max(self.revision, rv)
            for history in self._kinds.values():
                history.since = max(history.since, rv)

    def close(self) -> None:
        """End every watch (each sees ``closed`` and returns) and refuse new ones'
        waiting; safe from any thread and from a signal handler (uvicorn's SIGTERM sets
        ``should_exit``, whose hook calls this): it takes no lock, since the handler may
        run on the event loop's thread while that holds the hub's lock."""
        self.closed = True
        for w in list(self._watchers):  # one C-level copy: no bytecode runs in between
            w.wake()

    def stop(self) -> None:
        self.close()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None

    def publish(self, change: KubeChange) -> None:
        """The ``"kube_objects"`` listener: keep ``change`` and wake the watchers."""
        rv = change.obj.resource_version
        with self._lock:
            history = self._kinds.get(change.obj.kind)
            if history is None:
                history = self._kinds[change.obj.kind] = _History(self._since)
            if rv <= history.since:
                return
            if history.rvs and rv <= history.rvs[-1]:  # never: writes are announced in order
                at = bisect.bisect_right(history.rvs, rv)
                history.rvs.insert(at, rv)
                history.changes.insert(at, change)
            else:
                history.rvs.append(rv)
                history.changes.append(change)
            if len(history.rvs) > 2 * self.capacity:  # trim in batches: amortised O(1)
                drop = len(history.rvs) - self.capacity
                history.since = history.rvs[drop - 1]
                del history.rvs[:drop], history.changes[:drop]
            self.revision = max(self.revision, rv)
            for w in self._watchers:
                w.wake()

    def changes_after(self, kind: str, rv: int) -> list[KubeChange]:
        """The kept changes of ``kind`` with ``resourceVersion > rv``, oldest first. Raises
        :class:`TooOld` when some of them are no longer kept."""
        with self._lock:
            history = self._kinds.get(kind)
            since = history.since if history is not None else self._since
            if rv < since:
                raise TooOld(rv, since)
            if history is None:
                return []
            return history.changes[bisect.bisect_right(history.rvs, rv):]

    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> Watcher:
        """A :class:`Watcher` woken on every change (``unsubscribe`` it when done)."""
        w = Watcher(self, loop or asyncio.get_running_loop())
        with self._lock:
            self._watchers.add(w)
            if self.closed:
                w.wake()
        return w

    def unsubscribe(self, w: Watcher) -> None:
        with self._lock:
            self._watchers.discard(w)

    def stats(self) -> dict[str, Any]:
        """``{"watchers": n, "kinds": {kind: kept changes}}`` (for tests and logs)."""
        with self._lock:
            return {"watchers": len(self._watchers),
                    "kinds": {k: len(h.rvs) for k, h in self._kinds.items()}}
