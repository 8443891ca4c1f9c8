"""Request bodies of the Networking API v2.0, typed (pydantic v2).

Each body is wrapped as Neutron's (``{"network": {...}}``); the fields are the ones
:class:`~metalplane.network.plugin.NetworkPlugin` accepts, with Neutron's names (aliases
for the ``provider:`` and ``binding:`` attributes) and Neutron's conversions: booleans
through ``convert_to_boolean`` (:data:`~metalplane.api.schemas_common.StrictishBool`),
integers through ``convert_to_int`` (``"1500"`` is 1500). Refused with a validation error
naming the field (the API answers 400): an unknown attribute (``Unrecognized attribute(s)
'x'``), a read-only one in an update (``Cannot update read-only attribute(s) 'cidr'``), a
missing required one, a wrong type, ``null`` where Neutron takes none, a string over its
maximum length, ``NaN``/``Infinity``, a lone UTF-16 surrogate.

The plugin gets ``model.model_dump(by_alias=True, exclude_unset=True)`` (see
:func:`plugin_body`): the attributes the client sent, by their Neutron names.
Source: Networking API v2.0 reference (networks, subnets, ports, port binding, provider
networks, external networks, extra DHCP options, security groups and rules, routers
(router, ext-gw-mode, extraroute) and floating IPs).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from metalplane.api.schemas_common import StrictishBool, printable

__all__ = [
    "FloatingIPCreateRequest", "FloatingIPUpdateRequest", "NetworkCreateRequest",
    "NetworkSyncRequest", "NetworkUpdateRequest", "PortCreateRequest", "PortUpdateRequest",
    "RouterCreateRequest", "RouterInterfaceRequest", "RouterUpdateRequest",
    "SecurityGroupCreateRequest", "SecurityGroupRuleCreateRequest",
    "SecurityGroupUpdateRequest", "SubnetCreateRequest", "SubnetUpdateRequest", "plugin_body",
]

Str255 = Annotated[str, StringConstraints(max_length=255)]
Str64 = Annotated[str, StringConstraints(max_length=64)]
Str36 = Annotated[str, StringConstraints(max_length=36)]


def _ip_version(value: int) -> int:
    if value not in (4, 6):
        raise ValueError("ip_version must be 4 or 6")
    return value


IPVersion = Annotated[int, AfterValidator(_ip_version)]
# Bounded as the values they carry, so no integer reaches the store that it cannot hold.
SegmentationId = Annotated[int, Field(ge=0, le=2**24 - 1)]  # a VNI at most (VLAN: 4094)
Mtu = Annotated[int, Field(ge=0, le=65535)]
L4Port = Annotated[int, Field(ge=0, le=65535)]
IPProtocol = Annotated[StrictInt, Field(ge=0, le=255)]


def names(keys: Any) -> str:
    """``'a', 'b'``: client-given attribute names, quoted and safe to print."""
    return ", ".join(f"'{printable(k)}'" for k in sorted(keys))


class NeutronAttributes(BaseModel):
    """An attribute map: unknown attributes, read-only ones (``_read_only``) and missing
    required ones are refused with Neutron's messages before the fields are read."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False)
    _read_only: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _attributes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # the type error names the attribute map
        read_only = set(data) & cls._read_only
        if read_only:
            raise PydanticCustomError("read_only_attribute",
                                      "Cannot update read-only attribute(s) {names}",
                                      {"names": names(read_only)})
        known = {f.alias or n: f for n, f in cls.model_fields.items()}
        unknown = set(data) - set(known)
        if unknown:
            raise PydanticCustomError("unrecognized_attribute",
                                      "Unrecognized attribute(s) {names}",
                                      {"names": names(unknown)})
        missing = [k for k, f in known.items() if f.is_required() and k not in data]
        if missing:
            raise PydanticCustomError(
                "missing", "Failed to parse request. Required attribute(s) {names} not "
                "specified", {"names": names(missing)})
        return data


