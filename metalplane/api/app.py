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
from collections.abc import Callable
from typing import Any

from fastapi import Body, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from metalplane import __version__
from metalplane.api import agent_api, network_api, views
from metalplane.api.auth import UsersFile
from metalplane.common.exceptions import Invalid, MetalplaneError
from metalplane.conductor.manager import Conductor
from metalplane.conductor.resources import NodeResources, normalize_mac
from metalplane.db import api as db_api
from metalplane.drivers.base import INTERFACE_KINDS, NOOP_INTERFACES
from metalplane.drivers.registry import hardware_types

__all__ = ["MAX_VERSION", "MIN_VERSION", "create_app"]

LOG = logging.getLogger(__name__)
MIN_VERSION = (1, 1)
MAX_VERSION = (1, 90)
MAX_LIMIT = 1000
PUBLIC_PATHS = ("/", "/v1", "/v1/", "/openapi.json", "/docs", "/docs/oauth2-redirect")
NODE_FILTERS = ("provision_state", "owner", "conductor_group", "driver", "resource_class",
                "maintenance", "lessee")


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


_NEUTRON_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden",
                  404: "HTTPNotFound", 409: "HTTPConflict", 503: "HTTPServiceUnavailable"}


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


def _offloaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as an async endpoint that runs it on ``_BLOCKING`` (in the request's context);
    FastAPI reads the parameters through ``__wrapped__``."""
    @functools.wraps(fn)
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(_BLOCKING, call)
    return endpoint


class OffloadedRoute(APIRoute):
    """A route whose blocking (``def``) endpoint runs off the event loop in one hop to a
    thread of ``_BLOCKING`` (asyncio's ``run_in_executor``).

    FastAPI runs a ``def`` endpoint on anyio's worker threads and then validates what it
    returns there as well: two hops through anyio's machinery a request. On these machines
    that is 0.6 ms of the server's CPU for a trivial endpoint, against 0.39 ms for one
    executor hop (a FastAPI micro benchmark, 500 requests each); GET of a node went from
    0.95 to 0.82 ms, about 0.06 CPU s of the lab's 20-node run (410 requests). What runs
    where is unchanged: endpoint code never runs on the loop.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _offloaded(endpoint)
        super().__init__(path, endpoint, **kwargs)


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
    def version_and_auth(request: Request) -> tuple[tuple[int, int], Response | None]:
        """The API version asked for, or the response that refuses the request."""
        requested = request.headers.get("X-OpenStack-Ironic-API-Version")
        version = MAX_VERSION
        if requested and requested.strip().lower() != "latest":
            try:
                major, minor = (int(x) for x in requested.strip().split("."))
                version = (major, minor)
            except ValueError:
                return version, error_response(400, f"Invalid API version header "
                                               f"'{requested}'")
            if not MIN_VERSION <= version <= MAX_VERSION:
                resp = error_response(406, f"Version {requested} was requested but the minor "
                                      f"version is not supported by this service. The "
                                      f"supported version range is: [{_fmt(MIN_VERSION)}, "
                                      f"{_fmt(MAX_VERSION)}].")
                _version_headers(resp, MAX_VERSION)
                return version, resp
        path = request.url.path
        if (auth_strategy == "http_basic" and path not in PUBLIC_PATHS
                and not path.startswith(agent_api.PUBLIC_PREFIXES)):
            assert users_file is not None
            try:
                users_file.check(request.headers.get("Authorization"))
            except MetalplaneError as exc:
                resp = error_response(exc.code, exc.message)
                resp.headers["WWW-Authenticate"] = 'Basic realm="metalplane"'
                return version, resp
        return version, None

    app.add_middleware(_VersionAndAuth, check=version_and_auth)

    @app.exception_handler(MetalplaneError)
    async def on_error(request: Request, exc: MetalplaneError) -> JSONResponse:
        if exc.code >= 500:
            LOG.warning("request failed: %s", exc.message)
        return error_response(exc.code, exc.message, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = "/".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{loc or 'body'}: {err.get('msg')}")
        return error_response(400, "Invalid input: " + "; ".join(parts), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unexpected error")
        return error_response(500, f"Internal error: {type(exc).__name__}; see the server log",
                              request.url.path)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # ------------------------------------------------------------ root
    @app.get("/", summary="API versions")
    def root(request: Request) -> dict[str, Any]:
        v1 = _v1_doc(base_url(request))
        return {"name": "OpenStack Ironic API", "description": "metalplane "
                "(Ironic-compatible Bare Metal API)", "default_version": v1, "versions": [v1]}

    @app.get("/v1", summary="API v1 root")
    def v1_root(request: Request) -> dict[str, Any]:
        base = base_url(request)
        doc = _v1_doc(base)
        for kind in ("nodes", "ports", "portgroups", "drivers", "switches"):
            doc[kind] = [{"href": f"{base}/v1/{kind}/", "rel": "self"}]
        return doc

    # ------------------------------------------------------------ nodes
    def _defaults(driver: str) -> dict[str, str]:
        try:
            hw = conductor.registry.hardware_type(driver)
        except MetalplaneError:
            return {}
        return {**{f"{k}_interface": hw.default(k) for k in INTERFACE_KINDS},
                **{f"{k}_interface": v for k, v in NOOP_INTERFACES.items()},
                "network_interface": conductor.settings.default_network_interface}

    def _node_doc(node: Any, request: Request, fields: list[str] | None = None) -> dict[str, Any]:
        return views.node_view(node, base_url(request), fields, _defaults(node.driver))

    def _list_nodes(request: Request, detail: bool, fields: str | None, limit: int | None,
                    marker: str | None, sort_key: str, sort_dir: str) -> dict[str, Any]:
        if limit is not None and limit < 0:
            raise Invalid("limit must be a positive number")
        limit = min(limit or MAX_LIMIT, MAX_LIMIT)
        filters: dict[str, Any] = {}
        for key in NODE_FILTERS:
            if key in request.query_params:
                value: Any = request.query_params[key]
                if key == "maintenance":
                    value = value.lower() in ("true", "1", "yes")
                filters[key] = value
        wanted = None if detail else [*list(views.NODE_LIST_FIELDS), "links"]
        if fields:
            wanted = [f.strip() for f in fields.split(",") if f.strip()] + ["uuid"]
        # only the columns shown (and the driver, for its interface defaults)
        columns = None if wanted is None else sorted(
            {"uuid", "driver", *(f for f in wanted if f in views.NODE_FIELDS)})
        nodes = db_api.list_nodes(conductor.db, filters, limit, marker, sort_key, sort_dir,
                                  columns)
        out: dict[str, Any] = {"nodes": [_node_doc(n, request, wanted) for n in nodes]}
        if len(nodes) == limit:
            params = dict(request.query_params)
            params.update({"limit": str(limit), "marker": nodes[-1].uuid})
            query = "&".join(f"{k}={v}" for k, v in params.items())
            out["next"] = f"{base_url(request)}{request.url.path}?{query}"
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
    def create_node(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return _node_doc(res.create_node(body), request)

    @app.get("/v1/nodes/{ident}", summary="Show a node")
    def show_node(ident: str, request: Request, fields: str | None = None) -> dict[str, Any]:
        wanted = [f.strip() for f in fields.split(",")] if fields else None
        return _node_doc(res.get_node(ident), request, wanted)

    @app.patch("/v1/nodes/{ident}", summary="Update a node (JSON patch)")
    def patch_node(ident: str, request: Request,
                   patch: list[dict[str, Any]] = Body(...)) -> dict[str, Any]:
        return _node_doc(res.update_node(ident, patch), request)

    @app.delete("/v1/nodes/{ident}", status_code=204, summary="Delete a node")
    def delete_node(ident: str) -> Response:
        res.delete_node(ident)
        return Response(status_code=204)

    @app.get("/v1/nodes/{ident}/states", summary="Node states")
    def node_states(ident: str) -> dict[str, Any]:
        n = res.get_node(ident)
        return {"power_state": n.power_state, "provision_state": n.provision_state,
                "target_power_state": n.target_power_state,
                "target_provision_state": n.target_provision_state,
                "last_error": n.last_error,
                "provision_updated_at": n.provision_updated_at.isoformat()
                if n.provision_updated_at else None,
                "console_enabled": False, "raid_config": {}, "target_raid_config": {}}

    @app.put("/v1/nodes/{ident}/states/provision", status_code=202,
             summary="Change the provision state (manage, inspect, provide, deploy, ...)")
    def set_provision(ident: str, body: dict[str, Any] = Body(...)) -> Response:
        target = body.get("target")
        if not isinstance(target, str) or not target:
            raise Invalid("target is required")
        unsupported = sorted(set(body) - {"target", "configdrive", "clean_steps",
                                          "deploy_steps", "disable_ramdisk"})
        if unsupported:
            raise Invalid(f"Unknown attribute for provision state change: "
                          f"{', '.join(unsupported)}")
        conductor.provision(ident, target, body.get("configdrive"))
        return Response(status_code=202)

    @app.put("/v1/nodes/{ident}/states/power", status_code=202,
             summary="Change the power state (power on, power off, rebooting)")
    def set_power(ident: str, body: dict[str, Any] = Body(...)) -> Response:
        target = body.get("target")
        if not isinstance(target, str):
            raise Invalid("target is required")
        conductor.set_power_state(ident, target)
        return Response(status_code=202)

    @app.get("/v1/nodes/{ident}/management/boot_device", summary="Current boot device")
    def get_boot_device(ident: str) -> dict[str, Any]:
        return conductor.get_boot_device(ident)

    @app.put("/v1/nodes/{ident}/management/boot_device", status_code=204,
             summary="Set the boot device (pxe, disk, cdrom, bios)")
    def set_boot_device(ident: str, body: dict[str, Any] = Body(...)) -> Response:
        device = body.get("boot_device")
        if not isinstance(device, str):
            raise Invalid("boot_device is required")
        conductor.set_boot_device(ident, device, bool(body.get("persistent", False)))
        return Response(status_code=204)

    @app.get("/v1/nodes/{ident}/management/boot_device/supported")
    def supported_boot_devices(ident: str) -> dict[str, Any]:
        with conductor.acquire(ident, "listing boot devices") as task:
            return {"supported_boot_devices":
                    task.driver.management.get_supported_boot_devices(task)}

    @app.put("/v1/nodes/{ident}/maintenance", status_code=202, summary="Set maintenance")
    def set_maintenance(ident: str, body: dict[str, Any] | None = Body(None)) -> Response:
        res.set_maintenance(ident, True, (body or {}).get("reason"))
        return Response(status_code=202)

    @app.delete("/v1/nodes/{ident}/maintenance", status_code=202, summary="Unset maintenance")
    def unset_maintenance(ident: str) -> Response:
        res.set_maintenance(ident, False, None)
        return Response(status_code=202)

    @app.get("/v1/nodes/{ident}/validate", summary="Validate the node's interfaces")
    def validate_node(ident: str) -> dict[str, Any]:
        with conductor.acquire(ident, "validation") as task:
            out: dict[str, dict[str, Any]] = {}
            for kind, iface in task.driver.interfaces().items():
                try:
                    iface.validate(task)
                    out[kind] = {"result": True, "reason": None}
                except MetalplaneError as exc:
                    out[kind] = {"result": False, "reason": exc.message}
            return out

    @app.get("/v1/nodes/{ident}/ports", summary="A node's ports")
    def node_ports(ident: str, request: Request) -> dict[str, Any]:
        node = res.get_node(ident)
        return {"ports": [_port_doc(p, request)
                          for p in db_api.list_ports(conductor.db, node_id=node.id)]}

    @app.get("/v1/nodes/{ident}/portgroups", summary="A node's portgroups")
    def node_portgroups(ident: str, request: Request) -> dict[str, Any]:
        node = res.get_node(ident)
        return {"portgroups": [views.portgroup_view(p, node.uuid, base_url(request))
                               for p in db_api.list_portgroups(conductor.db, node_id=node.id)]}

    # ------------------------------------------------------------ ports
    def _port_doc(port: Any, request: Request) -> dict[str, Any]:
        doc = res.port_doc(port)
        return views.port_view(port, doc["node_uuid"], doc["portgroup_uuid"], base_url(request))

    @app.get("/v1/ports", summary="List ports")
    def list_ports(request: Request, node: str | None = None, node_uuid: str | None = None,
                   address: str | None = None, portgroup: str | None = None,
                   limit: int | None = Query(None, ge=1), marker: str | None = None,
                   detail: bool = False) -> dict[str, Any]:
        node_id = res.get_node(node or node_uuid or "").id if (node or node_uuid) else None
        pg_id = db_api.get_portgroup(conductor.db, portgroup).id if portgroup else None
        addr = normalize_mac(address) if address else None
        limit = min(limit or MAX_LIMIT, MAX_LIMIT)
        ports = db_api.list_ports(conductor.db, node_id, addr, pg_id, limit, marker)
        out: dict[str, Any] = {"ports": [_port_doc(p, request) for p in ports]}
        if len(ports) == limit:
            out["next"] = f"{base_url(request)}/v1/ports?limit={limit}&marker={ports[-1].uuid}"
        return out

    @app.post("/v1/ports", status_code=201, summary="Create a port")
    def create_port(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return _port_doc(res.create_port(body), request)

    @app.get("/v1/ports/{ident}", summary="Show a port")
    def show_port(ident: str, request: Request) -> dict[str, Any]:
        return _port_doc(db_api.get_port(conductor.db, ident), request)

    @app.patch("/v1/ports/{ident}", summary="Update a port (JSON patch)")
    def patch_port(ident: str, request: Request,
                   patch: list[dict[str, Any]] = Body(...)) -> dict[str, Any]:
        return _port_doc(res.update_port(ident, patch), request)

    @app.delete("/v1/ports/{ident}", status_code=204, summary="Delete a port")
    def delete_port(ident: str) -> Response:
        res.delete_port(ident)
        return Response(status_code=204)

    # ------------------------------------------------------------ portgroups
    def _pg_doc(pg: Any, request: Request) -> dict[str, Any]:
        return views.portgroup_view(pg, res.portgroup_doc(pg)["node_uuid"], base_url(request))

    @app.get("/v1/portgroups", summary="List portgroups")
    def list_portgroups(request: Request, node: str | None = None,
                        limit: int | None = Query(None, ge=1),
                        marker: str | None = None) -> dict[str, Any]:
        node_id = res.get_node(node).id if node else None
        limit = min(limit or MAX_LIMIT, MAX_LIMIT)
        pgs = db_api.list_portgroups(conductor.db, node_id, limit, marker)
        return {"portgroups": [_pg_doc(p, request) for p in pgs]}

    @app.post("/v1/portgroups", status_code=201, summary="Create a portgroup")
    def create_portgroup(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return _pg_doc(res.create_portgroup(body), request)

    @app.get("/v1/portgroups/{ident}", summary="Show a portgroup")
    def show_portgroup(ident: str, request: Request) -> dict[str, Any]:
        return _pg_doc(db_api.get_portgroup(conductor.db, ident), request)

    @app.get("/v1/portgroups/{ident}/ports", summary="A portgroup's ports")
    def portgroup_ports(ident: str, request: Request) -> dict[str, Any]:
        pg = db_api.get_portgroup(conductor.db, ident)
        return {"ports": [_port_doc(p, request)
                          for p in db_api.list_ports(conductor.db, portgroup_id=pg.id)]}

    @app.patch("/v1/portgroups/{ident}", summary="Update a portgroup (JSON patch)")
    def patch_portgroup(ident: str, request: Request,
                        patch: list[dict[str, Any]] = Body(...)) -> dict[str, Any]:
        return _pg_doc(res.update_portgroup(ident, patch), request)

    @app.delete("/v1/portgroups/{ident}", status_code=204, summary="Delete a portgroup")
    def delete_portgroup(ident: str) -> Response:
        res.delete_portgroup(ident)
        return Response(status_code=204)

    # ------------------------------------------------------------ drivers
    @app.get("/v1/drivers", summary="List hardware types")
    def list_drivers() -> dict[str, Any]:
        return {"drivers": [{"name": n, "hosts": [conductor.host], "type": "dynamic"}
                            for n in sorted(hardware_types())]}

    @app.get("/v1/drivers/{name}/properties", summary="driver_info keys of a hardware type")
    def driver_properties(name: str) -> dict[str, str]:
        return conductor.registry.driver_properties(name)

    network_api.register(app, conductor)
    __import__("metalplane.api.allocation_api").api.allocation_api.register(app, conductor)
    agent_api.register(app, conductor)
    return app


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
        version, refusal = self.check(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        headers = [(k.lower().encode(), v.encode()) for k, v in _version_pairs(version)]

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {h[0] for h in headers}
                message = {**message, "headers": [
                    *(h for h in message.get("headers", []) if h[0].lower() not in names),
                    *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _version_pairs(version: tuple[int, int]) -> list[tuple[str, str]]:
    """Ironic's microversion headers for an answer at ``version``."""
    return [("X-OpenStack-Ironic-API-Minimum-Version", _fmt(MIN_VERSION)),
            ("X-OpenStack-Ironic-API-Maximum-Version", _fmt(MAX_VERSION)),
            ("X-OpenStack-Ironic-API-Version", _fmt(version))]


def _version_headers(response: Response, version: tuple[int, int]) -> None:
    for name, value in _version_pairs(version):
        response.headers[name] = value


def _v1_doc(base: str) -> dict[str, Any]:
    return {"id": "v1", "status": "CURRENT", "version": _fmt(MAX_VERSION),
            "min_version": _fmt(MIN_VERSION),
            "links": [{"href": f"{base}/v1/", "rel": "self"}],
            "media_types": [{"base": "application/json",
                             "type": "application/vnd.openstack.ironic.v1+json"}]}
