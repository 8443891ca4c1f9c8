"""Allocations: finding a node of a resource class with some traits, and giving it away.

An allocation asks for one ``available`` node of a ``resource_class`` carrying all of
``traits`` (among ``candidate_nodes`` if given, owned or leased by ``owner`` if given). The
node is taken under its lock and re-checked there, and the database write that takes it
(:func:`metalplane.db.api.allocate_node`) only succeeds on a node with no allocation and no
instance_uuid: two allocations never get the same node. Allocations are processed inside
the request (Ironic does it on a conductor thread, answering ``allocating`` first); the
allocation is ``active`` or ``error`` when the API answers, which the clients' ``--wait``
accepts at once.

Source: Bare Metal API reference, "Allocations (allocations)" (API 1.52, update 1.57,
backfill 1.58, owner 1.60), and Ironic's ``ironic/conductor/allocations.py`` for the
behaviour and the error texts.
"""

from __future__ import annotations

import logging
import random
import time
import uuid as uuidlib
from typing import Any

import jsonpatch

from metalplane.common.exceptions import Conflict, Invalid, InvalidState, NodeLocked, NotFound
from metalplane.conductor.manager import Conductor
from metalplane.conductor.resources import valid_name
from metalplane.db import api as db_api
from metalplane.db.models import Allocation, Node
from metalplane.lifecycle import states

__all__ = ["ACTIVE", "ALLOCATING", "ERROR", "PATCH_ALLOWED_FIELDS", "Allocations"]

LOG = logging.getLogger(__name__)

ALLOCATING, ACTIVE, ERROR = "allocating", "active", "error"
PATCH_ALLOWED_FIELDS = ("name", "extra")
# Rounds over the candidates when some were locked by other work (Ironic retries
# node_locked_retry_attempts = 3 times, node_locked_retry_interval = 1 s apart).
LOCKED_RETRIES = 3
LOCKED_RETRY_WAIT = 0.5
# States in which a node's allocation may go (Ironic's UPDATE_ALLOWED_STATES).
_DEALLOCATE_STATES = states.RESTING_STATES | states.WAIT_STATES | {states.INSPECTING}


class _Failed(Exception):
    """Ironic's AllocationFailed: the allocation ends in ``error`` with this text."""


def check_name(name: str | None) -> None:
    """Raises :class:`Invalid` unless ``name`` is a valid logical name (letters, digits and
    ``-._~``, not UUID-like), Ironic's rule for allocation names."""
    if name is None:
        return
    if not valid_name(name):
        raise Invalid(f"Cannot create allocation with invalid name '{name}'")


