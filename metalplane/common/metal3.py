"""Metal3's view of a node: the BareMetalHost ``status`` computed from Ironic's fields.

Pure data and functions (no I/O): the Kubernetes-style API, the demo's table and the
tests share them. Names and meanings are Metal3's (metal3-io/baremetal-operator
``apis/metal3.io/v1alpha1/baremetalhost_types.go``: ``ProvisioningState``,
``OperationalStatus``, ``ErrorType``, ``HardwareDetails``). Metal3 names map onto the
node model; they are a view, not a second store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

__all__ = ["ERROR_TYPE", "METAL3_STATE", "PROVISIONING_STATES", "host_status",
           "provisioning_state"]

# Metal3's ProvisioningState values (baremetalhost_types.go). metalplane shows all but
# "", "unmanaged" (a host needs a BMC address here), "match profile" and "ready" (older
# names of what is now "available").
PROVISIONING_STATES = ("", "unmanaged", "registering", "match profile", "preparing", "ready",
                       "available", "provisioning", "provisioned", "externally provisioned",
                       "deprovisioning", "inspecting", "powering off before delete",
                       "deleting")

METAL3_STATE = {  # Ironic provision state -> Metal3 BareMetalHost provisioning state
    "enroll": "registering", "verifying": "registering", "manageable": "preparing",
    "inspecting": "inspecting", "inspect wait": "inspecting", "inspect failed": "inspecting",
    "cleaning": "preparing", "clean wait": "preparing", "clean failed": "preparing",
    "available": "available", "deploying": "provisioning", "wait call-back": "provisioning",
    "deploy failed": "provisioning", "active": "provisioned", "deleting": "deprovisioning",
    "error": "deprovisioning", "adopting": "externally provisioned",
    "adopt failed": "externally provisioned",
}

ERROR_TYPE = {  # Ironic failed state -> Metal3 ErrorType
    "inspect failed": "inspection error", "clean failed": "preparation error",
    "deploy failed": "provisioning error", "error": "provisioning error",
    "adopt failed": "provisioned registration error",
}


_UNDEPLOYED = ("cleaning", "clean wait", "clean failed")  # after an undeploy: deprovisioning


def provisioning_state(node: Any, externally_provisioned: bool = False,
                       deleting: bool = False) -> str:
    """Metal3's ``status.provisioning.state`` of ``node`` (an object with Ironic's
    ``provision_state``, ``power_state``, ``instance_info``): ``externally provisioned``
    for an adopted (or adopting) node whose host says ``spec.externallyProvisioned``;
    ``deprovisioning`` also for the cleaning that follows an undeploy (the node still
    names its image); for a host being deleted (``deleting``), ``deprovisioning`` while
    its image goes, ``powering off before delete``, then ``deleting``; else
    :data:`METAL3_STATE`'s name."""
    state = str(node.provision_state)
    if deleting:
        if externally_provisioned and state in ("active", "adopting", "adopt failed"):
            return "deleting"  # detached, not deprovisioned
        if state in ("active", "deploy failed", "error", "deleting", *_UNDEPLOYED):
            return "deprovisioning"
        if node.power_state == "power on" and state != "enroll":
            return "powering off before delete"
        return "deleting"
    if externally_provisioned and state in ("active", "adopting", "adopt failed"):
        return "externally provisioned"
    if state in _UNDEPLOYED and (getattr(node, "instance_info", None) or {}).get(
            "image_source"):
        return "deprovisioning"
    return METAL3_STATE.get(state, state)


def _error_type(node: Any, spec: dict[str, Any]) -> str:
    state = str(node.provision_state)
    if state in ERROR_TYPE:
        return ERROR_TYPE[state]
    if node.last_error and state in ("enroll", "verifying"):
        return "registration error"  # manage failed: the BMC or its credentials
    if (node.last_error and state in ("available", "active") and "online" in spec
            and (node.power_state == "power on") != bool(spec["online"])
            and not getattr(node, "target_power_state", None)):
        return "power management error"  # a power change the BMC refused
    return ""


def _image(node: Any) -> dict[str, Any]:
    """Metal3's ``Image`` of what the node is deployed with (its instance_info)."""
    info = getattr(node, "instance_info", None) or {}
    return {field: info[key] for field, key in (
        ("url", "image_source"), ("checksum", "image_checksum"),
        ("checksumType", "image_os_hash_algo"), ("format", "image_disk_format"))
        if info.get(key)}


def _hardware(properties: dict[str, Any], inventory: dict[str, Any] | None = None
              ) -> dict[str, Any] | None:
    """Metal3's ``HardwareDetails`` from the node's inventory (ironic-python-agent's shape,
    as baremetal-operator's ironic provisioner maps it: ``systemVendor``, ``firmware``,
    ``ramMebibytes``, ``nics``, ``storage``, ``cpu``, ``hostname``), else from Ironic's
    properties (after an inspection that gave no inventory)."""
    if inventory:
        return _hardware_from_inventory(inventory)
    if not properties.get("cpus") and not properties.get("memory_mb"):
        return None
    hw: dict[str, Any] = {
        "cpu": {"arch": properties.get("cpu_arch", ""), "count": int(properties.get("cpus") or 0)},
        "ramMebibytes": int(properties.get("memory_mb") or 0),
        "storage": ([{"sizeBytes": int(properties["local_gb"]) * 1024 ** 3}]
                    if properties.get("local_gb") else []),
        "nics": [],
    }
    return hw


