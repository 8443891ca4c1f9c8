"""What the ramdisk reads from its virtual media, read from the images the
redfish-virtual-media boot interface writes: the agent's parameters, and for a DHCP-less
boot the node's network_data on an ISO labelled config-2; and network_data's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from metalplane.agent import configdrive, vmedia
from metalplane.common.exceptions import Invalid
from metalplane.common.network_data import check_network_data
from metalplane.drivers.modules import boot_iso

MAC = "52:54:00:12:34:56"
PARAMS = "metalplane.api_url=http://10.69.0.1:6385 metalplane.node=abc console=ttyS0 quiet"
NETWORK_DATA: dict[str, Any] = {
    "links": [{"id": "port-0", "type": "phy", "ethernet_mac_address": MAC},
              {"id": "port-1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:99"}],
    "networks": [
        {"id": "net0", "type": "ipv4", "link": "port-0", "ip_address": "10.70.0.240",
         "netmask": "255.255.255.0", "network_id": "prov",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.70.0.1"},
                    {"network": "10.69.0.0", "netmask": "255.255.0.0",
                     "gateway": "10.70.0.2"}]},
        {"id": "net1", "type": "ipv4_dhcp", "link": "port-0", "network_id": "other"},
        {"id": "net2", "type": "ipv4", "link": "port-1", "ip_address": "192.0.2.5",
         "netmask": "255.255.255.0", "network_id": "x", "routes": []}],
    "services": [{"type": "dns", "address": "10.70.0.1"}]}


def _iso(tmp_path: Path, network_data: dict[str, Any] | None) -> bytes:
    (tmp_path / "k").write_bytes(b"kernel")
    (tmp_path / "r").write_bytes(b"ramdisk")
    out = tmp_path / "boot.iso"
    boot_iso.build_boot_iso(out, tmp_path / "k", tmp_path / "r", PARAMS,
                            network_data=network_data)
    return out.read_bytes()


def test_the_boot_iso_gives_the_agents_parameters_and_no_network_data(tmp_path: Path) -> None:
    media = vmedia.read(_iso(tmp_path, None))
    assert media.label == boot_iso.BOOT_LABEL
    assert media.parameters == {"metalplane.api_url": "http://10.69.0.1:6385",
                                "metalplane.node": "abc", "console": "ttyS0", "quiet": ""}
    assert media.network_data is None


def test_with_network_data_the_iso_is_a_config_drive_for_a_dhcp_less_boot(
        tmp_path: Path) -> None:
    media = vmedia.read(_iso(tmp_path, NETWORK_DATA))
    assert media.label == "config-2"
    assert media.network_data == NETWORK_DATA
    assert media.parameters["metalplane.node"] == "abc"
    # what glean sets on the NIC with that MAC: the static ipv4 network of its link only
    nets = vmedia.static_networks(media.network_data, MAC.upper())
    assert nets == [vmedia.StaticNetwork("10.70.0.240", 24, "10.70.0.1",
                                         (("10.69.0.0/16", "10.70.0.2"),))]
    assert vmedia.static_networks(media.network_data, "52:54:00:00:00:01") == []


def test_the_configuration_image_gives_the_parameters_too() -> None:
    media = vmedia.read(boot_iso.build_config_image(PARAMS))
    assert media.label == "ir-vfd-dev" and media.network_data is None
    assert media.parameters["metalplane.api_url"] == "http://10.69.0.1:6385"
    # one key=value a line, as Ironic's floppy image writes them
    assert vmedia.parse_parameters("a=1\nb=2=3\n\nc\n") == {"a": "1", "b": "2=3", "c": ""}


def test_what_is_not_a_boot_image_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an ISO 9660 image"):
        vmedia.read(b"<html>404</html>" * 200)
    with pytest.raises(ValueError, match=r"holds no parameters\.txt"):
        vmedia.read(configdrive.build({"network_data": NETWORK_DATA}))
    bad = {**NETWORK_DATA, "networks": [{**NETWORK_DATA["networks"][0],
                                         "netmask": "255.0.255.0"}]}
    with pytest.raises(ValueError, match=r"networks\[0\]"):
        vmedia.static_networks(bad, MAC)


def test_network_data_is_checked_naming_the_path() -> None:
    assert check_network_data(NETWORK_DATA) is NETWORK_DATA
    assert check_network_data({}) == {} and check_network_data(None) == {}
    cases = [
        ([], "network_data must be an object"),
        ({"links": [], "networks": [], "bogus": 1}, "unknown key"),
        ({"networks": []}, "network_data/links is required"),
        ({**NETWORK_DATA, "links": [{"id": "p", "type": "phy",
                                     "ethernet_mac_address": "nope"}]},
         "network_data/links/0/ethernet_mac_address"),
        ({**NETWORK_DATA, "networks": [{"id": "n", "type": "ipv5", "link": "port-0"}]},
         "network_data/networks/0/type"),
        ({**NETWORK_DATA, "networks": [{"id": "n", "type": "ipv4_dhcp", "link": "x"}]},
         "network_data/networks/0/link"),
        ({**NETWORK_DATA, "networks": [{"id": "n", "type": "ipv4", "link": "port-0",
                                        "ip_address": "10.0.0.300", "netmask": "24"}]},
         "network_data/networks/0/ip_address"),
        ({**NETWORK_DATA, "networks": [{"id": "n", "type": "ipv4", "link": "port-0",
                                        "ip_address": "10.0.0.3", "netmask": "255.0.255.0"}]},
         "network_data/networks/0/netmask"),
        ({**NETWORK_DATA, "networks": [{"id": "n", "type": "ipv4", "link": "port-0",
                                        "ip_address": "10.0.0.3", "netmask": "255.0.0.0",
                                        "routes": [{"network": "0.0.0.0"}]}]},
         "network_data/networks/0/routes/0/netmask"),
    ]
    for value, message in cases:
        with pytest.raises(Invalid, match=message):
            check_network_data(value)
