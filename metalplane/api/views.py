"""JSON views of the models, in the shapes of the OpenStack Bare Metal API v1.

Secrets in ``driver_info`` are always masked here; nothing else renders a node. Config
drives (the user's in ``instance_info``, the generated one and the agent's copy in
``driver_internal_info``) may carry passwords in their user data: shown masked, as Ironic
shows ``instance_info/configdrive``.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from metalplane.common.secrets import MASK, mask_driver_info
from metalplane.conductor.steps import PHASE_OF_STATE, current_step
from metalplane.db.models import Node, Port, Portgroup
from metalplane.drivers.base import INTERFACE_KINDS, NOOP_INTERFACES

__all__ = ["NODE_LIST_FIELDS", "node_view", "port_view", "portgroup_view"]

NODE_LIST_FIELDS = ("uuid", "name", "instance_uuid", "power_state", "provision_state",
                    "maintenance")
NODE_FIELDS = (
    "uuid", "name", "driver", "driver_info", "driver_internal_info", "properties",
    "instance_info", "instance_uuid", "extra", "provision_state", "target_provision_state",
    "provision_updated_at", "power_state", "target_power_state", "last_error", "maintenance",
    "maintenance_reason", "reservation", "traits", "resource_class", "conductor_group",
    "owner", "lessee", "inspection_started_at", "inspection_finished_at", "created_at",
    "updated_at", "network_interface", *(f"{k}_interface" for k in INTERFACE_KINDS),
    *(f"{k}_interface" for k in NOOP_INTERFACES), "description", "automated_clean",
    "allocation_uuid", "network_data",
)


# The stored columns the node fields shown from them are made of (``clean_step`` is the
# current one of ``driver_internal_info.clean_steps``).
DERIVED_NODE_FIELDS = {"clean_step": ("provision_state", "driver_internal_info"),
                       "deploy_step": ("provision_state", "driver_internal_info")}
# Fields of Ironic's node (at our maximum microversion) for features metalplane does not
# have: always these values, so clients that read them find them.
UNSUPPORTED_NODE_FIELDS: dict[str, Any] = {
    "boot_mode": None, "secure_boot": None, "chassis_uuid": None,
    "console_enabled": False, "fault": None,
    "firmware_interface": "no-firmware", "parent_node": None,
    "protected": False, "protected_reason": None, "raid_config": {},
    "target_raid_config": {}, "retired": False, "retired_reason": None, "shard": None,
}


MAX_LIMIT = 1000  # most items a list answers (Ironic's [api]max_limit)


def base_url(request: Request) -> str:
    """The server's root URL as the client reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def next_link(request: Request, limit: int, marker: str) -> str:
    """The list's ``next`` link: the same query with ``limit`` and ``marker`` (the last
    item's identifier), URL-encoded."""
    params = {**dict(request.query_params), "limit": str(limit), "marker": marker}
    return f"{base_url(request)}{request.url.path}?{urlencode(params)}"


def timestamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def links(base: str, kind: str, ident: str) -> list[dict[str, str]]:
    return [{"href": f"{base}/v1/{kind}/{ident}", "rel": "self"},
            {"href": f"{base}/{kind}/{ident}", "rel": "bookmark"}]


def _mask_configdrives(field: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return value
    out = dict(value)
    if out.get("configdrive"):
        out["configdrive"] = MASK
    cmd = out.get("agent_command")
    if field == "driver_internal_info" and isinstance(cmd, dict) \
            and isinstance(cmd.get("params"), dict) and cmd["params"].get("configdrive"):
        out["agent_command"] = {**cmd, "params": {**cmd["params"], "configdrive": MASK}}
    return out


def node_view(node: Node, base: str, fields: list[str] | None = None,
              driver_defaults: dict[str, str] | None = None,
              conductor: str | None = None) -> dict[str, Any]:
    """A node as the API shows it; ``fields`` limits the keys (Ironic's ``?fields=``).
    ``driver_defaults`` fills unset ``*_interface`` fields; ``conductor`` is the host name
    shown as the node's conductor."""
    out: dict[str, Any] = {}
    for f, constant in UNSUPPORTED_NODE_FIELDS.items():
        if fields is None or f in fields:
            out[f] = copy.copy(constant)
    if fields is None or "conductor" in fields:
        out["conductor"] = conductor
    for f, of in (("clean_step", "clean"), ("deploy_step", "deploy")):
        if fields is None or f in fields:
            out[f] = (current_step(node)
                      if PHASE_OF_STATE.get(node.provision_state) == of else {})
    for f in NODE_FIELDS:
        if fields is not None and f not in fields:
            continue
        value = getattr(node, f)
        if f in ("driver_info", "driver_internal_info"):
            value = mask_driver_info(_mask_configdrives(f, value))
        elif f == "instance_info":
            value = _mask_configdrives(f, value)
        elif f.endswith("_interface") and value is None and driver_defaults:
            value = driver_defaults.get(f)
        elif isinstance(value, dt.datetime):
            value = timestamp(value)
        elif f == "network_data" and value is None:
            value = {}
        out[f] = value
    if fields is None or "links" in fields:
        out["links"] = links(base, "nodes", node.uuid)
    if fields is None:
        out["ports"] = [{"href": f"{base}/v1/nodes/{node.uuid}/ports", "rel": "self"}]
        out["portgroups"] = [{"href": f"{base}/v1/nodes/{node.uuid}/portgroups", "rel": "self"}]
        out["states"] = [{"href": f"{base}/v1/nodes/{node.uuid}/states", "rel": "self"}]
    return out


def port_view(port: Port, node_uuid: str, pg_uuid: str | None, base: str) -> dict[str, Any]:
    return {
        "uuid": port.uuid, "address": port.address, "name": port.name,
        "node_uuid": node_uuid, "portgroup_uuid": pg_uuid,
        "local_link_connection": port.local_link_connection or {},
        "physical_network": port.physical_network, "pxe_enabled": port.pxe_enabled,
        "extra": port.extra or {}, "internal_info": port.internal_info or {},
        "is_smartnic": False, "created_at": timestamp(port.created_at),
        "updated_at": timestamp(port.updated_at), "links": links(base, "ports", port.uuid),
    }


def portgroup_view(pg: Portgroup, node_uuid: str, base: str) -> dict[str, Any]:
    return {
        "uuid": pg.uuid, "address": pg.address, "name": pg.name, "node_uuid": node_uuid,
        "mode": pg.mode, "properties": pg.properties or {},
        "standalone_ports_supported": pg.standalone_ports_supported, "extra": pg.extra or {},
        "internal_info": pg.internal_info or {},
        "created_at": timestamp(pg.created_at), "updated_at": timestamp(pg.updated_at),
        "links": links(base, "portgroups", pg.uuid),
        "ports": [{"href": f"{base}/v1/portgroups/{pg.uuid}/ports", "rel": "self"}],
    }
