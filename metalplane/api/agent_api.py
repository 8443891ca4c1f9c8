"""What nodes booting the ramdisk reach: the agent's lookup and heartbeat and the inspection
data it posts (``continue_inspection``, also auto-discovery) on the API, and
the boot server (per-node iPXE scripts, the image cache, kernels and ramdisks), which
answers on listeners of its own (``boot_listen``, ``boot_unix_socket``), never on the
API's. These paths take no operator credentials; the agent proves itself with the token
the first lookup of its boot was issued (``X-Agent-Token`` header or ``agent_token`` in
the body, as Ironic's agent does). The iPXE scripts and files carry no secret."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Body, FastAPI, Header, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse

from metalplane.api.versions import API_VERSION_STATE, MAX_VERSION
from metalplane.common.exceptions import Invalid, NotFound
from metalplane.common.secrets import MASK
from metalplane.conductor.manager import Conductor

__all__ = ["BOOT_PREFIXES", "PUBLIC_PREFIXES", "register", "register_boot"]

PUBLIC_PREFIXES = ("/v1/lookup", "/v1/heartbeat/", "/v1/continue_inspection")
CONTINUE_INSPECTION_VERSION = (1, 84)
BOOT_PREFIXES = ("/boot/", "/images/", "/files/", "/redfish/")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


class _BootFile(FileResponse):
    """Seam on Starlette's ``FileResponse``: a file sent in 1 MiB pieces instead of 64 KiB
    (each piece is a thread hop to read it and a trip through the ASGI stack).

    Relies on Starlette (checked by tests/unit/test_library_seams.py): ``FileResponse``
    reads and sends the file ``self.chunk_size`` bytes at a time.
    Measured: server CPU per 24 MiB image fetch 24 → 7.9 ms (docs/benchmarks.md,
    "Library seams")."""

    chunk_size = 1 << 20


def register(app: FastAPI, conductor: Conductor) -> None:
    """The agent's calls, on the API: lookup and heartbeat."""

    @app.get("/v1/lookup", tags=["agent"], summary="The agent finds its node by its MACs")
    def lookup(addresses: str, x_agent_token: str | None = Header(None)) -> dict[str, Any]:
        macs = [a.strip() for a in addresses.split(",") if a.strip()]
        if not macs:
            raise Invalid("addresses (comma-separated MACs) is required")
        node, token = conductor.agent_lookup(macs, x_agent_token)
        return {"node": {"uuid": node.uuid, "name": node.name,
                         "properties": node.properties or {},
                         "provision_state": node.provision_state},
                "config": {"heartbeat_interval": conductor.settings.agent_heartbeat_interval,
                           # Ironic's keys: the token once, "******" after
                           "agent_token": token or MASK, "agent_token_required": True}}

    @app.post("/v1/heartbeat/{node}", tags=["agent"],
              summary="Agent heartbeat: progress and results in, the next command out")
    def heartbeat(node: str, body: dict[str, Any] = Body(default_factory=dict),
                  x_agent_token: str | None = Header(None)) -> dict[str, Any]:
        token = x_agent_token or body.get("agent_token")
        return conductor.agent_heartbeat(node, token, body)

    @app.post("/v1/continue_inspection", tags=["agent"], status_code=202,
              summary="The ramdisk's inspection data: a node waiting for it, or a new node "
                      "(auto-discovery)")
    def continue_inspection(request: Request, body: Any = Body(None)) -> dict[str, Any]:
        """Ironic's ``POST /v1/continue_inspection`` (API 1.84; 1.1 as ironic-inspector's
        callback): body ``{"inventory": {...}, ...plugin data}``; 202 with the node as the
        lookup shows it (``{"uuid"}`` at 1.1), its agent token never (``******``). 400
        naming the field, 404 when no node waits for it (or discovery is off), 429 when
        discovery is over ``discovery_max_per_minute``. See
        :mod:`metalplane.conductor.discovery`."""
        version = getattr(request.state, API_VERSION_STATE, MAX_VERSION)
        if (1, 1) < version < CONTINUE_INSPECTION_VERSION:
            raise NotFound("API version 1.84 or newer is required")
        node, _new = conductor.discovery.continue_inspection(body)
        if version == (1, 1):
            return {"uuid": node.uuid}
        return {"node": {"uuid": node.uuid, "name": node.name,
                         "properties": node.properties or {},
                         "provision_state": node.provision_state},
                "config": {"heartbeat_interval": conductor.settings.agent_heartbeat_interval,
                           "agent_token": MASK, "agent_token_required": True}}



def register_boot(app: FastAPI, conductor: Conductor) -> None:
    """The boot server's paths, on its own listener: iPXE scripts, images, files, and the
    virtual media images of nodes booting the agent from an ISO."""
    images = conductor.settings.data_dir / "images"
    files = conductor.settings.data_dir / "files"
    vmedia = conductor.settings.data_dir / "redfish"

    @app.get("/boot/discovery.ipxe", tags=["boot"], response_class=PlainTextResponse,
             summary="The iPXE script of machines nobody enrolled (auto-discovery)")
    def discovery_script() -> PlainTextResponse:
        return PlainTextResponse(conductor.discovery.script())

    @app.get("/boot/{node}.ipxe", tags=["boot"], response_class=PlainTextResponse,
             summary="The iPXE script of a node booting the ramdisk agent")
    def boot_script(node: str) -> PlainTextResponse:
        return PlainTextResponse(conductor.boot_script(node))

    def _serve(directory: Any, name: str) -> FileResponse:
        path = directory / name
        if not _FILE.match(name) or not path.is_file():
            raise NotFound(f"{name} is not on the boot server")
        return _BootFile(path, media_type="application/octet-stream")

    @app.get("/images/{name}", tags=["boot"], summary="A cached image (Range supported)")
    def image(name: str, request: Request) -> Response:
        return _serve(images, name)

    @app.get("/files/{name}", tags=["boot"], summary="Kernels and ramdisks of the boot server")
    def boot_file(name: str) -> Response:
        return _serve(files, name)

    @app.get("/redfish/{name}", tags=["boot"],
             summary="A node's virtual media image (boot-<node>.iso, config-<node>.img), "
                     "while it boots the agent from it")
    def vmedia_file(name: str) -> Response:
        if not ((name.startswith("boot-") and name.endswith(".iso"))
                or (name.startswith("config-") and name.endswith(".img"))):
            raise NotFound(f"{name} is not on the boot server")
        return _serve(vmedia, name)
