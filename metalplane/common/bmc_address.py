"""Metal3-style BMC addresses turned into Ironic driver_info keys.

Accepted forms (as Metal3's baremetal-operator ``pkg/hardwareutils/bmc``):
``redfish://host[:port]/redfish/v1/Systems/ID`` (HTTPS), ``redfish+http://…``,
``redfish+https://…``, and ``ipmi://host[:port]`` (default port 623). The system path
is optional for Redfish when the BMC has one system.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from metalplane.common.exceptions import Invalid

__all__ = ["parse_bmc_address"]

SCHEMES = ("redfish", "redfish+http", "redfish+https", "ipmi")


def parse_bmc_address(address: str, username: str | None = None,
                      password: str | None = None) -> tuple[str, dict[str, Any]]:
    """Return ``(hardware_type, driver_info)`` for ``address`` and optional credentials.

    Raises :class:`Invalid` naming what is wrong with the address.
    """
    raw = (address or "").strip()
    parsed = urllib.parse.urlsplit(raw)
    scheme = parsed.scheme.lower()
    if scheme not in SCHEMES:
        raise Invalid(f"BMC address '{address}' must start with one of "
                      f"{', '.join(s + '://' for s in SCHEMES)}")
    if not parsed.hostname:
        raise Invalid(f"BMC address '{address}' has no host")
    try:
        port = parsed.port
    except ValueError:
        raise Invalid(f"BMC address '{address}' has an invalid port") from None
    host = parsed.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if username and not password:
        raise Invalid("a BMC password is required when a BMC user name is given")
    if scheme == "ipmi":
        if parsed.path not in ("", "/"):
            raise Invalid(f"BMC address '{address}': ipmi:// takes no path")
        info: dict[str, Any] = {"ipmi_address": parsed.hostname, "ipmi_port": port or 623}
        if username:
            info.update(ipmi_username=username, ipmi_password=password)
        return "ipmi", info
    http = "http" if scheme == "redfish+http" else "https"
    netloc = f"{host}:{port}" if port else host
    info = {"redfish_address": f"{http}://{netloc}"}
    path = parsed.path.rstrip("/")
    if path:
        if not path.startswith("/redfish/v1/Systems/"):
            raise Invalid(f"BMC address '{address}': the path must be "
                          "/redfish/v1/Systems/<id>")
        info["redfish_system_id"] = path
    if username:
        info.update(redfish_username=username, redfish_password=password)
    return "redfish", info
