"""The store of the Kubernetes-style API: objects (Namespaces, Secrets, BareMetalHosts) by
kind, namespace and name, with Kubernetes' optimistic concurrency.

Every write takes the next value of one counter (``kube_revision``) as the object's
``resourceVersion``, in the same transaction, so versions only grow and a write that names
a stale one is refused (Kubernetes API conventions, "Concurrency Control and
Consistency"). This module knows nothing of the objects' contents (``body`` is opaque);
validation lives in :mod:`metalplane.conductor.hosts` and the API.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from metalplane.common.exceptions import Conflict, NotFound
from metalplane.db.engine import Database
from metalplane.db.models import KubeObject, KubeRevision, Node, Port

__all__ = [
    "AlreadyExists",
    "NodeLinks",
    "StaleVersion",
    "kube_create",
    "kube_delete",
    "kube_get",
    "kube_list",
    "kube_node_links",
    "kube_update",
]


class AlreadyExists(Conflict):
    """An object of that kind, namespace and name exists (HTTP 409, reason
    AlreadyExists)."""


class StaleVersion(Conflict):
    """A write named a ``resourceVersion`` that is no longer the object's (HTTP 409,
    reason Conflict)."""


def _next_revision(s: Session) -> int:
    s.execute(sa.update(KubeRevision).where(KubeRevision.id == 1)
              .values(value=KubeRevision.value + 1))
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
    q = sa.select(KubeObject).where(KubeObject.kind == kind)
    if namespace is not None:
        q = q.where(KubeObject.namespace == namespace)
    if name is not None:
        q = q.where(KubeObject.name == name)
    with db.read() as s:
        return list(s.execute(q.order_by(KubeObject.namespace, KubeObject.name)).scalars())


def kube_create(db: Database, kind: str, namespace: str, name: str,
                **values: Any) -> KubeObject:
    """Insert an object; ``values`` are further columns (``labels``, ``annotations``,
    ``finalizers``, ``body``, ``node_uuid``). Raises :class:`AlreadyExists`."""
    try:
        with db.write() as s:
            obj = KubeObject(kind=kind, namespace=namespace, name=name,
                             uid=str(uuidlib.uuid4()), generation=1,
                             resource_version=_next_revision(s), **values)
            s.add(obj)
            s.flush()
            return obj
    except IntegrityError:
        raise AlreadyExists(f'{kind} "{name}" already exists') from None


def kube_update(db: Database, kind: str, namespace: str, name: str,
                resource_version: int | None, **values: Any) -> KubeObject:
    """Replace the given columns of an object; its ``generation`` grows when ``body``
    changes. ``resource_version`` None skips the check (a patch applies to the current
    object). Raises :class:`NotFound`, :class:`StaleVersion`."""
    with db.write() as s:
        obj = _one(s, kind, namespace, name)
        if resource_version is not None and resource_version != obj.resource_version:
            raise StaleVersion(
                f'Operation cannot be fulfilled on {kind.lower()} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try "
                "again")
        if "body" in values and values["body"] != obj.body:
            obj.generation += 1
        for key, value in values.items():
            setattr(obj, key, value)
        obj.resource_version = _next_revision(s)
        s.flush()
        return obj


def kube_delete(db: Database, kind: str, namespace: str, name: str) -> KubeObject:
    """Delete an object and return it as it was. Raises :class:`NotFound`."""
    with db.write() as s:
        obj = _one(s, kind, namespace, name)
        s.delete(obj)
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
