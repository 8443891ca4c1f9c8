"""Hardware types: which interface implementations each kind of server supports.

As in Ironic's ``drivers/generic.py``: a hardware type lists, per interface, the
implementations it supports, the first being the default. A node's ``<kind>_interface``
field picks one of them.
"""

from __future__ import annotations

__all__ = ["FakeHardware", "HardwareType", "IDRACHardware", "ILOHardware", "IPMIHardware",
           "RedfishHardware"]


class HardwareType:
    """Supported implementations per interface kind; the first of each list is the default."""

    name = ""
    supported: dict[str, list[str]] = {}

    @classmethod
    def default(cls, kind: str) -> str:
        return cls.supported[kind][0]


class FakeHardware(HardwareType):
    """No hardware at all: for tests and benchmarks."""

    name = "fake-hardware"
    supported = {
        "power": ["fake"],
        "management": ["fake"],
        "boot": ["fake", "ipxe"],
        "deploy": ["fake", "direct"],
        "inspect": ["fake", "agent", "no-inspect"],
        "bios": ["fake", "no-bios"],
    }


class RedfishHardware(HardwareType):
    """A server with a Redfish BMC."""

    name = "redfish"
    supported = {
        "power": ["redfish"],
        "management": ["redfish"],
        "boot": ["fake", "ipxe", "redfish-virtual-media"],
        "deploy": ["fake", "direct"],  # direct: the ramdisk agent writes the image
        "inspect": ["redfish", "agent", "no-inspect"],
        "bios": ["redfish", "no-bios"],
    }


class IDRACHardware(HardwareType):
    """A Dell server with an iDRAC, through its Redfish service (Ironic's ``idrac`` with
    its ``idrac-redfish`` interfaces; :mod:`metalplane.drivers.modules.idrac`)."""

    name = "idrac"
    supported = {
        "power": ["idrac-redfish"],
        "management": ["idrac-redfish"],
        "boot": ["fake", "ipxe", "idrac-redfish-virtual-media"],
        "deploy": ["fake", "direct"],
        "inspect": ["idrac-redfish", "agent", "no-inspect"],
        "bios": ["idrac-redfish", "no-bios"],
    }


class ILOHardware(HardwareType):
    """An HPE server with an iLO 5 or later, through its Redfish service (Ironic's ``ilo``;
    :mod:`metalplane.drivers.modules.ilo`)."""

    name = "ilo"
    supported = {
        "power": ["ilo"],
        "management": ["ilo"],
        "boot": ["fake", "ipxe", "ilo-virtual-media"],
        "deploy": ["fake", "direct"],
        "inspect": ["ilo", "agent", "no-inspect"],
        "bios": ["ilo", "no-bios"],
    }


class IPMIHardware(HardwareType):
    """A server with an IPMI 2.0 BMC."""

    name = "ipmi"
    supported = {
        "power": ["ipmi"],
        "management": ["ipmi"],
        "boot": ["fake", "ipxe"],
        "deploy": ["fake", "direct"],
        "inspect": ["no-inspect", "agent"],
        "bios": ["no-bios"],
    }
