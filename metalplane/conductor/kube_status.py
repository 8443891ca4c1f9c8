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
(changes made by another process). The hook also says which provision state was set: a
state the node went through between two passes is still written, one per pass, in
order, so a watch sees every one. Source: Kubernetes API conventions ("Spec and
Status"), Metal3's ``BareMetalHostStatus.LastUpdated``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

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


class _AsIf:
    """A node as it was while in ``provision_state`` (its other fields as now)."""

    def __init__(self, node: Node, provision_state: str) -> None:
        self._node, self.provision_state = node, provision_state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


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
        self._pending: dict[int, list[str]] = {}  # node id -> states set since the pass
        self._pending_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unhooks: list[Callable[[], None]] = []

    def kick(self, *_: Any) -> None:
        """Ask for a pass soon (any thread; cheap)."""
        self._kick.set()

    def node_changed(self, node_id: int, values: dict[str, Any] | None) -> None:
        """The ``"nodes"`` listener: remember each provision state set, so that a state
        the node passes through between two passes is still shown (one per pass)."""
        if values and "provision_state" in values:
            with self._pending_lock:
                self._pending.setdefault(node_id, []).append(str(values["provision_state"]))
        self._kick.set()

    def _take_pending(self) -> dict[int, list[str]]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        return pending

    def _requeue(self, node_id: int, states: list[str]) -> None:
        with self._pending_lock:
            self._pending[node_id] = [*states, *self._pending.get(node_id, [])]
        self._kick.set()

    def _next_status(self, obj: KubeObject, node: Node | None,
                     states: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The status to write now and the states left to show after it: that of the
        first of ``states`` (in the order the node went through them) whose status
        differs from the stored one, unless it is the last (then the node's status as it
        is now)."""
        final = self.compute(obj, node)
        if node is not None:
            for at, state in enumerate(states[:-1]):
                passing = self.compute(obj, cast(Node, _AsIf(node, state)))
                if not same_status(passing, obj.status):
                    return passing, states[at + 1:]
        return final, []

    def _on_change(self, change: KubeChange) -> None:
        if change.obj.kind == self.kind and threading.current_thread() is not self._thread:
            self._kick.set()

    def write_pass(self) -> int:
        """Compare and write once. Returns the number of statuses written."""
        with self._pass_lock:
            pending = self._take_pending()  # before the nodes are read
            marks = kube_marks(self.db, self.kind)
            now_mono = time.monotonic()
            prev = self._marks
            if marks == prev and now_mono < self._next_full and not pending:
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
            passed: dict[str, tuple[int, list[str]]] = {}  # node uuid -> (id, states)
            if pending:
                ids = sorted(pending)
                for start in range(0, len(ids), 500):
                    passed.update((n.uuid, (n.id, pending[n.id])) for n in db_api.rows_where(
                        self.db, Node, id=ids[start:start + 500]))
                known = {i for i, _, _ in stamps}
                stamps = [*stamps, *(s for s in kube_stamps(
                    self.db, self.kind, node_uuids=sorted(passed)) if s[0] not in known)]
            todo = [i for i, uuid, gen in stamps
                    if self._seen.get(i) != (gen, nodes.get(uuid or "")) or uuid in passed]
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
                node_id, states = passed.get(obj.node_uuid or "", (0, []))
                status, left = self._next_status(obj, node, states)
                if left:
                    self._requeue(node_id, left)
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
        self._unhooks = [listen(self.db, db_api.NODES_TOPIC, self.node_changed),
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
