"""The allocation and conductor endpoints of the Bare Metal API v1.

``/v1/allocations`` (API 1.52; PATCH 1.57; ``node`` backfill 1.58),
``/v1/nodes/{node}/allocation`` and ``/v1/conductors`` (API 1.49), in Ironic's shapes. A
request asking for an older micro-version gets Ironic's answer for one (404, or 405 for a
POST/PATCH). Allocations are processed before the answer: ``POST`` gives 201 with the
allocation ``active`` (its node_uuid set) or ``error`` (its last_error set).

Source: Bare Metal API reference (api-ref), "Allocations (allocations)", "Node Allocation
(allocations)" and "Conductors (conductors)".
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from metalplane.api import policy, views
from metalplane.api.versions import API_VERSION_STATE, MAX_VERSION
from metalplane.common.exceptions import Invalid, MetalplaneError, NotFound
from metalplane.conductor.allocations import Allocations
from metalplane.conductor.manager import Conductor
from metalplane.conductor.resources import TRAIT_PATTERN
from metalplane.db import api as db_api
from metalplane.db.models import Allocation, utcnow
from metalplane.db.models import Conductor as ConductorRow

__all__ = ["ALLOCATION_FIELDS", "CONDUCTOR_FIELDS", "AllocationCreate", "register"]

ALLOCATION_FIELDS = ("uuid", "name", "node_uuid", "state", "last_error", "resource_class",
                     "traits", "candidate_nodes", "extra", "owner", "created_at",
                     "updated_at", "links")
CONDUCTOR_FIELDS = ("hostname", "conductor_group", "alive", "drivers", "created_at",
                    "updated_at", "links")
CONDUCTOR_LIST_FIELDS = ("hostname", "conductor_group", "alive", "links")
ALLOCATIONS_VERSION, ALLOCATION_UPDATE_VERSION, BACKFILL_VERSION = (1, 52), (1, 57), (1, 58)
CONDUCTORS_VERSION = (1, 49)

# A trait as a node can carry it (os-traits' standard names and CUSTOM_ ones).
Trait = Annotated[StrictStr, StringConstraints(min_length=1, max_length=255,
                                               pattern=TRAIT_PATTERN)]


class AllocationCreate(BaseModel):
    """The body of ``POST /v1/allocations``: Ironic's schema (strings are not coerced; an
    unknown field, a wrong type, or a name over 255 characters is a 400 naming it)."""

    model_config = ConfigDict(extra="forbid")

    resource_class: StrictStr | None = Field(None, max_length=80)
    traits: list[Trait] | None = None
    candidate_nodes: list[StrictStr] | None = None
    name: StrictStr | None = Field(None, max_length=255)
    uuid: StrictStr | None = None
    extra: dict[str, Any] | None = None
    owner: StrictStr | None = Field(None, max_length=255)
    node: StrictStr | None = None


def _fields(fields: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    """The ``?fields=`` list. Raises :class:`Invalid` naming unknown ones."""
    if fields is None:
        return None
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    bad = [f for f in wanted if f not in allowed]
    if bad:
        raise Invalid(f'Field(s) "{", ".join(bad)}" are not valid')
    return wanted


def _limit(limit: int | None) -> int:
    if limit is not None and limit < 0:
        raise Invalid(f"Value must be positive: limit {limit}")
    return min(limit or views.MAX_LIMIT, views.MAX_LIMIT)


def _version(request: Request) -> tuple[int, int]:
    """The microversion of the request, as the middleware resolved it from either header
    (``X-OpenStack-Ironic-API-Version`` or ``OpenStack-API-Version: baremetal``); the
    latest when none was asked for."""
    version: tuple[int, int] = getattr(request.state, API_VERSION_STATE, MAX_VERSION)
    return version


class _NotAllowed(MetalplaneError):
    code = 405


def _require(request: Request, minimum: tuple[int, int], what: str,
             code: int = 404) -> None:
    """Ironic's answer to a micro-version that predates ``what``: 404 (or ``code``)."""
    if _version(request) < minimum:
        message = f"The API version does not allow {what}"
        raise (_NotAllowed(message) if code == 405 else NotFound(message))