def _hardware_from_inventory(inv: dict[str, Any]) -> dict[str, Any]:
    cpu = inv.get("cpu") or {}
    vendor = inv.get("system_vendor") or {}
    firmware = vendor.get("firmware") or {}
    mem = inv.get("memory") or {}
    # the PXE NIC's MAC, also in pxelinux's 01-aa-bb-cc-dd-ee-ff form
    pxe = str((inv.get("boot") or {}).get("pxe_interface") or "").lower().replace("-", ":")
    try:
        mhz = float(cpu.get("frequency") or 0)
    except (TypeError, ValueError):
        mhz = 0.0
    return {
        "systemVendor": {"manufacturer": vendor.get("manufacturer") or "",
                         "productName": vendor.get("product_name") or "",
                         "serialNumber": vendor.get("serial_number") or ""},
        "firmware": {"bios": {"vendor": firmware.get("vendor") or "",
                              "version": firmware.get("version") or "",
                              "date": firmware.get("build_date") or ""}},
        "ramMebibytes": int(mem.get("physical_mb") or 0) or int(mem.get("total") or 0) >> 20,
        "nics": [{"name": n.get("name") or "", "mac": n.get("mac_address") or "",
                  "ip": n.get("ipv4_address") or n.get("ipv6_address") or "",
                  "speedGbps": int(n.get("speed_mbps") or 0) // 1000,
                  "model": " ".join(str(x) for x in (n.get("vendor"), n.get("product")) if x),
                  "pxe": bool(n.get("mac_address")) and pxe.endswith(
                      str(n.get("mac_address")).lower())}
                 for n in inv.get("interfaces") or [] if isinstance(n, dict)],
        "storage": [{"name": d.get("name") or "", "rotational": bool(d.get("rotational")),
                     "sizeBytes": int(d.get("size") or 0), "model": d.get("model") or "",
                     "vendor": d.get("vendor") or "", "serialNumber": d.get("serial") or "",
                     "wwn": d.get("wwn") or "", "hctl": d.get("hctl") or ""}
                    for d in inv.get("disks") or [] if isinstance(d, dict)],
        "cpu": {"arch": cpu.get("architecture") or "", "model": cpu.get("model_name") or "",
                "clockMegahertz": mhz, "flags": sorted(cpu.get("flags") or []),
                "count": int(cpu.get("count") or 0)},
        "hostname": inv.get("hostname") or "",
    }


def host_status(node: Any, spec: dict[str, Any], namespace: str = "default",
                inventory: dict[str, Any] | None = None, deleting: bool = False
                ) -> dict[str, Any]:
    """The BareMetalHost ``status`` of ``node`` (Ironic's fields: ``provision_state``,
    ``power_state``, ``last_error``, ``maintenance``, ``properties``, ``updated_at``,
    ``created_at``, ``driver``) for a host in ``namespace`` whose ``spec`` is given::

        {"operationalStatus": "OK"|"error"|"detached"|"discovered",
         "errorType": "", "errorMessage": "", "errorCount": int,
         "provisioning": {"state": str, "ID": node uuid, "image": {...}},
         "poweredOn": bool, "goodCredentials": {...}, "hardwareProfile": str,
         "hardware": HardwareDetails (only once inspected), "lastUpdated": RFC 3339}

    ``inventory``: the node's (ironic-python-agent's shape, ``GET /v1/nodes/{id}/inventory``)
    for ``hardware``, which is otherwise made from ``properties``.
    ``operationalStatus`` is ``detached`` in maintenance, ``error`` with an ``errorType``
    (Metal3's ``ErrorType`` names), ``discovered`` for an unregistered node without BMC
    credentials, else ``OK``. ``deleting``: the host has a ``deletionTimestamp`` (see
    :func:`provisioning_state`).
    """
    error_type = _error_type(node, spec)
    state = str(node.provision_state)
    registered = state not in ("enroll", "verifying")
    if node.maintenance:
        operational = "detached"
    elif error_type:
        operational = "error"
    elif not (spec.get("bmc") or {}).get("credentialsName") and not registered:
        operational = "discovered"
    else:
        operational = "OK"
    bmc = spec.get("bmc") or {}
    when = node.updated_at or node.created_at
    status: dict[str, Any] = {
        "operationalStatus": operational,
        "errorType": error_type,
        "errorMessage": (node.last_error or "") if error_type else "",
        "errorCount": 1 if error_type else 0,
        "provisioning": {
            "state": provisioning_state(node, bool(spec.get("externallyProvisioned")),
                                        deleting),
            "ID": node.uuid,
            "image": _image(node) if state in ("active", "deploying", "wait call-back",
                                               "deploy failed") else {},
        },
        "poweredOn": node.power_state == "power on",
        "goodCredentials": ({"credentials": {"name": bmc.get("credentialsName", ""),
                                             "namespace": namespace}}
                            if registered and bmc.get("credentialsName") else {}),
        "hardwareProfile": "" if spec.get("externallyProvisioned") else "unknown",
        "lastUpdated": _rfc3339(when),
    }
    hardware = _hardware(dict(node.properties or {}), inventory)
    if hardware is not None:
        status["hardware"] = hardware
    return status


def _rfc3339(when: dt.datetime | None) -> str:
    if when is None:
        return ""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
