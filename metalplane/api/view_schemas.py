"""The shapes of the APIs' answers, for ``/openapi.json`` only.

The views (``metalplane.api.views``, the Networking and allocation views) build the
answers as dicts; these pydantic models describe them so the OpenAPI document gives each
operation's real response schema, and schemathesis and the tests check every answer
against it. They are not used to serialize answers (no cost on the hot path). Every field
is optional where ``?fields=`` can drop it; no other key may appear (``extra="forbid"``),
so a view that grows a field must be described here too.
Sources: Bare Metal API reference (v1, up to 1.90), Networking API v2.0 reference.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from metalplane.api.views import NODE_FIELDS, UNSUPPORTED_NODE_FIELDS

__all__ = ["RESPONSES"]

Json = dict[str, Any]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Link(_View):
    href: str
    rel: str
    type: str | None = None


class _Node(_View):
    """Typed fields of a node; the rest of ``NODE_FIELDS`` are strings or null."""

    driver_info: Json | None = None
    driver_internal_info: Json | None = None
    properties: Json | None = None
    instance_info: Json | None = None
    extra: Json | None = None
    maintenance: bool | None = None
    automated_clean: bool | None = None
    network_data: Json | None = None
    traits: list[str] | None = None
    links: list[Link] | None = None
    ports: list[Link] | None = None
    portgroups: list[Link] | None = None
    states: list[Link] | None = None
    conductor: str | None = None
    clean_step: Json | None = None
    deploy_step: Json | None = None


_CONSTANT_TYPES: dict[type, Any] = {dict: Json, bool: bool, str: str, type(None): str}
_NODE_REST: dict[str, Any] = {  # the other stored fields are strings; constants by value
    **{f: (str | None, None) for f in NODE_FIELDS if f not in _Node.model_fields},
    **{f: (_CONSTANT_TYPES[type(v)] | None, None) for f, v in UNSUPPORTED_NODE_FIELDS.items()}}
Node = create_model("Node", __base__=_Node, **_NODE_REST)


class NodeList(_View):
    nodes: list[Node]  # type: ignore[valid-type]
    next: str | None = None


class NodeStates(_View):
    power_state: str | None
    provision_state: str
    target_power_state: str | None
    target_provision_state: str | None
    last_error: str | None
    provision_updated_at: str | None
    console_enabled: bool
    raid_config: Json
    target_raid_config: Json


class Port(_View):
    uuid: str
    address: str
    name: str | None
    node_uuid: str
    portgroup_uuid: str | None
    local_link_connection: Json
    physical_network: str | None
    pxe_enabled: bool
    extra: Json
    internal_info: Json
    is_smartnic: bool
    created_at: str | None
    updated_at: str | None
    links: list[Link]


class PortList(_View):
    ports: list[Port]
    next: str | None = None


class Portgroup(_View):
    uuid: str
    address: str | None
    name: str | None
    node_uuid: str
    mode: str | None
    properties: Json
    standalone_ports_supported: bool
    extra: Json
    internal_info: Json
    created_at: str | None
    updated_at: str | None
    links: list[Link]
    ports: list[Link]


class PortgroupList(_View):
    portgroups: list[Portgroup]
    next: str | None = None


class Driver(_View):
    model_config = ConfigDict(extra="allow")  # default_/enabled_<kind>_interface(s)

    name: str
    hosts: list[str]
    type: str
    links: list[Link]
    properties: list[Link]


class DriverList(_View):
    drivers: list[Driver]


class Traits(_View):
    traits: list[str]


class Vifs(_View):
    vifs: list[dict[str, str]]


class Version(_View):
    id: str
    status: str
    version: str
    min_version: str
    links: list[Link]


class IronicRoot(_View):
    name: str
    description: str
    default_version: Version
    versions: list[Version]


class NeutronVersion(_View):
    id: str
    status: str
    links: list[Link]


class Root(_View):
    """``GET /``: Ironic's version list, or Neutron's on the Networking listener."""

    name: str | None = None
    description: str | None = None
    default_version: Version | None = None
    versions: list[Version | NeutronVersion]


class V1(_View):
    model_config = ConfigDict(extra="allow")  # a list of links per resource

    id: str
    links: list[Link]
    media_types: list[dict[str, str]]
    version: Version


class Allocation(_View):
    uuid: str | None = None
    name: str | None = None
    node_uuid: str | None = None
    state: str | None = None
    last_error: str | None = None
    resource_class: str | None = None
    traits: list[str] | None = None
    candidate_nodes: list[str] | None = None
    extra: Json | None = None
    owner: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    links: list[Link] | None = None


class AllocationList(_View):
    allocations: list[Allocation]
    next: str | None = None


class Conductor(_View):
    hostname: str | None = None
    conductor_group: str | None = None
    alive: bool | None = None
    drivers: list[str] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    links: list[Link] | None = None


class ConductorList(_View):
    conductors: list[Conductor]


class Network(_View):
    id: str
    name: str
    project_id: str
    tenant_id: str
    shared: bool
    admin_state_up: bool
    status: str
    mtu: int
    description: str
    router_external: bool = Field(alias="router:external")
    subnets: list[str]
    network_type: str | None = Field(alias="provider:network_type")
    physical_network: str | None = Field(alias="provider:physical_network")
    segmentation_id: int | None = Field(alias="provider:segmentation_id")
    created_at: str | None
    updated_at: str | None


class Subnet(_View):
    id: str
    name: str
    network_id: str
    project_id: str
    tenant_id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    allocation_pools: list[dict[str, str]]
    dns_nameservers: list[str]
    host_routes: list[dict[str, str]]
    enable_dhcp: bool
    description: str
    created_at: str | None
    updated_at: str | None


class NetworkPort(_View):
    id: str
    name: str
    network_id: str
    project_id: str
    tenant_id: str
    mac_address: str
    fixed_ips: list[dict[str, str]]
    admin_state_up: bool
    status: str
    device_id: str
    device_owner: str
    host_id: str = Field(alias="binding:host_id")
    vnic_type: str = Field(alias="binding:vnic_type")
    profile: Json = Field(alias="binding:profile")
    vif_type: str = Field(alias="binding:vif_type")
    vif_details: Json = Field(alias="binding:vif_details")
    extra_dhcp_opts: list[Json]
    security_groups: list[str]
    description: str
    created_at: str | None
    updated_at: str | None


class SecurityGroupRule(_View):
    id: str
    security_group_id: str
    direction: str
    ethertype: str
    protocol: str | int | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group_id: str | None
    project_id: str
    tenant_id: str
    description: str
    created_at: str | None = None
    updated_at: str | None = None


class SecurityGroup(_View):
    id: str
    name: str
    description: str
    project_id: str
    tenant_id: str
    stateful: bool
    security_group_rules: list[SecurityGroupRule]
    created_at: str | None
    updated_at: str | None


class RouterGateway(_View):
    network_id: str
    enable_snat: bool
    external_fixed_ips: list[dict[str, str]]


class Router(_View):
    """A router (``?fields=`` may leave any attribute out)."""

    id: str | None = None
    name: str | None = None
    project_id: str | None = None
    tenant_id: str | None = None
    admin_state_up: bool | None = None
    status: str | None = None
    description: str | None = None
    external_gateway_info: RouterGateway | None = None
    routes: list[dict[str, str]] | None = None
    created_at: str | None = None
    updated_at: str | None = None


class RouterInterfaceInfo(_View):
    """What ``add_router_interface`` and ``remove_router_interface`` answer (unwrapped)."""

    id: str
    tenant_id: str
    project_id: str
    port_id: str
    network_id: str
    subnet_id: str | None
    subnet_ids: list[str]


class FloatingIP(_View):
    """A floating IP (``?fields=`` may leave any attribute out)."""

    id: str | None = None
    project_id: str | None = None
    tenant_id: str | None = None
    floating_ip_address: str | None = None
    floating_network_id: str | None = None
    router_id: str | None = None
    port_id: str | None = None
    fixed_ip_address: str | None = None
    status: str | None = None
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


def _wrapped(name: str, key: str, model: type[BaseModel], many: bool) -> type[BaseModel]:
    """Neutron's wrapping: ``{"network": {...}}`` or ``{"networks": [...]}``."""
    kind: Any = list[model] if many else model  # type: ignore[valid-type]
    field: dict[str, Any] = {key: (kind, ...)}
    return create_model(name, __base__=_View, **field)


