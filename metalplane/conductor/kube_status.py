"""The status writer of the Kubernetes-style API: keeps each object's stored ``status``
(the status subresource, ``kube_objects.status``) equal to what metalplane computes from
its node, so that a node's change becomes a change of the object, which a watch sees.

A pass first asks two aggregates (count and newest version of the objects, count and
newest ``updated_at`` of the nodes) and stops there when nothing moved; otherwise it reads
the ``(id, node, generation)`` of the objects and the ``(uuid, updated_at)`` of the nodes
written since (all of them after a deletion, and every ``full_interval`` s, which also
catches a node written with a clock behind), recomputes only the objects whose spec or
node changed, and writes, in one transaction, only the statuses that differ from the
stored ones (``lastUpdated`` is then the time of the write: it follows the last change of the
status, not every touch of the node). A status write bumps ``resourceVersion``, never
``generation``. Passes run in a thread, woken by the ``"nodes"`` hook of
:mod:`metalplane.db.listeners` (the conductor does not know of this view) and by the
kind's own spec changes, at most every ``min_gap`` s, and at least every ``interval`` s
(changes made by another process). Source: Kubernetes API conventions ("Spec and
Status"), Metal3's ``BareMetalHostStatus.LastUpdated``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.kube import (
    TOPIC,
    KubeChange,
    kube_by_ids,
    kube_marks,
    kube_set_statuses,
    kube_stamps,
    node_stamps,
)
from metalplane.db.listeners import listen
from metalplane.db.models import KubeObject, Node

__all__ = ["StatusWriter", "same_status"]

LOG = logging.getLogger(__name__)

Compute = Callable[[KubeObject, Node | None], dict[str, Any]]


def same_status(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two statuses say the same, ``lastUpdated`` aside."""
    return ({k: v for k, v in (a or {}).items() if k != "lastUpdated"}
            == {k: v for k, v in (b or {}).items() if k != "lastUpdated"})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    """Writes the ``status`` of ``kind``'s objects from ``compute(obj, node or None)``.
    ``write_pass()`` is one pass (returns how many statuses it wrote); ``start()`` runs
    passes in a thread, ``stop()`` ends it."""

    def __init__(self, db: Database, kind: str, compute: Compute, interval: float = 2.0,
                 min_gap: float = 0.1, full_interval: float = 60.0,
                 clock_margin: float = 2.0) -> None:
        self.db, self.kind, self.compute = db, kind, compute
        self.interval, self.min_gap = interval, min_gap
        self.full_interval, self.clock_margin = full_interval, clock_margin
        self._seen: dict[int, tuple[int, Any]] = {}  # id -> (generation, node updated_at)
        self._marks: tuple[int, int, int, Any] | None = None  # kube_marks of the last pass
        self._next_full = 0.0  # monotonic time of the next pass that reads every row
        self._pass_lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unhooks: list[Callable[[], None]] = []

    def kick(self) -> None:
        """Ask for a pass soon (any thread; cheap)."""
        self._kick.set()

    def _on_change(self, change: KubeChange) -> None:
        if change.obj.kind == self.kind and threading.current_thread() is not self._thread:
            self._kick.set()

    def write_pass(self) -> int:
        """Compare and write once. Returns the number of statuses written."""
        with self._pass_lock:
            marks = kube_marks(self.db, self.kind)
            now_mono = time.monotonic()
            prev = self._marks
            if marks == prev and now_mono < self._next_full:
                return 0  # nothing written since the last pass: two aggregate queries
            if (prev is None or now_mono >= self._next_full or marks[0] < prev[0]
                    or marks[2] < prev[2]):  # the first, a periodic one, or a deletion
                stamps = kube_stamps(self.db, self.kind)
                nodes = node_stamps(self.db)
                alive = {i for i, _, _ in stamps}
                self._seen = {i: v for i, v in self._seen.items() if i in alive}
                self._next_full = now_mono + self.full_interval
            else:
                # node clocks are read before their write's turn: look a little back
                since = prev[3] - dt.timedelta(seconds=self.clock_margin) if prev[3] \
                    else None
                nodes = node_stamps(self.db, since=since)
                by_id = {s[0]: s for s in kube_stamps(self.db, self.kind, since_rv=prev[1])}
                by_id.update((s[0], s) for s in kube_stamps(self.db, self.kind,
                                                             node_uuids=sorted(nodes)))
                stamps = list(by_id.values())
                missing = sorted({u for _, u, _ in stamps if u and u not in nodes})
                if missing:
                    nodes.update(node_stamps(self.db, uuids=missing))
            todo = [i for i, uuid, gen in stamps
                    if self._seen.get(i) != (gen, nodes.get(uuid or ""))]
            if not todo:
                self._marks = marks
                return 0
            objs = kube_by_ids(self.db, todo)
            uuids = sorted({o.node_uuid for o in objs if o.node_uuid})
            rows: dict[str, Node] = {}
            for start in range(0, len(uuids), 500):
                rows.update((n.uuid, n) for n in db_api.rows_where(
                    self.db, Node, uuid=uuids[start:start + 500]))
            writes: dict[int, dict[str, Any]] = {}
            now = _now()
            for obj in objs:
                node = rows.get(obj.node_uuid or "")
                status = self.compute(obj, node)
                if not same_status(status, obj.status):
                    writes[obj.id] = {**status, "lastUpdated": now}
                self._seen[obj.id] = (obj.generation,
                                      node.updated_at if node is not None else None)
            kube_set_statuses(self.db, writes)
            self._marks = marks
            return len(writes)

    def fill(self, objs: list[KubeObject]) -> list[KubeObject]:
        """``objs`` with an empty stored status given one now (written; the others as
        they are), in the same order: a GET never answers an empty status."""
        if all(o.status for o in objs):
            return objs
        with self._pass_lock:  # not twice with a pass: read again under its lock
            empty = [o for o in kube_by_ids(self.db, [o.id for o in objs if not o.status])
                     if not o.status]
            uuids = sorted({o.node_uuid for o in empty if o.node_uuid})
            nodes = {n.uuid: n for n in db_api.rows_where(self.db, Node, uuid=uuids)}
            now = _now()
            written = {o.id: o for o in kube_set_statuses(self.db, {
                o.id: {**self.compute(o, nodes.get(o.node_uuid or "")), "lastUpdated": now}
                for o in empty})}
        if len(written) < len([o for o in objs if not o.status]):  # filled meanwhile
            fresh = {o.id: o for o in kube_by_ids(self.db, [o.id for o in objs
                                                            if not o.status])}
            written = {**fresh, **written}
        return [written.get(o.id, o) for o in objs]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.interval)
            if self._stop.is_set():
                break
            self._kick.clear()
            started = time.monotonic()
            try:
                self.write_pass()
            except Exception:
                LOG.exception("%s status pass failed", self.kind)
            self._stop.wait(max(0.0, self.min_gap - (time.monotonic() - started)))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._unhooks = [listen(self.db, db_api.NODES_TOPIC, self.kick),
                         listen(self.db, TOPIC, self._on_change)]
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-status",
                                        daemon=True)
        self._thread.start()
        self._kick.set()  # the first pass fills what a previous life left

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for unhook in self._unhooks:
            unhook()
        self._unhooks = []
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
