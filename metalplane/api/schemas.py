"""Typed request bodies of the Bare Metal API v1 (pydantic), as Ironic's JSON schemas
(``ironic/api/controllers/v1/node.py`` ``node_schema`` and its siblings) accept them.

A wrong type, an unknown attribute or an over-long string is refused by FastAPI's
validation and answered 400 naming the field (``metalplane.api.app``'s handler), before
anything is written. Booleans are read as Ironic reads them (``args.boolean``: a JSON
boolean or a string that ``oslo_utils.strutils.bool_from_string`` accepts strictly), so
``"false"`` from a command line is False. Only the shape is checked here; the rules that
need the store (a known driver, a free MAC) stay in ``metalplane.conductor.resources``.
Source: Bare Metal API reference (api-ref), v1.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from metalplane.api.schemas_common import StrictishBool
from metalplane.drivers.base import NOOP_INTERFACES

__all__ = [
    "BootDeviceBody",
    "ErrorBody",
    "MaintenanceBody",
    "NodeCreate",
    "PatchOperation",
    "PortCreate",
    "PortgroupCreate",
    "PowerStateBody",
    "ProvisionStateBody",
    "TraitsBody",
]


def _uuid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise ValueError(f"'{value}' is not a UUID") from None


Uuid = Annotated[str, Field(max_length=36), AfterValidator(_uuid)]
Str255 = Annotated[str, Field(max_length=255)]
Iface = Annotated[str, Field(max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorBody(BaseModel):
    """Ironic's error answer: ``error_message`` is a JSON string of
    ``{"faultstring", "faultcode", "debuginfo"}``."""

    error_message: str


class NodeCreate(_Body):
    """``POST /v1/nodes``; also the shape a node must keep after a JSON patch."""

    driver: Annotated[str, Field(min_length=1, max_length=64)]
    uuid: Uuid | None = None
    name: Str255 | None = None
    description: Annotated[str, Field(max_length=4096)] | None = None
    driver_info: dict[str, Any] | None = None
    properties: dict[str, Any] | None = None
    instance_info: dict[str, Any] | None = None
    instance_uuid: Uuid | None = None
    extra: dict[str, Any] | None = None
    maintenance: StrictishBool | None = None
    maintenance_reason: Annotated[str, Field(max_length=4096)] | None = None
    automated_clean: StrictishBool | None = None
    network_data: dict[str, Any] | None = None
    traits: list[Str255] | None = None
    resource_class: Annotated[str, Field(max_length=80)] | None = None
    conductor_group: Str255 | None = None
    owner: Str255 | None = None
    lessee: Str255 | None = None
    network_interface: Iface | None = None
    power_interface: Iface | None = None
    management_interface: Iface | None = None
    boot_interface: Iface | None = None
    deploy_interface: Iface | None = None
    inspect_interface: Iface | None = None
    bios_interface: Iface | None = None
    rescue_interface: Iface | None = None
    console_interface: Iface | None = None
    vendor_interface: Iface | None = None
    raid_interface: Iface | None = None
    storage_interface: Iface | None = None


if not {f"{k}_interface" for k in NOOP_INTERFACES} <= set(NodeCreate.model_fields):
    raise RuntimeError("NodeCreate lacks a field of drivers.base.NOOP_INTERFACES")


class PatchOperation(_Body):
    """One operation of a JSON patch (RFC 6902) as Ironic takes it on ``PATCH``."""

    op: Literal["add", "replace", "remove", "move", "copy", "test"]
    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^/")]
    value: Any = None
    from_: Annotated[str, Field(max_length=1024)] | None = Field(None, alias="from")


class PortCreate(_Body):
    """``POST /v1/ports``; also a port's shape after a JSON patch."""

    address: Annotated[str, Field(max_length=18)]
    node_uuid: Annotated[str, Field(max_length=255)] | None = None
    node: Annotated[str, Field(max_length=255)] | None = None  # 1.94: a name or UUID
    uuid: Uuid | None = None
    name: Str255 | None = None
    portgroup_uuid: Annotated[str, Field(max_length=255)] | None = None
    local_link_connection: dict[str, Str255 | None] | None = None
    physical_network: Annotated[str, Field(max_length=64)] | None = None
    pxe_enabled: StrictishBool | None = None
    extra: dict[str, Any] | None = None


class PortgroupCreate(_Body):
    """``POST /v1/portgroups``; also a portgroup's shape after a JSON patch."""

    node_uuid: Annotated[str, Field(max_length=255)]
    address: Annotated[str, Field(max_length=18)] | None = None
    uuid: Uuid | None = None
    name: Str255 | None = None
    mode: Str255 | None = None
    properties: dict[str, Any] | None = None
    standalone_ports_supported: StrictishBool | None = None
    extra: dict[str, Any] | None = None


class ProvisionStateBody(_Body):
    """``PUT /v1/nodes/{node}/states/provision``."""

    target: Annotated[str, Field(min_length=1, max_length=64)]
    configdrive: dict[str, Any] | str | None = None
    clean_steps: list[dict[str, Any]] | None = None
    deploy_steps: list[dict[str, Any]] | None = None
    disable_ramdisk: StrictishBool | None = None
    rescue_password: Str255 | None = None


class PowerStateBody(_Body):
    """``PUT /v1/nodes/{node}/states/power``; ``timeout`` in seconds."""

    target: Annotated[str, Field(min_length=1, max_length=64)]
    timeout: Annotated[int, Field(ge=1, le=86400)] | None = None


class BootDeviceBody(_Body):
    """``PUT /v1/nodes/{node}/management/boot_device``."""

    boot_device: Annotated[str, Field(min_length=1, max_length=64)]
    persistent: StrictishBool = False


class MaintenanceBody(_Body):
    """``PUT /v1/nodes/{node}/maintenance``."""

    reason: Annotated[str, Field(max_length=4096)] | None = None


class TraitsBody(_Body):
    """``PUT /v1/nodes/{node}/traits``."""

    traits: list[Str255]