def register(app: FastAPI, conductor: Conductor) -> None:
    """Add the allocation and conductor routes to ``app``."""
    allocs = Allocations(conductor)

    def allocation(request: Request, ident: str, rule: str) -> Allocation:
        """Allocation ``ident`` if ``rule`` allows the caller on it: 404 if the caller may
        not see it, 403 if ``rule`` forbids."""
        alloc = allocs.get(ident)
        policy.require(policy.principal(request), rule, policy.owner_target(alloc.owner),
                       hidden=f"Allocation {ident} could not be found.")
        return alloc

    def of_node(request: Request, ident: str, rule: str) -> Allocation:
        """The allocation of node ``ident`` (which the caller must see, else 404) if
        ``rule`` allows the caller on it (else 404 if it may not see it, 403)."""
        p = policy.principal(request)
        policy.require_node(p, "baremetal:node:get", db_api.get_node(conductor.db, ident),
                            ident)
        alloc = allocs.of_node(ident)
        policy.require(p, rule, policy.owner_target(alloc.owner),
                       hidden=f"Allocation for node {ident} was not found")
        return alloc

    def known_node(p: policy.Principal, ident: str) -> None:
        """A node a request names: one the caller may not see is unknown (400, as the
        allocation layer answers for a missing one)."""
        try:
            node = db_api.get_node(conductor.db, ident)
        except NotFound:
            return  # the allocation layer answers
        if not policy.may_see_node(p, node):
            raise Invalid(f"Node {ident} could not be found.")

    def allocation_view(a: Allocation, base: str, fields: list[str] | None = None,
                        node_uuids: dict[int, str] | None = None) -> dict[str, Any]:
        """An allocation as Ironic shows it: uuid, name, node_uuid, state, last_error,
        resource_class, traits, candidate_nodes, extra, owner, created_at, updated_at,
        links; ``fields`` limits the keys; ``node_uuids`` (node id -> UUID), when the
        caller read them for many allocations at once."""
        node_uuid = (allocs.node_uuid(a) if node_uuids is None
                     else node_uuids.get(a.node_id or 0))
        out: dict[str, Any] = {
            "uuid": a.uuid, "name": a.name, "node_uuid": node_uuid,
            "state": a.state, "last_error": a.last_error,
            "resource_class": a.resource_class, "traits": list(a.traits or []),
            "candidate_nodes": list(a.candidate_nodes or []), "extra": dict(a.extra or {}),
            "owner": a.owner, "created_at": views.timestamp(a.created_at),
            "updated_at": views.timestamp(a.updated_at),
            "links": views.links(base, "allocations", a.uuid),
        }
        if fields is not None:
            out = {k: v for k, v in out.items() if k in fields}
        return out

    # ------------------------------------------------------------ allocations
    @app.get("/v1/allocations", summary="List allocations", tags=["allocations"])
    def list_allocations(request: Request, node: str | None = None,
                         resource_class: str | None = None, state: str | None = None,
                         owner: str | None = None, limit: int | None = None,
                         marker: str | None = None, sort_key: str = "id",
                         sort_dir: str = "asc", fields: str | None = None) -> dict[str, Any]:
        """``{"allocations": [...], "next": url}``; filters node (UUID or name; unknown:
        400), resource_class, state, owner. Raises Invalid (400), NotFound (404 before
        1.52)."""
        _require(request, ALLOCATIONS_VERSION, "allocations")
        wanted = _fields(fields, ALLOCATION_FIELDS)
        limit = _limit(limit)
        p = policy.principal(request)
        if p.project is not None:  # its own allocations only
            if node is not None:
                known_node(p, node)
            if owner is not None and owner != p.project:
                return {"allocations": []}
            owner = p.project
        found = allocs.list_allocations(node, resource_class, state, owner, limit, marker,
                                        sort_key, sort_dir)
        base = views.base_url(request)
        uuids = allocs.node_uuids(found)  # one query, not one per allocation
        out: dict[str, Any] = {"allocations": [allocation_view(a, base, wanted, uuids)
                                               for a in found]}
        if len(found) == limit:
            out["next"] = views.next_link(request, limit, found[-1].uuid)
        return out

    @app.post("/v1/allocations", status_code=201, summary="Create an allocation",
              tags=["allocations"])
    def create_allocation(request: Request, response: Response,
                          body: AllocationCreate = Body(...)) -> dict[str, Any]:
        """201 with the allocation, processed: ``active`` with node_uuid, or ``error``
        with last_error. Raises Invalid (400), Conflict (409, duplicate name or UUID)."""
        _require(request, ALLOCATIONS_VERSION, "allocations", code=405)
        values = body.model_dump(exclude_none=True)
        if "node" in values:
            asked = _version(request)
            if asked is not None and asked < BACKFILL_VERSION:
                raise Invalid("Cannot set node when creating an allocation in this API "
                              "version")
        p = policy.principal(request)
        policy.require_creation(p, "baremetal:allocation:create", values)
        for ident in [*values.get("candidate_nodes", []), *filter(None, [values.get("node")])]:
            known_node(p, str(ident))
        alloc = allocs.create(values)
        base = views.base_url(request)
        response.headers["Location"] = f"{base}/v1/allocations/{alloc.uuid}"
        return allocation_view(alloc, base)

    @app.get("/v1/allocations/{ident}", summary="Show an allocation", tags=["allocations"])
    def show_allocation(ident: str, request: Request,
                        fields: str | None = None) -> dict[str, Any]:
        """The allocation (UUID or name). Raises NotFound: "Allocation X could not be
        found." """
        _require(request, ALLOCATIONS_VERSION, "allocations")
        wanted = _fields(fields, ALLOCATION_FIELDS)
        return allocation_view(allocation(request, ident, "baremetal:allocation:get"),
                               views.base_url(request), wanted)

    @app.patch("/v1/allocations/{ident}", summary="Update an allocation's name or extra",
               tags=["allocations"])
    def patch_allocation(ident: str, request: Request,
                         patch: list[dict[str, Any]] = Body(...)) -> dict[str, Any]:
        """JSON patch of ``/name`` and ``/extra`` only (any other path: 400)."""
        _require(request, ALLOCATION_UPDATE_VERSION, "updating allocations", code=405)
        allocation(request, ident, "baremetal:allocation:update")
        return allocation_view(allocs.update(ident, patch), views.base_url(request))

    @app.delete("/v1/allocations/{ident}", status_code=204, summary="Delete an allocation",
                tags=["allocations"])
    def delete_allocation(ident: str, request: Request) -> Response:
        """204; the node is freed (allocation and instance_uuid cleared). 409 if the node
        is active and not in maintenance, or locked."""
        _require(request, ALLOCATIONS_VERSION, "allocations")
        allocation(request, ident, "baremetal:allocation:delete")
        allocs.delete(ident)
        return Response(status_code=204)

    @app.get("/v1/nodes/{ident}/allocation", summary="The node's allocation",
             tags=["allocations"])
    def node_allocation(ident: str, request: Request,
                        fields: str | None = None) -> dict[str, Any]:
        """The allocation of the node, or 404 ("Allocation for node X was not found")."""
        _require(request, ALLOCATIONS_VERSION, "allocations")
        wanted = _fields(fields, ALLOCATION_FIELDS)
        return allocation_view(of_node(request, ident, "baremetal:allocation:get"),
                               views.base_url(request), wanted)

    @app.delete("/v1/nodes/{ident}/allocation", status_code=204,
                summary="Delete the node's allocation", tags=["allocations"])
    def delete_node_allocation(ident: str, request: Request) -> Response:
        _require(request, ALLOCATIONS_VERSION, "allocations")
        of_node(request, ident, "baremetal:allocation:delete")
        allocs.delete_of_node(ident)
        return Response(status_code=204)

    # ------------------------------------------------------------ conductors
    def conductor_view(c: ConductorRow, base: str,
                       fields: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
        """hostname, conductor_group, alive (online and a heartbeat within
        heartbeat_timeout), drivers, created_at, updated_at, links."""
        beat = c.updated_at or c.created_at
        alive = bool(c.online) and beat is not None and (
            utcnow() - beat < dt.timedelta(seconds=conductor.settings.heartbeat_timeout))
        out: dict[str, Any] = {
            "hostname": c.hostname, "conductor_group": c.conductor_group or "",
            "alive": alive, "drivers": sorted(c.drivers or []),
            "created_at": views.timestamp(c.created_at),
            "updated_at": views.timestamp(c.updated_at),
            "links": views.links(base, "conductors", c.hostname),
        }
        if fields is not None:
            out = {k: v for k, v in out.items() if k in fields}
        return out

    @app.get("/v1/conductors", summary="List conductors", tags=["conductors"])
    def list_conductors(request: Request, detail: bool | None = None,
                        fields: str | None = None, limit: int | None = None,
                        marker: str | None = None, sort_key: str = "id",
                        sort_dir: str = "asc") -> dict[str, Any]:
        """``{"conductors": [...]}``: hostname, conductor_group, alive and links, or every
        field with ``detail=true``; ``fields=`` picks. Raises Invalid (400)."""
        _require(request, CONDUCTORS_VERSION, "conductors")
        policy.require(policy.principal(request), "baremetal:conductor:get")
        if detail is not None and fields is not None:
            raise Invalid("Can not specify ?detail=True and fields in the same request.")
        wanted: list[str] | tuple[str, ...] | None = _fields(fields, CONDUCTOR_FIELDS)
        if wanted is None and not detail:
            wanted = CONDUCTOR_LIST_FIELDS
        limit = _limit(limit)
        if sort_key in ("alive", "drivers"):
            raise Invalid(f"The sort_key value {sort_key} is an invalid field for sorting")
        rows = db_api.list_conductors(conductor.db, limit, marker, sort_key, sort_dir)
        base = views.base_url(request)
        out: dict[str, Any] = {"conductors": [conductor_view(c, base, wanted) for c in rows]}
        if len(rows) == limit:
            out["next"] = views.next_link(request, limit, rows[-1].hostname)
        return out

    @app.get("/v1/conductors/{hostname}", summary="Show a conductor", tags=["conductors"])
    def show_conductor(hostname: str, request: Request,
                       fields: str | None = None) -> dict[str, Any]:
        """Every field of the conductor (or ``fields=``). Raises NotFound: "Conductor X
        could not be found." """
        _require(request, CONDUCTORS_VERSION, "conductors")
        policy.require(policy.principal(request), "baremetal:conductor:get")
        wanted = _fields(fields, CONDUCTOR_FIELDS)
        return conductor_view(db_api.get_conductor(conductor.db, hostname),
                              views.base_url(request), wanted)
