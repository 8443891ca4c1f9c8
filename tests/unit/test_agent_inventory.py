"""The agent's inventory: IPA's shape from this machine, the hardware file's overrides, and
raw LLDP TLVs that the conductor's parser reads back as the agent's own parser does."""

from __future__ import annotations

import pytest

from metalplane.agent import inventory, lldp
from metalplane.agent.main import local_interfaces
from metalplane.drivers.inventory import parse_lldp_tlvs, process


def _tlv(kind: int, value: bytes) -> bytes:
    return ((kind << 9) | len(value)).to_bytes(2, "big") + value


FRAME = (bytes.fromhex("0180c200000e020000000001") + (0x88CC).to_bytes(2, "big")
         + _tlv(1, b"\x04" + bytes.fromhex("7cfe90123456")) + _tlv(2, b"\x05Ethernet1/5")
         + _tlv(3, b"\x00\x78") + _tlv(4, b"to node-1") + _tlv(5, b"mplab-tor")
         + _tlv(0, b""))


def test_raw_tlvs_are_ipa_shaped_and_parse_back_alike() -> None:
    tlvs = lldp.raw_tlvs(FRAME)
    assert tlvs[0] == [1, "047cfe90123456"] and tlvs[-1] == [0, ""]
    assert [t[0] for t in tlvs] == [1, 2, 3, 4, 5, 0]
    mine = lldp.parse_lldp(FRAME)
    parsed = parse_lldp_tlvs(tlvs)
    assert parsed["switch_chassis_id"] == mine["chassis_id"] == "7c:fe:90:12:34:56"
    assert parsed["switch_port_id"] == mine["port_id"] == "Ethernet1/5"
    assert parsed["switch_system_name"] == mine["system_name"] == "mplab-tor"
    assert parsed["switch_port_description"] == "to node-1"
    with pytest.raises(ValueError):
        lldp.raw_tlvs(b"\x00" * 20)


def test_collect_is_ipa_shaped_with_the_hardware_file_laid_over(tmp_path: object) -> None:
    nics = local_interfaces()
    name = next(iter(nics), None)
    tlvs = {name: lldp.raw_tlvs(FRAME)} if name else {}
    inv = inventory.collect(nics, tlvs, "/nonexistent.disk", 8 << 20, {
        "system_vendor": {"manufacturer": "Dell Inc.", "serial_number": "LAB-0001"},
        "bmc_address": "192.0.2.9"})
    assert set(inv) >= {"cpu", "memory", "disks", "interfaces", "system_vendor", "boot",
                        "bmc_address", "hostname"}
    assert inv["cpu"]["count"] >= 1 and inv["cpu"]["architecture"]
    assert inv["memory"]["total"] > 0 and inv["memory"]["physical_mb"] > 0
    assert inv["disks"] == [{"name": "/nonexistent.disk", "size": 8 << 20,
                             "model": "virtual disk", "rotational": False, "serial": None,
                             "wwn": None, "vendor": None, "by_path": None, "hctl": None}]
    assert inv["system_vendor"]["manufacturer"] == "Dell Inc."
    assert inv["system_vendor"]["serial_number"] == "LAB-0001"
    assert "product_name" in inv["system_vendor"]  # the machine's, not overridden
    assert inv["bmc_address"] == "192.0.2.9"
    assert inv["boot"]["current_boot_mode"] in ("bios", "uefi")
    if name:
        done = process({"inventory": inv})
        assert done.plugin_data["parsed_lldp"][name]["switch_port_id"] == "Ethernet1/5"
        assert done.wiring[nics[name]] == {"switch_id": "7c:fe:90:12:34:56",
                                           "port_id": "Ethernet1/5", "switch_info": "mplab-tor"}


def test_merge_replaces_or_merges_one_level() -> None:
    base = {"boot": {"current_boot_mode": "bios", "pxe_interface": None}, "bmc_address": "0.0.0.0"}
    out = inventory.merge(base, {"boot": {"pxe_interface": "52:54:00:00:00:01"},
                                 "bmc_address": "10.0.0.2", "extra": [1]})
    assert out == {"boot": {"current_boot_mode": "bios", "pxe_interface": "52:54:00:00:00:01"},
                   "bmc_address": "10.0.0.2", "extra": [1]}
    assert base["boot"]["pxe_interface"] is None