class _Wrapper(BaseModel):
    """``{"<resource>": {...}}``: the one field of the subclass is the resource key."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _wrapped(cls, data: Any) -> Any:
        key = next(iter(cls.model_fields))
        if not isinstance(data, dict) or not isinstance(data.get(key), dict) or len(data) != 1:
            raise PydanticCustomError(
                "resource_body", f'the request body must be an object {{"{key}": {{...}}}}')
        return data


def plugin_body(request: _Wrapper) -> dict[str, Any]:
    """The attributes of ``request`` the client set, by Neutron's names: the dict
    :class:`~metalplane.network.plugin.NetworkPlugin` takes."""
    inner = getattr(request, next(iter(type(request).model_fields)))
    body: dict[str, Any] = inner.model_dump(by_alias=True, exclude_unset=True)
    return body


# ---------------------------------------------------------------- networks
class ProviderSegment(NeutronAttributes):
    """One entry of ``segments`` (the plugin takes exactly one)."""

    network_type: Str255 = Field("", alias="provider:network_type")
    physical_network: Str64 = Field("", alias="provider:physical_network")
    segmentation_id: SegmentationId = Field(0, alias="provider:segmentation_id")


class NetworkUpdate(NeutronAttributes):
    """``PUT /v2.0/networks/{id}``: name, description, shared, admin_state_up, mtu,
    router:external."""

    _read_only = frozenset({"id", "project_id", "tenant_id", "status", "subnets",
                            "provider:network_type", "provider:physical_network",
                            "provider:segmentation_id", "segments", "created_at",
                            "updated_at"})
    name: Str255 = ""
    description: Str255 = ""
    shared: StrictishBool = False
    admin_state_up: StrictishBool = True
    mtu: Mtu = 1500
    router_external: StrictishBool = Field(False, alias="router:external")


class NetworkCreate(NetworkUpdate):
    """``POST /v2.0/networks``."""

    _read_only = frozenset({"id", "status", "subnets", "created_at", "updated_at"})
    project_id: Str255 = ""
    tenant_id: Str255 = ""
    network_type: Str255 = Field("", alias="provider:network_type")
    physical_network: Str64 = Field("", alias="provider:physical_network")
    segmentation_id: SegmentationId = Field(0, alias="provider:segmentation_id")
    segments: list[ProviderSegment] = []


class NetworkCreateRequest(_Wrapper):
    network: NetworkCreate


class NetworkUpdateRequest(_Wrapper):
    network: NetworkUpdate


# ---------------------------------------------------------------- subnets
class AllocationPool(NeutronAttributes):
    start: Str64
    end: Str64


class HostRoute(NeutronAttributes):
    destination: Str64
    nexthop: Str64


class SubnetUpdate(NeutronAttributes):
    """``PUT /v2.0/subnets/{id}``: cidr, network_id, ip_version cannot change."""

    _read_only = frozenset({"id", "network_id", "cidr", "ip_version", "project_id",
                            "tenant_id", "created_at", "updated_at"})
    name: Str255 = ""
    description: Str255 = ""
    gateway_ip: Str64 | None = None
    allocation_pools: list[AllocationPool] = []
    dns_nameservers: list[Str64] = []
    host_routes: list[HostRoute] = []
    enable_dhcp: StrictishBool = True


class SubnetCreate(SubnetUpdate):
    """``POST /v2.0/subnets``: ``network_id`` and ``cidr`` are required."""

    _read_only = frozenset({"id", "created_at", "updated_at"})
    network_id: Str255
    cidr: Str64
    ip_version: IPVersion = 4
    project_id: Str255 = ""
    tenant_id: Str255 = ""


class SubnetCreateRequest(_Wrapper):
    subnet: SubnetCreate


class SubnetUpdateRequest(_Wrapper):
    subnet: SubnetUpdate


# ---------------------------------------------------------------- ports
class FixedIP(NeutronAttributes):
    subnet_id: Str255 = ""
    ip_address: Str64 = ""


class ExtraDhcpOpt(NeutronAttributes):
    opt_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    opt_value: Annotated[str, StringConstraints(max_length=255)] | None
    ip_version: IPVersion = 4


class PortUpdate(NeutronAttributes):
    """``PUT /v2.0/ports/{id}``: network_id, mac_address and the project cannot change."""

    _read_only = frozenset({"id", "network_id", "mac_address", "project_id", "tenant_id",
                            "status", "binding:vif_type", "binding:vif_details",
                            "created_at", "updated_at"})
    name: Str255 = ""
    description: Str255 = ""
    admin_state_up: StrictishBool = True
    fixed_ips: list[FixedIP] = []
    device_id: Str255 = ""
    device_owner: Str255 = ""
    host_id: Str255 | None = Field(None, alias="binding:host_id")
    vnic_type: Str64 = Field("normal", alias="binding:vnic_type")
    profile: dict[str, Any] | None = Field(
        None, alias="binding:profile")
    extra_dhcp_opts: list[ExtraDhcpOpt] | None = None
    security_groups: list[Str255] | None = None


class PortCreate(PortUpdate):
    """``POST /v2.0/ports``: ``network_id`` is required."""

    _read_only = frozenset({"id", "status", "binding:vif_type", "binding:vif_details",
                            "created_at", "updated_at"})
    network_id: Str255
    mac_address: Str64 = ""
    project_id: Str255 = ""
    tenant_id: Str255 = ""


class PortCreateRequest(_Wrapper):
    port: PortCreate


class PortUpdateRequest(_Wrapper):
    port: PortUpdate


# ---------------------------------------------------------------- security groups
class SecurityGroupUpdate(NeutronAttributes):
    """``PUT /v2.0/security-groups/{id}``: name and description."""

    _read_only = frozenset({"id", "project_id", "tenant_id", "stateful",
                            "security_group_rules", "created_at", "updated_at"})
    name: Str255 = ""
    description: Str255 = ""


class SecurityGroupCreate(SecurityGroupUpdate):
    _read_only = frozenset({"id", "security_group_rules", "created_at", "updated_at"})
    project_id: Str255 = ""
    tenant_id: Str255 = ""
    stateful: StrictishBool = True


class SecurityGroupCreateRequest(_Wrapper):
    security_group: SecurityGroupCreate


class SecurityGroupUpdateRequest(_Wrapper):
    security_group: SecurityGroupUpdate


class SecurityGroupRuleCreate(NeutronAttributes):
    """``POST /v2.0/security-group-rules``; the plugin checks the values' consistency."""

    _read_only = frozenset({"id", "created_at", "updated_at"})
    security_group_id: Str255
    direction: Str64
    ethertype: Str64 = "IPv4"
    protocol: IPProtocol | Annotated[str, StringConstraints(max_length=40)] | None = None
    port_range_min: L4Port | None = None
    port_range_max: L4Port | None = None
    remote_ip_prefix: Str64 | None = None
    remote_group_id: Str255 | None = None
    description: Str255 = ""
    project_id: Str255 = ""
    tenant_id: Str255 = ""


