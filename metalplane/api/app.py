"""The HTTP API: OpenStack Bare Metal API v1 paths, shapes and errors. No business logic.

Errors answer ``{"error_message": "<JSON of {faultstring, faultcode, debuginfo}>"}`` as
Ironic does, so openstacksdk and the ``baremetal`` CLI read them. Every answer carries
``X-OpenStack-Ironic-API-Version`` (and the min/max headers); a request asking for a
version outside the range gets 406. Source: Bare Metal API reference (api-ref), v1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import jsonpatch
import pydantic
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from metalplane import __version__
from metalplane.api import (
    agent_api,
    allocation_api,
    bios_api,
    bmc_wait,
    inspection_api,
    network_api,
    policy,
    schemas,
    view_schemas,
    views,
)
from metalplane.api.auth import TooManyAttempts, UsersFile
from metalplane.api.schemas_common import printable, to_bool
from metalplane.api.versions import API_VERSION_STATE, MAX_VERSION, MIN_VERSION
from metalplane.common.exceptions import Invalid, MetalplaneError, NotFound
from metalplane.conductor.manager import Conductor
from metalplane.conductor.resources import NodeResources, normalize_mac
from metalplane.db import api as db_api
from metalplane.drivers.base import INTERFACE_KINDS, NOOP_INTERFACES
from metalplane.drivers.registry import hardware_types
from metalplane.lifecycle.networking import NETWORK_INTERFACES

__all__ = ["MAX_VERSION", "MIN_VERSION", "create_app"]

LOG = logging.getLogger(__name__)
PUBLIC_PATHS = ("/", "/v1", "/v1/", "/openapi.json", "/docs", "/docs/oauth2-redirect")
V1_RESOURCES = ("nodes", "ports", "portgroups", "drivers", "allocations", "conductors",
                "lookup", "heartbeat", "switches")
NODE_FILTERS = ("provision_state", "owner", "conductor_group", "driver", "resource_class",
                "maintenance", "lessee")


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


_NEUTRON_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden",
                  404: "HTTPNotFound", 409: "HTTPConflict", 429: "HTTPTooManyRequests",
                  503: "HTTPServiceUnavailable"}


def error_response(status: int, message: str, path: str = "") -> JSONResponse:
    """Ironic's error shape, or Neutron's under ``/v2.0``."""
    if path.startswith("/v2.0"):
        return JSONResponse({"NeutronError": {
            "type": _NEUTRON_TYPES.get(status, "HTTPInternalServerError"),
            "message": message, "detail": ""}}, status_code=status)
    fault = {"faultstring": message, "faultcode": "Client" if status < 500 else "Server",
             "debuginfo": None}
    return JSONResponse({"error_message": json.dumps(fault)}, status_code=status)


# Threads for the blocking (``def``) endpoints: as many as anyio's default limiter allows
# FastAPI's own thread pool, started as needed.
_BLOCKING = concurrent.futures.ThreadPoolExecutor(max_workers=40, thread_name_prefix="api")


class OffloadedRoute(APIRoute):
    """Seam on FastAPI's ``APIRoute``: a blocking (``def``) endpoint runs off the event loop
    in one hop to a thread of ``_BLOCKING`` (asyncio's ``run_in_executor``), in the
    request's context, instead of FastAPI's two trips through anyio's worker threads (the
    call, then the validation of what it returns).

    Relies on FastAPI (checked by tests/unit/test_library_seams.py): it reads an
    endpoint's parameters through ``__wrapped__`` (``inspect.signature``), so the async
    wrapper keeps the endpoint's path, query and body parameters, and it awaits an
    endpoint that is a coroutine function on the loop instead of sending it to anyio.
    What runs where is unchanged: endpoint code never runs on the loop.
    Measured: server CPU per node GET 0.49 → 0.42 ms (docs/benchmarks.md, "Library seams").
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = self.offloaded(endpoint)
        super().__init__(path, endpoint, **kwargs)

    @staticmethod
    def offloaded(fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as an async endpoint that runs it on ``_BLOCKING``."""
        @functools.wraps(fn)
        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(_BLOCKING, call)
        return endpoint


def create_app(conductor: Conductor, auth_strategy: str = "noauth",
               users_file: UsersFile | None = None) -> FastAPI:
    """The FastAPI application serving ``conductor``. ``auth_strategy`` is ``noauth`` or
    ``http_basic`` (then ``users_file`` is required)."""
    if auth_strategy == "http_basic" and users_file is None:
        raise Invalid("http_basic authentication needs a users file")
    app = FastAPI(title="metalplane Bare Metal API", version=__version__,
                  description="OpenStack Bare Metal API v1 compatible node lifecycle API.",
                  redoc_url=None)
    app.router.route_class = OffloadedRoute  # for every route added below
    res = NodeResources(conductor)

    # ------------------------------------------------------------ middleware and errors
    async def version_and_auth(request: Request) -> tuple[
            tuple[int, int], policy.Principal | None, Response | None]:
        """The API version asked for, who asks (see :mod:`metalplane.api.policy`; None on
        a public path under http_basic), or the response that refuses the request."""
        requested = request.headers.get("X-OpenStack-Ironic-API-Version")
        standard = request.headers.get("OpenStack-API-Version", "")
        if not requested and standard.lower().startswith("baremetal "):
            requested = standard[len("baremetal "):]
        version = MAX_VERSION
        if requested and requested.strip().lower() != "latest":
            try:
                major, minor = (int(x) for x in requested.strip().split("."))
                version = (major, minor)
            except ValueError:
                return version, None, error_response(
                    400, f"Invalid API version header '{requested}'")
            if not MIN_VERSION <= version <= MAX_VERSION:
                resp = error_response(406, f"Version {requested} was requested but the minor "
                                      f"version is not supported by this service. The "
                                      f"supported version range is: [{_fmt(MIN_VERSION)}, "
                                      f"{_fmt(MAX_VERSION)}].")
                _version_headers(resp, MAX_VERSION)
                return version, None, resp
        path = request.url.path
        if auth_strategy != "http_basic":
            return version, policy.NOAUTH, None
        if path in PUBLIC_PATHS or path.startswith(agent_api.PUBLIC_PREFIXES):
            return version, None, None
        assert users_file is not None
        address = request.client.host if request.client else "local"  # unix socket
        try:
            who = await users_file.authenticate(request.headers.get("Authorization"), address)
        except TooManyAttempts as exc:
            resp = error_response(exc.code, exc.message)
            resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return version, None, resp
        except MetalplaneError as exc:
            resp = error_response(exc.code, exc.message)
            resp.headers["WWW-Authenticate"] = 'Basic realm="metalplane"'
            return version, None, resp
        return version, who, None

    app.add_middleware(_BodyGuard, limit=conductor.settings.max_request_body_size)
    app.add_middleware(_VersionAndAuth, check=version_and_auth)  # outermost

    @app.exception_handler(MetalplaneError)
    async def on_error(request: Request, exc: MetalplaneError) -> JSONResponse:
        if exc.code >= 500:
            LOG.warning("request failed: %s", exc.message)
        resp = error_response(exc.code, exc.message, request.url.path)
        if exc.retryable:  # typed, for clients (the agent) that must not parse messages
            wait = getattr(exc, "retry_after", 1)
            resp.headers.setdefault("Retry-After", str(max(1, math.ceil(wait))))
        return resp

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "Invalid input: " + validation_message(exc.errors()),
                              request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = error_response(exc.status_code, str(exc.detail), request.url.path)
        resp.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not the first route's one
            routes = [r for r in app.routes if isinstance(r, APIRoute)
                      and r.matches(request.scope)[0] != Match.NONE]
            literal = [r for r in routes if not r.param_convertors]  # /v1/nodes/detail
            methods = {m for r in (literal or routes) for m in r.methods or ()}
            resp.headers["Allow"] = ", ".join(sorted(methods))
        return resp

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unexpected error")
        return error_response(500, f"Internal error: {type(exc).__name__}; see the server log",
                              request.url.path)

    base_url = views.base_url

    # ------------------------------------------------------------ root
    network_port = conductor.settings.network_port

    @app.get("/", summary="API versions (Ironic's; Neutron's on the networking listener)")
    def root(request: Request) -> dict[str, Any]:
        base = base_url(request)
        server = request.scope.get("server")
        if network_port and server and server[1] == network_port:
            return network_api.neutron_versions_document(base)
        return {"name": "OpenStack Ironic API",
                "description": "metalplane: an Ironic-compatible Bare Metal API",
                "default_version": _version_doc(base), "versions": [_version_doc(base)]}

    @app.get("/v1", summary="API v1 root")
    def v1_root(request: Request) -> dict[str, Any]:
        base = base_url(request)
        doc: dict[str, Any] = {
            "id": "v1",
            "links": [{"href": f"{base}/v1/", "rel": "self"}],
            "media_types": [{"base": "application/json",
                             "type": "application/vnd.openstack.ironic.v1+json"}],
            "version": _version_doc(base)}
        for kind in V1_RESOURCES:
            doc[kind] = [{"href": f"{base}/v1/{kind}/", "rel": "self"},
                         {"href": f"{base}/{kind}/", "rel": "bookmark"}]
        return doc

    # ------------------------------------------------------------ nodes
    def _defaults(driver: str) -> dict[str, str]:
        try:
            hw = conductor.registry.hardware_type(driver)
        except MetalplaneError:
            return {}
        defaults = {}
        for k in INTERFACE_KINDS:
            try:
                defaults[f"{k}_interface"] = conductor.registry.default_interface(hw, k)
            except MetalplaneError:
                defaults[f"{k}_interface"] = hw.default(k)
        return {**defaults,
                **{f"{k}_interface": v for k, v in NOOP_INTERFACES.items()},
                "network_interface": conductor.settings.default_network_interface}

    def _node_doc(node: Any, request: Request, fields: list[str] | None = None) -> dict[str, Any]:
        doc = views.node_view(node, base_url(request), fields, _defaults(node.driver),
                              conductor.host)
        return policy.redact_node(policy.principal(request), policy.node_target(node), doc)

    def _node(request: Request, ident: str, rule: str) -> Any:
        """Node ``ident`` if ``rule`` allows the caller on it: 404 if the caller may not
        see it, 403 if it may but ``rule`` forbids (:mod:`metalplane.api.policy`)."""
        node = res.get_node(ident)
        policy.require_node(policy.principal(request), rule, node, ident)
        return node

    async def _node_async(request: Request, ident: str, rule: str) -> Any:
        """:func:`_node` off the event loop (it reads the store)."""
        call = functools.partial(_node, request, ident, rule)
        return await asyncio.get_running_loop().run_in_executor(_BLOCKING, call)

    def _node_ref(request: Request, ident: Any, what: str) -> Any:
        """The node a body names as ``what`` (a port's or portgroup's ``node_uuid``): one
        the caller may not see is as unknown (400), as Ironic answers."""
        try:
            node = res.get_node(str(ident))
        except MetalplaneError:
            return None  # the resource layer answers for a missing one
        if not policy.may_see_node(policy.principal(request), node):
            raise Invalid(f"{what} {ident} is not a known node")
        return node

    def _list_nodes(request: Request, detail: bool, fields: str | None, limit: int | None,
                    marker: str | None, sort_key: str, sort_dir: str) -> dict[str, Any]:
        if limit is not None and limit < 0:
            raise Invalid("limit must be a positive number")
        limit = min(limit or views.MAX_LIMIT, views.MAX_LIMIT)
        filters: dict[str, Any] = {}
        for key in NODE_FILTERS:
            if key in request.query_params:
                value: Any = request.query_params[key]
                if key == "maintenance":
                    try:
                        value = to_bool(value)
                    except ValueError as exc:
                        raise Invalid(f"maintenance: {exc}") from None
                filters[key] = value
        wanted = None if detail else [*list(views.NODE_LIST_FIELDS), "links"]
        if fields:
            wanted = [f.strip() for f in fields.split(",") if f.strip()] + ["uuid"]
        # only the columns shown (and the driver, for its interface defaults)
        # (and owner and lessee, which the policy reads)
        columns = None if wanted is None else sorted(
            {"uuid", "driver", "owner", "lessee",
             *(f for f in wanted if f in views.NODE_FIELDS),
             *(c for f in wanted for c in views.DERIVED_NODE_FIELDS.get(f, ()))})
        nodes = db_api.list_nodes(conductor.db, filters, limit, marker, sort_key, sort_dir,
                                  columns, project=policy.scope(policy.principal(request)))
        out: dict[str, Any] = {"nodes": [_node_doc(n, request, wanted) for n in nodes]}
        if len(nodes) == limit:
            out["next"] = views.next_link(request, limit, nodes[-1].uuid)
        return out

    @app.get("/v1/nodes", summary="List nodes")
    def list_nodes(request: Request, detail: bool = False, fields: str | None = None,
                   limit: int | None = None, marker: str | None = None,
                   sort_key: str = "id", sort_dir: str = "asc",
                   provision_state: str | None = None, owner: str | None = None,
                   conductor_group: str | None = None) -> dict[str, Any]:
        return _list_nodes(request, detail, fields, limit, marker, sort_key, sort_dir)

    @app.get("/v1/nodes/detail", summary="List nodes with all fields")
    def list_nodes_detail(request: Request, limit: int | None = None, marker: str | None = None,
                          sort_key: str = "id", sort_dir: str = "asc") -> dict[str, Any]:
        return _list_nodes(request, True, None, limit, marker, sort_key, sort_dir)

    @app.post("/v1/nodes", status_code=201, summary="Enroll a node")
    def create_node(request: Request, body: schemas.NodeCreate) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        policy.require_creation(policy.principal(request), "baremetal:node:create", values)
        return _node_doc(res.create_node(values), request)

    @app.get("/v1/nodes/{ident}", summary="Show a node")
    def show_node(ident: str, request: Request, fields: str | None = None) -> dict[str, Any]:
        wanted = [f.strip() for f in fields.split(",")] if fields else None
        return _node_doc(_node(request, ident, "baremetal:node:get"), request, wanted)

    @app.patch("/v1/nodes/{ident}", summary="Update a node (JSON patch)")
    def patch_node(ident: str, request: Request,
                   patch: list[schemas.PatchOperation]) -> dict[str, Any]:
        ops = _ops(patch)
        first, *others = policy.node_patch_rules(ops)
        node = _node(request, ident, first)
        for rule in others:
            policy.require(policy.principal(request), rule, policy.node_target(node))
        return _node_doc(res.update_node(ident, ops, _checker(schemas.NodeCreate)), request)

    @app.delete("/v1/nodes/{ident}", status_code=204, summary="Delete a node")
    def delete_node(ident: str, request: Request) -> Response:
        _node(request, ident, "baremetal:node:delete")
        res.delete_node(ident)
        return Response(status_code=204)

    @app.get("/v1/nodes/{ident}/states", summary="Node states")
    def node_states(ident: str, request: Request) -> dict[str, Any]:
        n = _node(request, ident, "baremetal:node:get_states")
        return {"power_state": n.power_state, "provision_state": n.provision_state,
                "target_power_state": n.target_power_state,
                "target_provision_state": n.target_provision_state,
                "last_error": n.last_error,
                "provision_updated_at": n.provision_updated_at.isoformat()
                if n.provision_updated_at else None,
                "console_enabled": False, "raid_config": {}, "target_raid_config": {}}

    @app.put("/v1/nodes/{ident}/states/provision", status_code=202,
             summary="Change the provision state (manage, inspect, provide, deploy, ...)")
    def set_provision(ident: str, request: Request,
                      body: schemas.ProvisionStateBody) -> Response:
        _node(request, ident, "baremetal:node:set_provision_state")
        conductor.provision(ident, body.target, body.configdrive, body.clean_steps,
                            body.deploy_steps)
        return Response(status_code=202)

    @app.get("/v1/nodes/{ident}/steps",
             summary="The node's inspect, clean and deploy steps (a metalplane extension)")
    def node_steps(ident: str, request: Request) -> dict[str, Any]:
        """Every step of the node's interfaces, per phase, in Ironic's step shape and in
        the order an automated run takes them (priority 0: only when asked for, e.g. by
        manual cleaning's ``clean_steps``). Ironic has no such call; the shape is that of
        its ``clean_step`` field."""
        _node(request, ident, "baremetal:node:get")
        return conductor.list_steps(ident)

    @app.put("/v1/nodes/{ident}/states/power", status_code=202,
             summary="Change the power state (power on, power off, rebooting)")
    def set_power(ident: str, request: Request, body: schemas.PowerStateBody) -> Response:
        _node(request, ident, "baremetal:node:set_power_state")
        conductor.set_power_state(ident, body.target)
        return Response(status_code=202)

    # The BMC's answer is awaited on the loop, the call runs on a conductor worker: a BMC
    # that never answers holds no API thread, and the request ends after api_bmc_wait s.
    @app.get("/v1/nodes/{ident}/management/boot_device", summary="Current boot device",
             response_model=dict[str, Any])
    async def get_boot_device(ident: str, request: Request) -> dict[str, Any] | Response:
        await _node_async(request, ident, "baremetal:node:get_boot_device")
        return await bmc_wait.await_bmc(conductor.get_boot_device(ident), ident,
                                        conductor.settings.api_bmc_wait, error_response)

    @app.put("/v1/nodes/{ident}/management/boot_device", status_code=204,
             summary="Set the boot device (pxe, disk, cdrom, bios)")
    async def set_boot_device(ident: str, request: Request,
                              body: schemas.BootDeviceBody) -> Response:
        await _node_async(request, ident, "baremetal:node:set_boot_device")
        answer = await bmc_wait.await_bmc(
            conductor.set_boot_device(ident, body.boot_device, body.persistent), ident,
            conductor.settings.api_bmc_wait, error_response)
        return answer if isinstance(answer, Response) else Response(status_code=204)

    @app.get("/v1/nodes/{ident}/management/boot_device/supported")
    def supported_boot_devices(ident: str, request: Request) -> dict[str, Any]:
        _node(request, ident, "baremetal:node:get_boot_device")
        with conductor.acquire(ident, "listing boot devices") as task:
            return {"supported_boot_devices":
                    task.driver.management.get_supported_boot_devices(task)}

    @app.put("/v1/nodes/{ident}/maintenance", status_code=202, summary="Set maintenance")
    def set_maintenance(ident: str, request: Request,
                        body: schemas.MaintenanceBody | None = None) -> Response:
        _node(request, ident, "baremetal:node:set_maintenance")
        res.set_maintenance(ident, True, body.reason if body else None)
        return Response(status_code=202)

    @app.delete("/v1/nodes/{ident}/maintenance", status_code=202, summary="Unset maintenance")
    def unset_maintenance(ident: str, request: Request) -> Response:
        _node(request, ident, "baremetal:node:clear_maintenance")
        res.set_maintenance(ident, False, None)
        return Response(status_code=202)

    @app.get("/v1/nodes/{ident}/validate", summary="Validate the node's interfaces")
    def validate_node(ident: str, request: Request) -> dict[str, Any]:
        _node(request, ident, "baremetal:node:validate")
        with conductor.acquire(ident, "validation") as task:
            out: dict[str, dict[str, Any]] = {}
            for kind, iface in task.driver.interfaces().items():
                try:
                    iface.validate(task)
                    out[kind] = {"result": True, "reason": None}
                except MetalplaneError as exc:
                    out[kind] = {"result": False, "reason": exc.message}
            return out

    @app.get("/v1/nodes/{ident}/traits", summary="A node's traits")
    def list_traits(ident: str, request: Request) -> dict[str, Any]:
        return {"traits": list(_node(request, ident, "baremetal:node:traits:list").traits
                               or [])}

    @app.put("/v1/nodes/{ident}/traits", status_code=204, summary="Replace a node's traits")
    def set_traits(ident: str, request: Request, body: schemas.TraitsBody) -> Response:
        _node(request, ident, "baremetal:node:traits:set")
        res.set_traits(ident, body.traits)
        return Response(status_code=204)

    @app.put("/v1/nodes/{ident}/traits/{trait}", status_code=204, summary="Add a trait")
    def add_trait(ident: str, trait: str, request: Request) -> Response:
        _node(request, ident, "baremetal:node:traits:set")
        res.add_trait(ident, trait)
        return Response(status_code=204)

    @app.delete("/v1/nodes/{ident}/traits", status_code=204, summary="Remove all traits")
    def clear_traits(ident: str, request: Request) -> Response:
        _node(request, ident, "baremetal:node:traits:delete")
        res.set_traits(ident, [])
        return Response(status_code=204)

    @app.delete("/v1/nodes/{ident}/traits/{trait}", status_code=204, summary="Remove a trait")
    def remove_trait(ident: str, trait: str, request: Request) -> Response:
        _node(request, ident, "baremetal:node:traits:delete")
        res.remove_trait(ident, trait)
        return Response(status_code=204)

    @app.get("/v1/nodes/{ident}/ports", summary="A node's ports")
    def node_ports(ident: str, request: Request) -> dict[str, Any]:
        node = _node(request, ident, "baremetal:port:get")
        return {"ports": [_port_doc(p, request)
                          for p in db_api.list_ports(conductor.db, node_id=node.id)]}

    @app.get("/v1/nodes/{ident}/portgroups", summary="A node's portgroups")
    def node_portgroups(ident: str, request: Request) -> dict[str, Any]:
        node = _node(request, ident, "baremetal:portgroup:get")
        return {"portgroups": [views.portgroup_view(p, node.uuid, base_url(request))
                               for p in db_api.list_portgroups(conductor.db, node_id=node.id)]}

    def _check_create(request: Request, values: dict[str, Any], rule: str) -> None:
        """A port or portgroup is created by who ``rule`` allows on its node."""
        ident = values.get("node_uuid") or values.get("node_id")
        node = _node_ref(request, ident, "node_uuid") if ident else None
        if node is not None:  # else the resource layer refuses it (400)
            policy.require(policy.principal(request), rule, policy.node_target(node))

    # ------------------------------------------------------------ ports
    def _port_doc(port: Any, request: Request) -> dict[str, Any]:
        doc = res.port_doc(port)
        return views.port_view(port, doc["node_uuid"], doc["portgroup_uuid"], base_url(request))

    def _attached(request: Request, row: Any, ident: str, what: str, rule: str) -> Any:
        """``row`` (a port or portgroup, ``what``) if ``rule`` allows the caller on its
        node: 404 if the caller may not see the node, 403 if ``rule`` forbids."""
        node = db_api.node_by_id(conductor.db, row.node_id)
        policy.require(policy.principal(request), rule, policy.node_target(node),
                       hidden=f"{what} {ident} could not be found.")
        return row

    def _port(request: Request, ident: str, rule: str) -> Any:
        return _attached(request, db_api.get_port(conductor.db, ident), ident, "Port", rule)

    def _portgroup(request: Request, ident: str, rule: str) -> Any:
        return _attached(request, db_api.get_portgroup(conductor.db, ident), ident,
                         "Portgroup", rule)

    def _moved_to(request: Request, doc: dict[str, Any], ops: list[dict[str, Any]],
                  rule: str) -> None:
        """A patch of ``doc`` (a port's or portgroup's) that moves it to another node needs
        ``rule`` on that node too (one the caller may not see is as unknown, 400)."""
        try:
            patched = jsonpatch.apply_patch(doc, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            return  # the resource layer refuses it (400)
        new = patched.get("node_uuid") if isinstance(patched, dict) else None
        if new and new != doc.get("node_uuid"):
            node = _node_ref(request, new, "node_uuid")
            if node is not None:
                policy.require(policy.principal(request), rule, policy.node_target(node))

    def _list_ports(request: Request, node: str | None, node_uuid: str | None,
                    address: str | None, portgroup: str | None, limit: int | None,
                    marker: str | None) -> dict[str, Any]:
        node_id = (_node(request, node or node_uuid or "", "baremetal:port:get").id
                   if (node or node_uuid) else None)
        pg_id = (_portgroup(request, portgroup, "baremetal:portgroup:get").id
                 if portgroup else None)
        addr = normalize_mac(address) if address else None
        limit = min(limit or views.MAX_LIMIT, views.MAX_LIMIT)
        ports = db_api.list_ports(conductor.db, node_id, addr, pg_id, limit, marker,
                                  project=policy.scope(policy.principal(request)))
        out: dict[str, Any] = {"ports": [_port_doc(p, request) for p in ports]}
        if len(ports) == limit:
            out["next"] = views.next_link(request, limit, ports[-1].uuid)
        return out

    @app.get("/v1/ports", summary="List ports")
    def list_ports(request: Request, node: str | None = None, node_uuid: str | None = None,
                   address: str | None = None, portgroup: str | None = None,
                   limit: int | None = Query(None, ge=1), marker: str | None = None,
                   detail: bool = False) -> dict[str, Any]:
        return _list_ports(request, node, node_uuid, address, portgroup, limit, marker)

    @app.get("/v1/ports/detail", summary="List ports with all fields")
    def list_ports_detail(request: Request, node: str | None = None,
                          node_uuid: str | None = None, address: str | None = None,
                          portgroup: str | None = None,
                          limit: int | None = Query(None, ge=1),
                          marker: str | None = None) -> dict[str, Any]:
        return _list_ports(request, node, node_uuid, address, portgroup, limit, marker)

    @app.post("/v1/ports", status_code=201, summary="Create a port")
    def create_port(request: Request, body: schemas.PortCreate) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        node = values.pop("node", None)
        if node and not values.get("node_uuid"):
            values["node_uuid"] = node
        _check_create(request, values, "baremetal:port:create")
        return _port_doc(res.create_port(values), request)

    @app.get("/v1/ports/{ident}", summary="Show a port")
    def show_port(ident: str, request: Request) -> dict[str, Any]:
        return _port_doc(_port(request, ident, "baremetal:port:get"), request)

    @app.patch("/v1/ports/{ident}", summary="Update a port (JSON patch)")
    def patch_port(ident: str, request: Request,
                   patch: list[schemas.PatchOperation]) -> dict[str, Any]:
        ops = _ops(patch)
        port = _port(request, ident, "baremetal:port:update")
        _moved_to(request, res.port_doc(port), ops, "baremetal:port:update")
        return _port_doc(res.update_port(ident, ops, _checker(schemas.PortCreate)), request)

    @app.delete("/v1/ports/{ident}", status_code=204, summary="Delete a port")
    def delete_port(ident: str, request: Request) -> Response:
        _port(request, ident, "baremetal:port:delete")
        res.delete_port(ident)
        return Response(status_code=204)

    # ------------------------------------------------------------ portgroups
    def _pg_doc(pg: Any, request: Request) -> dict[str, Any]:
        return views.portgroup_view(pg, res.portgroup_doc(pg)["node_uuid"], base_url(request))

    def _list_portgroups(request: Request, node: str | None, address: str | None,
                         limit: int | None, marker: str | None) -> dict[str, Any]:
        node_id = _node(request, node, "baremetal:portgroup:get").id if node else None
        limit = min(limit or views.MAX_LIMIT, views.MAX_LIMIT)
        pgs = db_api.list_portgroups(conductor.db, node_id, limit, marker,
                                     normalize_mac(address) if address else None,
                                     project=policy.scope(policy.principal(request)))
        out: dict[str, Any] = {"portgroups": [_pg_doc(p, request) for p in pgs]}
        if len(pgs) == limit:
            out["next"] = views.next_link(request, limit, pgs[-1].uuid)
        return out

    @app.get("/v1/portgroups", summary="List portgroups")
    def list_portgroups(request: Request, node: str | None = None, address: str | None = None,
                        limit: int | None = Query(None, ge=1), marker: str | None = None,
                        detail: bool = False) -> dict[str, Any]:
        return _list_portgroups(request, node, address, limit, marker)

    @app.get("/v1/portgroups/detail", summary="List portgroups with all fields")
    def list_portgroups_detail(request: Request, node: str | None = None,
                               address: str | None = None,
                               limit: int | None = Query(None, ge=1),
                               marker: str | None = None) -> dict[str, Any]:
        return _list_portgroups(request, node, address, limit, marker)

    @app.post("/v1/portgroups", status_code=201, summary="Create a portgroup")
    def create_portgroup(request: Request, body: schemas.PortgroupCreate) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        _check_create(request, values, "baremetal:portgroup:create")
        return _pg_doc(res.create_portgroup(values), request)

    @app.get("/v1/portgroups/{ident}", summary="Show a portgroup")
    def show_portgroup(ident: str, request: Request) -> dict[str, Any]:
        return _pg_doc(_portgroup(request, ident, "baremetal:portgroup:get"), request)

    @app.get("/v1/portgroups/{ident}/ports", summary="A portgroup's ports")
    def portgroup_ports(ident: str, request: Request) -> dict[str, Any]:
        pg = _portgroup(request, ident, "baremetal:port:get")
        return {"ports": [_port_doc(p, request)
                          for p in db_api.list_ports(conductor.db, portgroup_id=pg.id)]}

    @app.patch("/v1/portgroups/{ident}", summary="Update a portgroup (JSON patch)")
    def patch_portgroup(ident: str, request: Request,
                        patch: list[schemas.PatchOperation]) -> dict[str, Any]:
        ops = _ops(patch)
        pg = _portgroup(request, ident, "baremetal:portgroup:update")
        _moved_to(request, res.portgroup_doc(pg), ops, "baremetal:portgroup:update")
        return _pg_doc(res.update_portgroup(ident, ops, _checker(schemas.PortgroupCreate)),
                       request)

    @app.delete("/v1/portgroups/{ident}", status_code=204, summary="Delete a portgroup")
    def delete_portgroup(ident: str, request: Request) -> Response:
        _portgroup(request, ident, "baremetal:portgroup:delete")
        res.delete_portgroup(ident)
        return Response(status_code=204)

    # ------------------------------------------------------------ drivers
    def _driver_doc(name: str, request: Request, detail: bool) -> dict[str, Any]:
        base = base_url(request)
        doc: dict[str, Any] = {
            "name": name, "hosts": [conductor.host], "type": "dynamic",
            "links": [{"href": f"{base}/v1/drivers/{name}", "rel": "self"},
                      {"href": f"{base}/drivers/{name}", "rel": "bookmark"}],
            "properties": [{"href": f"{base}/v1/drivers/{name}/properties", "rel": "self"},
                           {"href": f"{base}/drivers/{name}/properties", "rel": "bookmark"}]}
        if detail:
            hw = conductor.registry.hardware_type(name)
            for kind in INTERFACE_KINDS:
                try:
                    doc[f"default_{kind}_interface"] = conductor.registry.default_interface(
                        hw, kind)
                except MetalplaneError:  # a configured default this type cannot take
                    doc[f"default_{kind}_interface"] = None
                doc[f"enabled_{kind}_interfaces"] = list(hw.supported[kind])
            for kind, noop in NOOP_INTERFACES.items():
                doc[f"default_{kind}_interface"] = noop
                doc[f"enabled_{kind}_interfaces"] = [noop]
            doc["default_network_interface"] = conductor.settings.default_network_interface
            doc["enabled_network_interfaces"] = list(NETWORK_INTERFACES)
        return doc

    @app.get("/v1/drivers", summary="List hardware types")
    def list_drivers(request: Request, detail: bool = False,
                     type: str | None = None) -> dict[str, Any]:
        policy.require(policy.principal(request), "baremetal:driver:get")
        if type not in (None, "dynamic", "classic"):
            raise Invalid(f"type must be 'dynamic' or 'classic', not {type!r}")
        names = [] if type == "classic" else sorted(hardware_types())
        return {"drivers": [_driver_doc(n, request, detail) for n in names]}

    @app.get("/v1/drivers/{name}", summary="Show a hardware type and its interfaces")
    def show_driver(name: str, request: Request) -> dict[str, Any]:
        policy.require(policy.principal(request), "baremetal:driver:get")
        if name not in hardware_types():
            raise NotFound(f"Driver {name} could not be found.")
        return _driver_doc(name, request, True)

    @app.get("/v1/drivers/{name}/properties", summary="driver_info keys of a hardware type")
    def driver_properties(name: str, request: Request) -> dict[str, str]:
        policy.require(policy.principal(request), "baremetal:driver:get_properties")
        if name not in hardware_types():
            raise NotFound(f"Driver {name} could not be found.")
        return conductor.registry.driver_properties(name)

    network_api.register(app, conductor)
    allocation_api.register(app, conductor)
    inspection_api.register(app, conductor)
    bios_api.register(app, conductor)
    agent_api.register(app, conductor)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


# The answers any operation may give besides its own: what the middleware and the error
# handlers produce (FastAPI would document its 422, which this API never sends).
_ERROR_ANSWERS = {
    "400": "Bad input: a malformed or unknown field, a verb invalid in the node's state",
    "401": "Authentication required (http_basic)",
    "403": "Forbidden by a policy rule (the message names it); see docs/security.md",
    "404": "No such resource",
    "405": "Method not allowed on this path (see the Allow header)",
    "406": "The requested microversion is outside the supported range",
    "409": "Conflict: a duplicate, a resource in use, or a node locked by another operation",
    "413": "Request body larger than max_request_body_size",
    "503": "A BMC or switch could not be reached",
}


def create_boot_app(conductor: Conductor) -> FastAPI:
    """The boot server (iPXE scripts, images, kernels and ramdisks), served on its own
    listeners: nodes on the provisioning networks reach it, and it answers nothing else."""
    app = FastAPI(title="metalplane boot server", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.router.route_class = OffloadedRoute

    @app.exception_handler(MetalplaneError)
    async def on_error(request: Request, exc: MetalplaneError) -> JSONResponse:
        return error_response(exc.code, exc.message, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), request.url.path)

    agent_api.register_boot(app, conductor)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the error answers each operation really gives: Ironic's
    ``{"error_message"}`` under ``/v1``, Neutron's ``{"NeutronError"}`` under ``/v2.0``."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["IronicError"] = {
        "type": "object", "required": ["error_message"],
        "properties": {"error_message": {
            "type": "string",
            "description": "JSON of {faultstring, faultcode, debuginfo}"}}}
    schemas["NeutronError"] = {
        "type": "object", "required": ["NeutronError"],
        "properties": {"NeutronError": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                           "detail": {"type": "string"}}}}}
    models = {model for _, model in view_schemas.RESPONSES.values()}
    _, defs = models_json_schema([(m, "serialization") for m in models],
                                 ref_template="#/components/schemas/{model}")
    for name, schema in defs.get("$defs", {}).items():
        if schemas.setdefault(name, schema) != schema:  # two models of one name
            raise RuntimeError(f"OpenAPI schema {name} is defined twice")
    for path, operations in doc.get("paths", {}).items():
        kind = "NeutronError" if path.startswith("/v2.0") else "IronicError"
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            if (method, path) in view_schemas.RESPONSES:
                status, model = view_schemas.RESPONSES[(method, path)]
                answers[status] = {
                    "description": model.__doc__ or "Successful answer",
                    "content": {"application/json": {"schema": {
                        "$ref": f"#/components/schemas/{model.__name__}"}}}}
            answers.pop("422", None)
            for status, text in _ERROR_ANSWERS.items():
                answers.setdefault(status, {"description": text, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{kind}"}}}})
    app.openapi_schema = doc
    return doc


def _ops(patch: list[schemas.PatchOperation]) -> list[dict[str, Any]]:
    """A typed JSON patch as the dicts ``jsonpatch`` applies."""
    return [op.model_dump(by_alias=True, exclude_unset=True) for op in patch]


def _checker(model: type[pydantic.BaseModel]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A check of a patched resource against its create schema: the coerced values, or
    :class:`Invalid` naming the field (a patch can put any JSON value anywhere)."""
    def check(doc: dict[str, Any]) -> dict[str, Any]:
        try:
            valid = model.model_validate(doc)
        except pydantic.ValidationError as exc:
            raise Invalid("Invalid input: " + validation_message(exc.errors())) from None
        return {k: v for k, v in valid.model_dump().items() if k in doc}
    return check


def validation_message(errors: Any) -> str:
    """``<field>: <problem>`` for each of pydantic's errors, joined by ``; ``."""
    parts = []
    for err in errors:
        loc = "/".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
        if err.get("type") == "extra_forbidden":
            parts.append(f"Unknown attribute {loc}")
        else:
            parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts)


class _VersionAndAuth:
    """ASGI middleware: the microversion headers on every answer, and the version and
    authentication checks before the route. Plain ASGI rather than ``@app.middleware``
    (Starlette's BaseHTTPMiddleware runs each request through a task group and a streamed
    response: a tenth of the server's CPU in bench/lifecycle.py)."""

    def __init__(self, app: Any, check: Any) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        version, who, refusal = await self.check(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # request.state
        state[API_VERSION_STATE] = version
        if who is not None:
            state[policy.PRINCIPAL_STATE] = who
        headers = [(k.lower().encode(), v.encode()) for k, v in _version_pairs(version)]

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {h[0] for h in headers}
                message = {**message, "headers": [
                    *(h for h in message.get("headers", []) if h[0].lower() not in names),
                    *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


class _NonFinite(float):
    """Where the parser met NaN, Infinity or -Infinity (not JSON numbers, RFC 8259
    section 6), kept so the field can be named."""

    name = "NaN"


def _first_bad_value(doc: Any) -> tuple[str, str] | None:
    """``(path, problem)`` of a non-finite number, or a string or key holding a lone
    UTF-16 surrogate (no UTF-8 store or answer can carry one, RFC 8259 section 8.2), in
    ``doc``; the path reads ``extra/key/0`` with unprintable characters escaped. Walks
    with its own stack, so no nesting depth can exhaust Python's."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _NonFinite):
            return path, f"{value.name} is not a JSON number"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path, "a lone UTF-16 surrogate is not valid Unicode text"
            continue
        items = value.items() if isinstance(value, dict) else (
            enumerate(value) if isinstance(value, list) else ())
        children = []
        for k, v in items:
            where = f"{path}/{printable(str(k))}" if path else printable(str(k))
            children += [(where, str(k)), (where, v)]
        stack.extend(reversed(children))  # depth first, in document order
    return None


class _BodyGuard:
    """ASGI middleware reading a request body before any route parses it: more than
    ``limit`` bytes is 413 (declared or streamed: at most ``limit`` bytes are ever held),
    and a JSON body (``application/json`` or no content type, as FastAPI parses it) must be
    strict JSON (RFC 8259: no NaN or Infinity) whose strings are valid Unicode (no lone
    surrogate, RFC 8259 section 8.2), else 400 naming the field. Ironic's
    ``[api]max_request_body_size`` is the model; the agent's paths are guarded too."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > self.limit:
            await self._refuse(413, f"Request body of {declared} bytes is larger than "
                               f"max_request_body_size ({self.limit} bytes)", path, scope,
                               receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(413, f"Request body is larger than max_request_body_size "
                                   f"({self.limit} bytes)", path, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").lower()
        if body and (not ctype or b"json" in ctype):
            problem = _json_problem(body)
            if problem:
                await self._refuse(400, f"Invalid input: {problem}", path, scope, receive,
                                   send)
                return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(status: int, message: str, path: str, scope: Any, receive: Any,
                      send: Any) -> None:
        await error_response(status, message, path)(scope, receive, send)


def _json_problem(body: bytes) -> str | None:
    """What makes ``body`` unacceptable JSON, or None (then FastAPI parses it itself)."""
    constants: list[str] = []

    def constant(name: str) -> _NonFinite:
        constants.append(name)
        found = _NonFinite(name.replace("Infinity", "inf"))
        found.name = name
        return found

    try:
        doc = json.loads(body, parse_constant=constant)
    except ValueError as exc:  # JSONDecodeError, bad UTF-8
        return f"body is not valid JSON: {exc}"
    except RecursionError:  # FastAPI's own parse would fail the same way: a 500
        return "body is nested too deeply"
    if constants or _SURROGATE.search(body):
        found = _first_bad_value(doc)
        if found:
            where, problem = found
            return f"{where or 'body'}: {problem}"
    return None


def _version_pairs(version: tuple[int, int]) -> list[tuple[str, str]]:
    """Ironic's microversion headers for an answer at ``version``."""
    return [("X-OpenStack-Ironic-API-Minimum-Version", _fmt(MIN_VERSION)),
            ("X-OpenStack-Ironic-API-Maximum-Version", _fmt(MAX_VERSION)),
            ("X-OpenStack-Ironic-API-Version", _fmt(version))]


def _version_headers(response: Response, version: tuple[int, int]) -> None:
    for name, value in _version_pairs(version):
        response.headers[name] = value


def _version_doc(base: str) -> dict[str, Any]:
    """Ironic's version object (api-ref "API versions"), as keystoneauth's discovery reads
    it: ``GET /`` lists it, ``GET /v1`` has it under ``version``."""
    return {"id": "v1", "status": "CURRENT", "version": _fmt(MAX_VERSION),
            "min_version": _fmt(MIN_VERSION),
            "links": [{"href": f"{base}/v1/", "rel": "self"}]}
