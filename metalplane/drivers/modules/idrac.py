"""Dell iDRAC: the ``idrac`` hardware type's Redfish interfaces (``idrac-redfish``).

Everything Dell-specific lives here; the Redfish exchange itself is
:mod:`metalplane.drivers.modules.redfish`'s. driver_info keys, Ironic's for the ``idrac``
hardware type's ``idrac-redfish`` interfaces: ``redfish_address``, ``redfish_system_id``
(default ``/redfish/v1/Systems/System.Embedded.1``, the one system an iDRAC manages),
``redfish_username``, ``redfish_password``, ``redfish_verify_ca``. The older keys of
Ironic's WS-Man interfaces, which rules written for ironic-inspector still set, are
accepted as aliases when the ``redfish_*`` key is absent: ``drac_address`` (a host or an
address; with ``drac_protocol`` (default https) and ``drac_port`` (default 443) it makes
``redfish_address``), ``drac_username``, ``drac_password``. Source: Ironic's
``drivers/modules/drac`` and "iDRAC driver" documentation.
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

__all__ = ["DEFAULT_SYSTEM_ID", "IDRACBios", "IDRACInspect", "IDRACManagement", "IDRACPower",
           "IDRACVirtualMediaBoot", "redfish_info"]

DEFAULT_SYSTEM_ID = "/redfish/v1/Systems/System.Embedded.1"
_PROPERTIES = {
    "redfish_address": "The iDRAC's URL, http[s]://host[:port]. Required, unless "
    "drac_address is given.",
    "redfish_system_id": f"Path of the system. Default {DEFAULT_SYSTEM_ID}.",
    "redfish_username": "User name on the iDRAC (alias: drac_username).",
    "redfish_password": "Password on the iDRAC (alias: drac_password).",
    "redfish_verify_ca": "true, false, or a CA bundle path. Default true.",
    "drac_address": "Alias: the iDRAC's host or IP address (makes redfish_address with "
    "drac_protocol and drac_port).",
    "drac_protocol": "http or https, for drac_address. Default https.",
    "drac_port": "Port, for drac_address. Default 443.",
    "drac_username": "Alias of redfish_username.",
    "drac_password": "Alias of redfish_password.",
}


def _url(host: str, protocol: Any, port: Any) -> str:
    if "://" in host:
        return host
    scheme = str(protocol or "https")
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{bracketed}:{port or 443}"


def redfish_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the ``redfish_*`` keys filled from the ``drac_*`` aliases where
    absent, and the iDRAC's system as the default system."""
    out = dict(info)
    if not out.get("redfish_address") and out.get("drac_address"):
        out["redfish_address"] = _url(str(out["drac_address"]).strip(),
                                      out.get("drac_protocol"), out.get("drac_port"))
    for alias, key in (("drac_username", "redfish_username"),
                       ("drac_password", "redfish_password")):
        if not out.get(key) and out.get(alias):
            out[key] = out[alias]
    out.setdefault("redfish_system_id", DEFAULT_SYSTEM_ID)
    return out


class _IDRACMixin(RedfishMixin):
    def get_properties(self) -> dict[str, str]:
        return dict(_PROPERTIES)

    def redfish_info(self, info: dict[str, Any]) -> dict[str, Any]:
        return redfish_info(info)

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        if not partial and not info.get("redfish_address") and not info.get("drac_address"):
            raise Invalid("the idrac hardware type needs driver_info/redfish_address (or "
                          "its alias drac_address), which is missing")
        super().validate_driver_info(info, partial)


class IDRACPower(_IDRACMixin, RedfishPower):
    name = "idrac-redfish"


class IDRACManagement(_IDRACMixin, RedfishManagement):
    name = "idrac-redfish"


class IDRACInspect(_IDRACMixin, RedfishInspect):
    name = "idrac-redfish"


class IDRACVirtualMediaBoot(_IDRACMixin, RedfishVirtualMediaBoot):
    """Virtual media boot of the agent (Ironic's ``idrac-redfish-virtual-media``)."""

    name = "idrac-redfish-virtual-media"

    def get_properties(self) -> dict[str, str]:
        return {**super().get_properties(), **VMEDIA_PROPERTIES}


class IDRACBios(_IDRACMixin, RedfishBios):
    """BIOS settings through the Redfish service (Ironic's ``idrac-redfish`` bios)."""

    name = "idrac-redfish"