class Allocations:
    """Create, list, change and delete allocations for the API."""

    def __init__(self, conductor: Conductor) -> None:
        self.c = conductor
        self.db = conductor.db

    # ---------------------------------------------------------------- reading
    def get(self, ident: str) -> Allocation:
        """The allocation ``ident`` (UUID or name). Raises :class:`NotFound`."""
        return db_api.get_allocation(self.db, ident)

    def node_uuid(self, alloc: Allocation) -> str | None:
        """The UUID of the allocation's node, or None."""
        return self.node_uuids([alloc]).get(alloc.node_id or 0)

    def node_uuids(self, allocs: list[Allocation]) -> dict[int, str]:
        """``{node id: node UUID}`` of these allocations' nodes, in one query."""
        ids = sorted({a.node_id for a in allocs if a.node_id is not None})
        if not ids:
            return {}
        return {n.id: n.uuid for n in db_api.rows_where(self.db, Node, id=ids)}

    def list_allocations(self, node: str | None = None, resource_class: str | None = None,
             state: str | None = None, owner: str | None = None, limit: int | None = None,
             marker: str | None = None, sort_key: str = "id",
             sort_dir: str = "asc") -> list[Allocation]:
        """Allocations matching the filters. A ``node`` that does not exist is
        :class:`Invalid` (400, as Ironic answers); bad sort keys or markers too."""
        filters: dict[str, Any] = {}
        if node is not None:
            try:
                filters["node_id"] = db_api.get_node(self.db, node).id
            except NotFound as exc:
                raise Invalid(exc.message) from None
        for key, value in (("resource_class", resource_class), ("state", state),
                           ("owner", owner)):
            if value is not None:
                filters[key] = value
        return db_api.list_allocations(self.db, filters, limit, marker, sort_key, sort_dir)

    def of_node(self, node_ident: str) -> Allocation:
        """The allocation holding node ``node_ident``. Raises :class:`NotFound` for an
        unknown node or one without an allocation."""
        node = db_api.get_node(self.db, node_ident)
        alloc = db_api.allocation_of_node(self.db, node.id)
        if alloc is None:
            raise NotFound(f"Allocation for node {node_ident} was not found")
        return alloc

    # ---------------------------------------------------------------- creating
    def create(self, body: dict[str, Any]) -> Allocation:
        """Create an allocation from ``body`` (keys: resource_class, traits,
        candidate_nodes, name, uuid, extra, owner, node; types already checked) and
        process it: the answer is ``active`` with a node, or ``error`` with last_error.

        With ``node`` (API 1.58 backfill) the allocation records that node, which must be
        ``active`` and match the request. Raises :class:`Invalid` (400: no resource_class,
        bad name or UUID, unknown candidate or node, a backfill that does not match),
        :class:`Conflict` (409: duplicate name or UUID).
        """
        check_name(body.get("name"))
        values: dict[str, Any] = {
            "name": body.get("name"), "owner": body.get("owner"),
            "resource_class": body.get("resource_class"),
            "traits": list(body.get("traits") or []),
            "extra": dict(body.get("extra") or {}), "state": ALLOCATING,
        }
        node: Node | None = None
        if body.get("node"):
            try:
                node = db_api.get_node(self.db, str(body["node"]))
            except NotFound as exc:
                raise Invalid(exc.message) from None
        if not values["resource_class"]:
            if node is None:
                raise Invalid("The resource_class field is mandatory when not backfilling")
            values["resource_class"] = node.resource_class
        values["candidate_nodes"] = self._candidate_uuids(body.get("candidate_nodes") or [])
        uuid = body.get("uuid")
        if uuid:
            if not db_api.is_uuid_like(uuid):
                raise Invalid(f"Expected a UUID but received {uuid}.")
            values["uuid"] = str(uuidlib.UUID(uuid))
        elif node is not None and node.instance_uuid:
            values["uuid"] = node.instance_uuid
        alloc = db_api.create_allocation(self.db, values)
        if node is not None:
            return self._backfill(alloc, node)
        return self._allocate(alloc)

    def claim(self, resource_class: str | None, candidate_nodes: list[str], uuid: str,
              extra: dict[str, Any]) -> Allocation:
        """Allocate one of ``candidate_nodes`` (node UUIDs of ``resource_class``) for a
        consumer inside metalplane: the Machine controller claiming a BareMetalHost's node
        (:mod:`metalplane.conductor.machines`). Unlike :meth:`create` (the API's, which
        Ironic's rule binds) ``resource_class`` may be None: a host's node has none, as
        Metal3's hosts have none. Returns the allocation, ``active`` or ``error``. Raises
        :class:`Conflict` for a duplicate ``uuid``."""
        alloc = db_api.create_allocation(self.db, {
            "uuid": uuid, "resource_class": resource_class, "traits": [],
            "candidate_nodes": list(candidate_nodes), "extra": dict(extra),
            "state": ALLOCATING})
        return self._allocate(alloc)

    def _candidate_uuids(self, idents: list[str]) -> list[str]:
        out: list[str] = []
        for ident in idents:
            try:
                uuid = db_api.get_node(self.db, ident).uuid
            except NotFound as exc:
                raise Invalid(exc.message) from None
            if uuid not in out:
                out.append(uuid)
        return out

    def _failed(self, alloc: Allocation, error: str, wrap: bool = True) -> Allocation:
        """Mark ``alloc`` failed; its last_error is Ironic's AllocationFailed text
        ("Failed to process allocation <uuid>: <error>.") or, unwrapped, ``error``."""
        message = f"Failed to process allocation {alloc.uuid}: {error}." if wrap else error
        LOG.error("%s", message)
        return db_api.update_allocation(self.db, alloc.id, {
            "state": ERROR, "last_error": message, "node_id": None})

    def _candidates(self, alloc: Allocation) -> list[Node]:
        nodes = db_api.allocation_candidates(self.db, alloc.resource_class, alloc.owner,
                                             alloc.candidate_nodes or None)
        if not nodes:
            if alloc.candidate_nodes:
                raise _Failed("none of the requested nodes are available and match the "
                              f"resource class {alloc.resource_class}")
            raise _Failed(f"no available nodes match the resource class "
                          f"{alloc.resource_class}")
        wanted = set(alloc.traits or [])
        if wanted:
            nodes = [n for n in nodes if wanted <= set(n.traits or [])]
            if not nodes:
                raise _Failed("no suitable nodes have the requested traits "
                              f"{', '.join(sorted(wanted))}")
        random.shuffle(nodes)  # concurrent allocations start on different nodes
        if alloc.name:  # a node named as the allocation goes first
            nodes.sort(key=lambda n: n.name != alloc.name)
        return nodes

    def _still_fits(self, node: Node, alloc: Allocation) -> bool:
        """Ironic's _verify_node: the node, read under its lock, still matches."""
        return (not node.maintenance and node.instance_uuid is None
                and node.allocation_id is None
                and node.provision_state == states.AVAILABLE
                and node.resource_class == alloc.resource_class
                and set(alloc.traits or []) <= set(node.traits or [])
                and (not alloc.owner or alloc.owner in (node.owner, node.lessee)))

    def _take(self, node: Node, alloc: Allocation) -> Allocation:
        """Give ``node`` (its lock held, checked) to ``alloc``: instance_uuid is the
        allocation's UUID and instance_info/traits its traits, as Ironic sets them."""
        info = {**(node.instance_info or {}), "traits": list(alloc.traits or [])}
        return db_api.allocate_node(self.db, alloc.id, node.id, {
            "instance_uuid": alloc.uuid, "instance_info": info})

    def _allocate(self, alloc: Allocation) -> Allocation:
        try:
            for attempt in range(LOCKED_RETRIES):
                locked = 0
                for node in self._candidates(alloc):
                    try:
                        with self.c.acquire(node.uuid, "allocating") as task:
                            if not self._still_fits(task.node, alloc):
                                continue
                            taken = self._take(task.node, alloc)
                        LOG.info("Node %s has been reserved for allocation %s", node.uuid,
                                 alloc.uuid)
                        return taken
                    except NodeLocked:
                        locked += 1
                    except (NotFound, Conflict):  # deleted, or taken meanwhile
                        continue
                if not locked:
                    raise _Failed("all nodes were filtered out during reservation")
                if attempt + 1 < LOCKED_RETRIES:
                    time.sleep(LOCKED_RETRY_WAIT)
            raise _Failed(f"could not reserve any of {locked} suitable nodes")
        except _Failed as exc:
            return self._failed(alloc, str(exc))
        except Exception as exc:  # an allocation must not stay 'allocating' (Ironic too)
            LOG.exception("Unexpected exception during processing of allocation %s",
                          alloc.uuid)
            return self._failed(alloc, f"Unexpected exception during allocation: {exc}",
                                wrap=False)

    def _backfill(self, alloc: Allocation, node: Node) -> Allocation:
        """Record ``node`` (already deployed) as ``alloc``'s. Raises :class:`Invalid`
        listing what does not match, after marking the allocation failed."""
        try:
            with self.c.acquire(node.uuid, "allocation backfilling") as task:
                n = task.node
                errors = []
                if n.provision_state != states.ACTIVE:
                    errors.append('Node must be in the "active" state, but the current '
                                  f'state is "{n.provision_state}"')
                if alloc.resource_class and n.resource_class != alloc.resource_class:
                    errors.append(f"Resource class {n.resource_class} does not match the "
                                  f"requested resource class {alloc.resource_class}")
                if alloc.traits and not set(alloc.traits) <= set(n.traits or []):
                    errors.append(f"List of traits {n.traits} does not match the "
                                  f"requested traits {alloc.traits}")
                if alloc.candidate_nodes and n.uuid not in alloc.candidate_nodes:
                    errors.append("Candidate nodes must be empty or contain the target "
                                  f"node, but got {alloc.candidate_nodes}")
                if n.allocation_id is not None or (n.instance_uuid
                                                   and n.instance_uuid != alloc.uuid):
                    errors.append(f"Node {n.uuid} is associated with instance "
                                  f"{n.instance_uuid}")
                if errors:
                    raise _Failed(f"Cannot backfill an allocation for node {n.uuid}: "
                                  + "; ".join(errors))
                info = {**(n.instance_info or {}), "traits": list(alloc.traits or [])}
                return db_api.allocate_node(self.db, alloc.id, n.id, {
                    "instance_uuid": alloc.uuid, "instance_info": info},
                    instance_uuid=alloc.uuid)
        except (_Failed, Conflict) as exc:
            failed = self._failed(alloc, str(exc) if isinstance(exc, _Failed)
                                  else exc.message)
            raise Invalid(failed.last_error or "backfilling failed") from None

    # ---------------------------------------------------------------- changing
    def update(self, ident: str, patch: Any) -> Allocation:
        """Apply a JSON patch to the allocation's ``name`` and ``extra`` (API 1.57).
        Raises :class:`Invalid` for any other path or a bad name, :class:`Conflict` for a
        duplicate name, :class:`NotFound`."""
        if not isinstance(patch, list) or not patch:
            raise Invalid("a PATCH body must be a non-empty JSON patch list")
        for op in patch:
            if not isinstance(op, dict) or "op" not in op or "path" not in op:
                raise Invalid("each patch operation needs 'op' and 'path'")
            top = str(op["path"]).split("/")[1] if "/" in str(op["path"]) else ""
            if top not in PATCH_ALLOWED_FIELDS:
                raise Invalid(f"Cannot patch {op['path']}. Only the following can be "
                              f"updated: {', '.join(PATCH_ALLOWED_FIELDS)}")
        alloc = self.get(ident)
        doc = {"name": alloc.name, "extra": dict(alloc.extra or {})}
        try:
            new = jsonpatch.apply_patch(doc, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise Invalid(f"patch does not apply: {exc}") from None
        name, extra = new.get("name"), new.get("extra")
        if name is not None and not isinstance(name, str):
            raise Invalid("name must be a string or null")
        if name is not None and len(name) > 255:
            raise Invalid("name must be at most 255 characters long")
        check_name(name)
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise Invalid("extra must be an object")
        changed = {k: v for k, v in (("name", name), ("extra", extra))
                   if getattr(alloc, k) != v}
        if not changed:
            return alloc
        return db_api.update_allocation(self.db, alloc.id, changed)

    def delete(self, ident: str) -> None:
        """Delete the allocation ``ident`` and free its node (allocation and
        instance_uuid cleared), under the node's lock. Raises :class:`InvalidState` (409)
        if the node is active or busy and not in maintenance, :class:`NodeLocked`,
        :class:`NotFound`."""
        self._destroy(self.get(ident))

    def delete_of_node(self, node_ident: str) -> None:
        """Delete the allocation of node ``node_ident``; as :meth:`delete`."""
        self._destroy(self.of_node(node_ident))

    def _destroy(self, alloc: Allocation) -> None:
        if alloc.node_id is None:
            db_api.destroy_allocation(self.db, alloc)
            return
        try:
            node = db_api.node_by_id(self.db, alloc.node_id)
        except NotFound:
            db_api.destroy_allocation(self.db, alloc)
            return
        with self.c.acquire(node.uuid, "allocation deletion") as task:
            n = task.node
            if not n.maintenance:
                if n.target_provision_state and n.provision_state not in _DEALLOCATE_STATES:
                    raise InvalidState(
                        f"Cannot remove allocation {alloc.uuid} for node {n.uuid}, because "
                        f"the node is in state {n.provision_state} where updates are not "
                        "allowed (and maintenance mode is off)")
                if n.provision_state == states.ACTIVE:
                    raise InvalidState(
                        f"Cannot remove allocation {alloc.uuid} for node {n.uuid}, because "
                        "the node is active (and maintenance mode is off)")
            info = {k: v for k, v in (n.instance_info or {}).items() if k != "traits"}
            db_api.destroy_allocation(self.db, alloc, {"instance_info": info})
        LOG.info("Deleted allocation %s of node %s", alloc.uuid, node.uuid)
