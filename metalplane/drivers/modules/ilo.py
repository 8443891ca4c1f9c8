"""HPE iLO: the ``ilo`` hardware type's Redfish interfaces (``ilo``).

Everything HPE-specific lives here; the Redfish exchange itself is
:mod:`metalplane.drivers.modules.redfish`'s (iLO 5 and later speak Redfish). driver_info
keys, Ironic's for the ``ilo`` hardware type: ``ilo_address`` (host or IP, required),
``ilo_username``, ``ilo_password``, ``client_port`` (default 443), ``ilo_verify_ca``
(default true); the ``redfish_*`` keys win where given, and the system defaults to
``/redfish/v1/Systems/1``, the one an iLO manages. Source: Ironic's "iLO drivers"
documentation (``drivers/modules/ilo/common.py`` ``REQUIRED_PROPERTIES``,
``OPTIONAL_PROPERTIES``).
"""

from __future__ import annotations

from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.drivers.modules.redfish import (
    RedfishInspect,
    RedfishManagement,
    RedfishMixin,
    RedfishPower,
)
from metalplane.drivers.modules.redfish_bios import RedfishBios
from metalplane.drivers.modules.redfish_vmedia import PROPERTIES as VMEDIA_PROPERTIES
from metalplane.drivers.modules.redfish_vmedia import RedfishVirtualMediaBoot

__all__ = ["DEFAULT_SYSTEM_ID", "ILOBios", "ILOInspect", "ILOManagement", "ILOPower",
           "ILOVirtualMediaBoot", "redfish_info"]

DEFAULT_SYSTEM_ID = "/redfish/v1/Systems/1"
_PROPERTIES = {
    "ilo_address": "The iLO's host or IP address. Required.",
    "ilo_username": "User name on the iLO.",
    "ilo_password": "Password on the iLO.",
    "client_port": "The iLO's HTTPS port. Default 443.",
    "ilo_verify_ca": "true, false, or a CA bundle path. Default true.",
    "redfish_system_id": f"Path of the system. Default {DEFAULT_SYSTEM_ID}.",
}


def redfish_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the ``redfish_*`` keys made from the ``ilo_*`` ones where absent."""
    out = dict(info)
    host = str(out.get("ilo_address") or "").strip()
    if not out.get("redfish_address") and host:
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        out["redfish_address"] = (host if "://" in host else
                                  f"https://{bracketed}:{out.get('client_port') or 443}")
    for alias, key in (("ilo_username", "redfish_username"),
                       ("ilo_password", "redfish_password"),
                       ("ilo_verify_ca", "redfish_verify_ca")):
        if out.get(key) in (None, "") and out.get(alias) not in (None, ""):
            out[key] = out[alias]
    out.setdefault("redfish_system_id", DEFAULT_SYSTEM_ID)
    return out


class _ILOMixin(RedfishMixin):
    def get_properties(self) -> dict[str, str]:
        return dict(_PROPERTIES)

    def redfish_info(self, info: dict[str, Any]) -> dict[str, Any]:
        return redfish_info(info)

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        if not partial and not info.get("ilo_address") and not info.get("redfish_address"):
            raise Invalid("the ilo hardware type needs driver_info/ilo_address, which is "
                          "missing")
        super().validate_driver_info(info, partial)


class ILOPower(_ILOMixin, RedfishPower):
    name = "ilo"


class ILOManagement(_ILOMixin, RedfishManagement):
    name = "ilo"


class ILOInspect(_ILOMixin, RedfishInspect):
    name = "ilo"


class ILOVirtualMediaBoot(_ILOMixin, RedfishVirtualMediaBoot):
    """Virtual media boot of the agent (Ironic's ``ilo-virtual-media``)."""

    name = "ilo-virtual-media"

    def get_properties(self) -> dict[str, str]:
        return {**super().get_properties(), **VMEDIA_PROPERTIES}


class ILOBios(_ILOMixin, RedfishBios):
    """BIOS settings through the Redfish service (Ironic's ``ilo`` bios)."""

    name = "ilo"
