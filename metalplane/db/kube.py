"""The store of the Kubernetes-style API: objects (Namespaces, Secrets, BareMetalHosts) by
kind, namespace and name, with Kubernetes' optimistic concurrency.

Every write takes the next value of one counter (``kube_revision``) as the object's
``resourceVersion``, in the same transaction, so versions only grow and a write that names
a stale one is refused (Kubernetes API conventions, "Concurrency Control and
Consistency"). This module knows nothing of the objects' contents (``body`` and
``status`` are opaque); validation lives in :mod:`metalplane.conductor.hosts` and the API.

Every write (create, update, status, delete) ends in one hook: a :class:`KubeChange` to
the ``"kube_objects"`` listeners of :mod:`metalplane.db.listeners` (the watch hub), after
the commit and in ``resourceVersion`` order (this process's writes of one store take turns
on a lock, write and hook together). ``generation`` grows only when ``body`` (what a user
writes) changes, never for ``status`` or metadata (Kubernetes API conventions, "Metadata").
"""

from __future__ import annotations

import contextlib
import threading
import uuid as uuidlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metalplane.common.exceptions import Conflict, NotFound
from metalplane.db.engine import Database
from metalplane.db.listeners import notify
from metalplane.db.models import Allocation, KubeObject, KubeRevision, Node, Port

__all__ = [
    "TOPIC",
    "AlreadyExists",
    "KubeChange",
    "NodeLinks",
    "StaleVersion",
    "kube_by_ids",
    "kube_create",
    "kube_delete",
    "kube_get",
    "kube_list",
    "kube_marks",
    "kube_node_links",
    "kube_revision",
    "kube_set_statuses",
    "kube_snapshot",
    "kube_stamps",
    "kube_update",
    "node_stamps",
    "nodes_fingerprint",
    "store_fingerprint",
]

TOPIC = "kube_objects"  # the listeners' topic (metalplane.db.listeners)


@dataclass(frozen=True)
class KubeChange:
    """One committed write: ``type`` ``ADDED``, ``MODIFIED`` or ``DELETED`` (a watch
    event's names), ``obj`` the object after it (detached; for ``DELETED`` as it was, with
    the deletion's ``resource_version``; listeners must not change it), ``prev_labels``
    its labels before a ``MODIFIED`` (a label selector's watch turns a change of labels
    into ``ADDED``/``DELETED``)."""

    type: str
    obj: KubeObject
    prev_labels: dict[str, Any] | None = None


_ORDER_LOCK = threading.Lock()
_ORDER: weakref.WeakKeyDictionary[Database, threading.Lock] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _ordered(db: Database) -> Iterator[list[KubeChange]]:
    """A write and its hook as one turn: the changes the block appends are announced
    after its transaction committed, before the next write of ``db`` in this process."""
    with _ORDER_LOCK:
        lock = _ORDER.setdefault(db, threading.Lock())
    with lock:
        changes: list[KubeChange] = []
        yield changes
        for change in changes:
            notify(db, TOPIC, change)


class AlreadyExists(Conflict):
    """An object of that kind, namespace and name exists (HTTP 409, reason
    AlreadyExists)."""


class StaleVersion(Conflict):
    """A write named a ``resourceVersion`` that is no longer the object's (HTTP 409,
    reason Conflict)."""


def _next_revision(s: Session, count: int = 1) -> int:
    """Take ``count`` versions; returns the last (the first is ``last - count + 1``)."""
    s.execute(sa.update(KubeRevision).where(KubeRevision.id == 1)
              .values(value=KubeRevision.value + count))
    return int(s.execute(sa.select(KubeRevision.value).where(KubeRevision.id == 1))
               .scalar_one())


def _one(s: Session, kind: str, namespace: str, name: str) -> KubeObject:
    obj = s.execute(sa.select(KubeObject).where(
        KubeObject.kind == kind, KubeObject.namespace == namespace,
        KubeObject.name == name)).scalar_one_or_none()
    if obj is None:
        raise NotFound(f'{kind} "{name}" not found')
    return obj


def kube_get(db: Database, kind: str, namespace: str, name: str) -> KubeObject:
    """The object ``kind``/``namespace``/``name`` (namespace ``""`` for cluster-scoped
    kinds). Raises :class:`NotFound`."""
    with db.read() as s:
        return _one(s, kind, namespace, name)


def kube_list(db: Database, kind: str, namespace: str | None = None,
              name: str | None = None) -> list[KubeObject]:
    """Objects of ``kind`` (in ``namespace``, all namespaces if None; named ``name`` if
    given), by namespace then name."""
    with db.read() as s:
        return list(s.execute(_select(kind, namespace, name)).scalars())


def _select(kind: str, namespace: str | None, name: str | None) -> Any:
    """The query of objects of ``kind`` (in ``namespace``, named ``name`` where given), by
    namespace then name."""
    q = sa.select(KubeObject).where(KubeObject.kind == kind)
    if namespace is not None:
        q = q.where(KubeObject.namespace == namespace)
    if name is not None:
        q = q.where(KubeObject.name == name)
    return q.order_by(KubeObject.namespace, KubeObject.name)