class SecurityGroupRuleCreateRequest(_Wrapper):
    security_group_rule: SecurityGroupRuleCreate


# ---------------------------------------------------------------- routers
class GatewayFixedIP(NeutronAttributes):
    subnet_id: Str255 = ""
    ip_address: Str64 = ""


class ExternalGatewayInfo(NeutronAttributes):
    """``external_gateway_info``: ``{}`` (or null) is no gateway; else ``network_id``."""

    network_id: Str255 = ""
    enable_snat: StrictishBool = True
    external_fixed_ips: list[GatewayFixedIP] = []


class RouterUpdate(NeutronAttributes):
    """``PUT /v2.0/routers/{id}``: name, description, admin_state_up, the gateway, routes."""

    _read_only = frozenset({"id", "project_id", "tenant_id", "status", "created_at",
                            "updated_at"})
    name: Str255 = ""
    description: Str255 = ""
    admin_state_up: StrictishBool = True
    external_gateway_info: ExternalGatewayInfo | None = None
    routes: list[HostRoute] | None = None


class RouterCreate(RouterUpdate):
    """``POST /v2.0/routers`` (``routes`` are set by update only, as Neutron's)."""

    _read_only = frozenset({"id", "status", "routes", "created_at", "updated_at"})
    project_id: Str255 = ""
    tenant_id: Str255 = ""


class RouterCreateRequest(_Wrapper):
    router: RouterCreate


class RouterUpdateRequest(_Wrapper):
    router: RouterUpdate


class RouterInterfaceRequest(NeutronAttributes):
    """``PUT /v2.0/routers/{id}/add_router_interface`` (and ``remove_``): not wrapped,
    ``{"subnet_id": ...}`` or ``{"port_id": ...}``."""

    subnet_id: Str255 = ""
    port_id: Str255 = ""


# ---------------------------------------------------------------- floating IPs
class FloatingIPUpdate(NeutronAttributes):
    """``PUT /v2.0/floatingips/{id}``: ``port_id`` (null: disassociate),
    ``fixed_ip_address``, description."""

    _read_only = frozenset({"id", "floating_ip_address", "floating_network_id", "subnet_id",
                            "router_id", "project_id", "tenant_id", "status", "created_at",
                            "updated_at"})
    port_id: Str255 | None = None
    fixed_ip_address: Str64 | None = None
    description: Str255 = ""


class FloatingIPCreate(FloatingIPUpdate):
    """``POST /v2.0/floatingips``: ``floating_network_id`` is required."""

    _read_only = frozenset({"id", "router_id", "status", "created_at", "updated_at"})
    floating_network_id: Str255
    floating_ip_address: Str64 | None = None
    subnet_id: Str255 | None = None
    project_id: Str255 = ""
    tenant_id: Str255 = ""


class FloatingIPCreateRequest(_Wrapper):
    floatingip: FloatingIPCreate


class FloatingIPUpdateRequest(_Wrapper):
    floatingip: FloatingIPUpdate


class NetworkSyncRequest(BaseModel):
    """``POST /v1/network/sync``: ``log`` reports drift, ``repair`` also fixes it."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["log", "repair"] = "repair"