_NEUTRON: dict[str, tuple[str, type[BaseModel]]] = {
    "networks": ("network", Network), "subnets": ("subnet", Subnet),
    "ports": ("port", NetworkPort), "security-groups": ("security_group", SecurityGroup),
    "security-group-rules": ("security_group_rule", SecurityGroupRule),
    "routers": ("router", Router), "floatingips": ("floatingip", FloatingIP)}

# (method, path) -> (status, model) of the successful answer.
RESPONSES: dict[tuple[str, str], tuple[str, type[BaseModel]]] = {
    ("get", "/"): ("200", Root),
    ("get", "/v1"): ("200", V1),
    ("get", "/v1/nodes"): ("200", NodeList),
    ("get", "/v1/nodes/detail"): ("200", NodeList),
    ("post", "/v1/nodes"): ("201", Node),
    ("get", "/v1/nodes/{ident}"): ("200", Node),
    ("patch", "/v1/nodes/{ident}"): ("200", Node),
    ("get", "/v1/nodes/{ident}/states"): ("200", NodeStates),
    ("get", "/v1/nodes/{ident}/traits"): ("200", Traits),
    ("get", "/v1/nodes/{ident}/ports"): ("200", PortList),
    ("get", "/v1/nodes/{ident}/portgroups"): ("200", PortgroupList),
    ("get", "/v1/nodes/{ident}/vifs"): ("200", Vifs),
    ("get", "/v1/ports"): ("200", PortList),
    ("get", "/v1/ports/detail"): ("200", PortList),
    ("post", "/v1/ports"): ("201", Port),
    ("get", "/v1/ports/{ident}"): ("200", Port),
    ("patch", "/v1/ports/{ident}"): ("200", Port),
    ("get", "/v1/portgroups"): ("200", PortgroupList),
    ("get", "/v1/portgroups/detail"): ("200", PortgroupList),
    ("post", "/v1/portgroups"): ("201", Portgroup),
    ("get", "/v1/portgroups/{ident}"): ("200", Portgroup),
    ("patch", "/v1/portgroups/{ident}"): ("200", Portgroup),
    ("get", "/v1/portgroups/{ident}/ports"): ("200", PortList),
    ("get", "/v1/drivers"): ("200", DriverList),
    ("get", "/v1/drivers/{name}"): ("200", Driver),
    ("get", "/v1/allocations"): ("200", AllocationList),
    ("post", "/v1/allocations"): ("201", Allocation),
    ("get", "/v1/allocations/{ident}"): ("200", Allocation),
    ("patch", "/v1/allocations/{ident}"): ("200", Allocation),
    ("get", "/v1/nodes/{ident}/allocation"): ("200", Allocation),
    ("get", "/v1/conductors"): ("200", ConductorList),
    ("get", "/v1/conductors/{hostname}"): ("200", Conductor),
}
for _plural, (_key, _model) in _NEUTRON.items():
    _one = _wrapped(f"{_model.__name__}Body", _key, _model, many=False)
    _many = _wrapped(f"{_model.__name__}ListBody", _plural.replace("-", "_"), _model, many=True)
    RESPONSES[("get", f"/v2.0/{_plural}")] = ("200", _many)
    RESPONSES[("post", f"/v2.0/{_plural}")] = ("201", _one)
    RESPONSES[("get", f"/v2.0/{_plural}/{{ident}}")] = ("200", _one)
    if _plural != "security-group-rules":  # Neutron updates no rule either
        RESPONSES[("put", f"/v2.0/{_plural}/{{ident}}")] = ("200", _one)
for _action in ("add_router_interface", "remove_router_interface"):
    RESPONSES[("put", f"/v2.0/routers/{{ident}}/{_action}")] = ("200", RouterInterfaceInfo)
