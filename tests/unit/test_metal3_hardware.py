"""Metal3's status.hardware (HardwareDetails) from a captured ironic-python-agent
inventory, as baremetal-operator maps Ironic's."""

from __future__ import annotations

import json
from pathlib import Path

from metalplane.common.metal3 import host_status
from tests.unit.test_metal3_status import SPEC, node

INVENTORY = json.loads((Path(__file__).parent / "fixtures" / "ipa_inventory.json")
                       .read_text())["inventory"]


def test_hardware_details_from_the_inventory() -> None:
    hw = host_status(node(properties={"cpus": 1, "memory_mb": 1}), SPEC,
                     inventory=INVENTORY)["hardware"]
    assert hw["systemVendor"] == {"manufacturer": "Dell Inc.", "productName": "PowerEdge R640",
                                  "serialNumber": "8XK4L33"}
    assert hw["firmware"] == {"bios": {"vendor": "Dell Inc.", "version": "2.17.1",
                                       "date": "11/14/2022"}}
    assert hw["ramMebibytes"] == 196608
    assert hw["cpu"]["count"] == 80 and hw["cpu"]["arch"] == "x86_64"
    assert hw["cpu"]["clockMegahertz"] == 3900.0 and "avx2" in hw["cpu"]["flags"]
    assert hw["cpu"]["model"].startswith("Intel(R) Xeon(R) Gold 6230")
    eno1 = hw["nics"][0]
    assert eno1 == {"name": "eno1", "mac": "b0:7b:25:de:7a:10", "ip": "10.20.0.57",
                    "speedGbps": 10, "model": "0x14e4 0x16d8", "pxe": True}
    assert [n["pxe"] for n in hw["nics"]] == [True, False, False]
    assert hw["storage"][1]["name"] == "/dev/nvme0n1"
    assert hw["storage"][1]["sizeBytes"] == 1600321314816
    assert hw["storage"][0]["serialNumber"] == "61866da0a6bb2e002b1b1c8b0e3e7f5a"
    assert hw["hostname"] == "localhost.localdomain"


def test_without_an_inventory_hardware_comes_from_properties() -> None:
    hw = host_status(node(properties={"cpus": 8, "memory_mb": 4096, "cpu_arch": "x86_64"}),
                     SPEC)["hardware"]
    assert hw["cpu"] == {"arch": "x86_64", "count": 8} and "systemVendor" not in hw