def kube_marks(db: Database, kind: str) -> tuple[int, int, int, Any]:
    """``(objects of kind, their newest resource_version, nodes, newest node
    updated_at)``: two aggregate queries that tell whether anything changed since the
    last look, without reading the rows."""
    objs: list[Any] = db.execute(
        sa.select(sa.func.count(), sa.func.max(KubeObject.resource_version))
        .where(KubeObject.kind == kind))
    nodes: list[Any] = db.execute(sa.select(sa.func.count(), sa.func.max(Node.updated_at)))
    return int(objs[0][0]), int(objs[0][1] or 0), int(nodes[0][0]), nodes[0][1]


def kube_stamps(db: Database, kind: str, since_rv: int | None = None,
                node_uuids: list[str] | None = None) -> list[tuple[int, str | None, int]]:
    """``(id, node_uuid, generation)`` of the objects of ``kind`` (only those written
    after ``since_rv``, or only those of the nodes ``node_uuids``, if given): light
    queries (no JSON decoded), to find whose spec or node changed since a pass."""
    q = sa.select(KubeObject.id, KubeObject.node_uuid, KubeObject.generation).where(
        KubeObject.kind == kind)
    if since_rv is not None:
        q = q.where(KubeObject.resource_version > since_rv)
    if node_uuids is None:
        rows: list[Any] = db.execute(q)
    else:
        rows = []
        for start in range(0, len(node_uuids), 500):  # SQLite's bound-parameter limit
            rows += db.execute(q.where(KubeObject.node_uuid.in_(
                node_uuids[start:start + 500])))
    return [(int(i), u, int(g)) for i, u, g in rows]


def node_stamps(db: Database, since: Any = None, uuids: list[str] | None = None
                ) -> dict[str, Any]:
    """``{node uuid: updated_at}`` of every node (only those updated at or after
    ``since``, or only ``uuids``, if given): light queries."""
    q = sa.select(Node.uuid, Node.updated_at)
    if since is not None:
        q = q.where(Node.updated_at >= since)
    if uuids is None:
        rows: list[Any] = db.execute(q)
    else:
        rows = []
        for start in range(0, len(uuids), 500):
            rows += db.execute(q.where(Node.uuid.in_(uuids[start:start + 500])))
    return {u: t for u, t in rows}


def kube_by_ids(db: Database, ids: list[int]) -> list[KubeObject]:
    """The objects whose ``id`` is in ``ids`` (any order; those gone are left out)."""
    out: list[KubeObject] = []
    with db.read() as s:
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            out.extend(s.execute(sa.select(KubeObject).where(
                KubeObject.id.in_(ids[start:start + 500]))).scalars())
    return out


def kube_revision(db: Database) -> int:
    """The store's latest ``resourceVersion`` (0 before any write)."""
    with db.read() as s:
        return int(s.execute(sa.select(KubeRevision.value).where(KubeRevision.id == 1))
                   .scalar_one_or_none() or 0)


def kube_snapshot(db: Database, kind: str, namespace: str | None = None,
                  name: str | None = None) -> tuple[list[KubeObject], int]:
    """:func:`kube_list` and the store's ``resourceVersion`` read in one transaction: the
    objects are exactly those of that version (a list's ``metadata.resourceVersion``, from
    which a watch goes on)."""
    q = _select(kind, namespace, name)
    with db.read() as s:
        s.connection()  # the transaction (and, on SQLite, its snapshot) begins here
        rv = int(s.execute(sa.select(KubeRevision.value).where(KubeRevision.id == 1))
                 .scalar_one_or_none() or 0)
        return list(s.execute(q).scalars()), rv


def kube_create(db: Database, kind: str, namespace: str, name: str,
                **values: Any) -> KubeObject:
    """Insert an object; ``values`` are further columns (``labels``, ``annotations``,
    ``finalizers``, ``body``, ``status``, ``node_uuid``). Raises :class:`AlreadyExists`."""
    with _ordered(db) as changes:
        try:
            with db.write() as s:
                obj = KubeObject(kind=kind, namespace=namespace, name=name,
                                 uid=str(uuidlib.uuid4()), generation=1,
                                 resource_version=_next_revision(s), **values)
                s.add(obj)
                s.flush()
        except IntegrityError:
            raise AlreadyExists(f'{kind} "{name}" already exists') from None
        changes.append(KubeChange("ADDED", obj))
        return obj


def kube_update(db: Database, kind: str, namespace: str, name: str,
                resource_version: int | None, **values: Any) -> KubeObject:
    """Replace the given columns of an object; its ``generation`` grows when ``body``
    changes (not for ``status``, labels, annotations or finalizers). ``resource_version``
    None skips the check (a patch applies to the current object). Raises
    :class:`NotFound`, :class:`StaleVersion`."""
    with _ordered(db) as changes:
        with db.write() as s:
            obj = _one(s, kind, namespace, name)
            if resource_version is not None and resource_version != obj.resource_version:
                raise StaleVersion(
                    f'Operation cannot be fulfilled on {kind.lower()} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again")
            prev_labels = dict(obj.labels or {})
            if "body" in values and values["body"] != obj.body:
                obj.generation += 1
            for key, value in values.items():
                setattr(obj, key, value)
            obj.resource_version = _next_revision(s)
            s.flush()
        changes.append(KubeChange("MODIFIED", obj, prev_labels))
        return obj


def kube_set_statuses(db: Database, statuses: dict[int, dict[str, Any]]
                      ) -> list[KubeObject]:
    """Write ``status`` of each object (by ``id``: ``{id: status}``) in one transaction,
    each with a ``resourceVersion`` of its own and its ``generation`` unchanged (the
    status subresource). Objects deleted meanwhile are skipped. Returns those written."""
    if not statuses:
        return []
    out: list[KubeObject] = []
    with _ordered(db) as changes:
        with db.write() as s:
            ids = sorted(statuses)
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                out.extend(s.execute(sa.select(KubeObject).where(
                    KubeObject.id.in_(ids[start:start + 500]))).scalars())
            if out:
                first = _next_revision(s, len(out)) - len(out) + 1
                for rv, obj in enumerate(out, start=first):
                    obj.status = statuses[obj.id]
                    obj.resource_version = rv
            s.flush()
        changes.extend(KubeChange("MODIFIED", o, dict(o.labels or {})) for o in out)
    return out


def kube_delete(db: Database, kind: str, namespace: str, name: str) -> KubeObject:
    """Delete an object and return it as it was, with the deletion's
    ``resource_version``. Raises :class:`NotFound`."""
    with _ordered(db) as changes:
        with db.write() as s:
            obj = _one(s, kind, namespace, name)
            rv = _next_revision(s)
            s.delete(obj)
            s.flush()
        obj.resource_version = rv
        changes.append(KubeChange("DELETED", obj))
        return obj



class NodeLinks(NamedTuple):
    """How objects of one kind and nodes point at each other (:func:`kube_node_links`)."""

    free: list[Node]  # nodes no object points at
    orphans: list[KubeObject]  # objects whose node no longer exists
    mirrors: list[KubeObject]  # objects whose body says "mirror": their spec is the node's
    pending: list[tuple[str, str]]  # (namespace, name) of objects whose node is being made
    names: set[str]  # names taken in namespace "default"


def kube_node_links(db: Database, kind: str,
                    only: tuple[str, str] | None = None) -> NodeLinks:
    """:class:`NodeLinks` of ``kind``, in one read (``mirrors`` only the object
    ``only`` = (namespace, name) if given). An object without a ``node_uuid`` is pending
    (its node being created), neither free nor orphaned."""
    linked = sa.select(KubeObject.node_uuid).where(KubeObject.kind == kind,
                                                   KubeObject.node_uuid.is_not(None))
    of_kind = KubeObject.kind == kind
    with db.read() as s:
        free = list(s.execute(sa.select(Node).where(Node.uuid.not_in(linked))).scalars())
        orphans = list(s.execute(sa.select(KubeObject).where(
            of_kind, KubeObject.node_uuid.is_not(None),
            KubeObject.node_uuid.not_in(sa.select(Node.uuid)))).scalars())
        mirrored = sa.select(KubeObject).where(
            of_kind, KubeObject.body["mirror"].as_boolean().is_(True))
        if only is not None:
            mirrored = mirrored.where(KubeObject.namespace == only[0],
                                      KubeObject.name == only[1])
        mirrors = list(s.execute(mirrored).scalars())
        pending = [(r.namespace, r.name) for r in s.execute(
            sa.select(KubeObject.namespace, KubeObject.name).where(
                of_kind, KubeObject.node_uuid.is_(None)))]
        names = set(s.execute(sa.select(KubeObject.name).where(
            of_kind, KubeObject.namespace == "default")).scalars())
    return NodeLinks(free, orphans, mirrors, pending, names)


def nodes_fingerprint(db: Database) -> tuple[Any, ...]:
    """A value that changes whenever a node or a port is created, changed or deleted
    (their counts and latest timestamps), to skip work when nothing did."""
    with db.read() as s:
        nodes = s.execute(sa.select(sa.func.count(Node.id), sa.func.max(Node.updated_at),
                                    sa.func.max(Node.created_at))).one()
        ports = s.execute(sa.select(sa.func.count(Port.id), sa.func.max(Port.updated_at),
                                    sa.func.max(Port.created_at))).one()
    return (*nodes, *ports)


def store_fingerprint(db: Database) -> tuple[Any, ...]:
    """A value that changes whenever an object of the Kubernetes-style store, a node, a
    port or an allocation is written (the store's revision, then counts and latest
    timestamps): a level-based controller with nothing new to see may skip its pass."""
    with db.read() as s:
        allocations = s.execute(sa.select(sa.func.count(Allocation.id),
                                          sa.func.max(Allocation.updated_at))).one()
    return (kube_revision(db), *nodes_fingerprint(db), *allocations)
