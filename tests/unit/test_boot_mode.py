"""A node's boot mode and the first-stage iPXE binary its PXE firmware is given
(metalplane.drivers.boot_mode, the ipxe boot interface's DHCP options), the options of MACs
nobody enrolled (by client architecture), dnsmasq's option 93 match and the settings. Nodes
are plain namespaces; no dnsmasq runs (tests/functional/test_dhcp_discovery.py and
test_lab_vm.py run the real thing)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.conductor.discovery import discovery_dhcp_options
from metalplane.dhcp.dnsmasq import DnsmasqServer, format_options
from metalplane.drivers.boot_mode import boot_mode, ipxe_bootfile, node_capability
from metalplane.drivers.modules.agent import IPXEBoot

UUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"


def node(properties: dict[str, Any] | None = None, instance_info: dict[str, Any] | None = None,
         driver_internal_info: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(uuid=UUID, properties=properties or {},
                           instance_info=instance_info or {},
                           driver_internal_info=driver_internal_info or {})


def caps(value: str) -> dict[str, Any]:
    return {"capabilities": value}


def test_the_default_boot_mode_is_bios_unless_set() -> None:
    assert boot_mode(node(), Settings()) == "bios"
    assert boot_mode(node(), Settings(default_boot_mode="uefi")) == "uefi"


@pytest.mark.parametrize(("kwargs", "want"), [
    ({"properties": caps("boot_mode:uefi")}, "uefi"),
    ({"properties": caps("cpu_vt:true, boot_mode:UEFI ,x:y")}, "uefi"),
    ({"properties": {"capabilities": {"boot_mode": "uefi"}}}, "uefi"),
    ({"properties": caps("boot_mode:bios")}, "bios"),
    ({"instance_info": {"deploy_boot_mode": "uefi"}}, "uefi"),
    ({"instance_info": {"capabilities": {"boot_mode": "uefi"}}}, "uefi"),
    ({"instance_info": {"capabilities": '{"boot_mode": "uefi"}'}}, "uefi"),  # as Nova sends
    ({"driver_internal_info": {"deploy_boot_mode": "uefi"}}, "uefi"),
    # instance_info first, then properties, then driver_internal_info (Ironic's order)
    ({"instance_info": {"capabilities": {"boot_mode": "bios"}},
      "driver_internal_info": {"deploy_boot_mode": "uefi"}}, "bios"),
    ({"properties": caps("boot_mode:bios"),
      "driver_internal_info": {"deploy_boot_mode": "uefi"}}, "bios"),
    # secure boot is UEFI
    ({"instance_info": {"capabilities": {"secure_boot": "true"}}}, "uefi"),
    ({"properties": caps("boot_mode"), "driver_internal_info": {}}, "bios"),  # malformed
])
def test_the_boot_mode_follows_ironics_order(kwargs: dict[str, Any], want: str) -> None:
    assert boot_mode(node(**kwargs), Settings()) == want


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"properties": caps("boot_mode:legacy")}, "properties.capabilities boot_mode"),
    ({"instance_info": {"deploy_boot_mode": "efi"}}, "instance_info.deploy_boot_mode"),
    ({"instance_info": {"capabilities": {"boot_mode": 7}}},
     "instance_info.capabilities boot_mode"),
    ({"instance_info": {"capabilities": "not json"}}, "instance_info.capabilities"),
    ({"instance_info": {"capabilities": ["boot_mode"]}}, "instance_info.capabilities"),
    # a boot mode that disagrees with the node's capabilities is refused, as in Ironic
    ({"properties": caps("boot_mode:bios"),
      "instance_info": {"capabilities": {"boot_mode": "uefi"}}}, "violates"),
])
def test_a_bad_boot_mode_is_refused_naming_the_field(kwargs: dict[str, Any],
                                                     field: str) -> None:
    with pytest.raises(Invalid, match=field):
        boot_mode(node(**kwargs), Settings())


def test_node_capability_reads_ironics_string_format() -> None:
    n = node(properties=caps("a:1,boot_mode:uefi,bad,c:d:e"))
    assert node_capability(n, "boot_mode") == "uefi"
    assert node_capability(n, "a") == "1"
    assert node_capability(n, "c") is None and node_capability(n, "bad") is None
    assert node_capability(node(), "boot_mode") is None


def test_the_first_stage_follows_the_boot_mode_and_the_settings() -> None:
    s = Settings()
    assert ipxe_bootfile(node(), s) == "undionly.kpxe"
    assert ipxe_bootfile(node(properties=caps("boot_mode:uefi")), s) == "snponly.efi"
    s = Settings(uefi_ipxe_bootfile_name="ipxe.efi", ipxe_bootfile_name="undionly.kkpxe")
    assert ipxe_bootfile(node(properties=caps("boot_mode:uefi")), s) == "ipxe.efi"
    assert ipxe_bootfile(node(), s) == "undionly.kkpxe"


def _dhcp_options(n: Any, s: Settings) -> dict[str, str]:
    task = SimpleNamespace(node=n, settings=s)
    return {o["opt_name"]: o["opt_value"] for o in IPXEBoot(s).dhcp_options(task)}  # type: ignore[arg-type]


def test_ipxe_boot_gives_plain_pxe_the_binary_of_the_nodes_boot_mode() -> None:
    s = Settings(boot_server_url="http://10.70.0.1:8080")
    bios = _dhcp_options(node(), s)
    assert bios == {"tag:ipxe,bootfile-name": f"http://10.70.0.1:8080/boot/{UUID}.ipxe",
                    "tag:!ipxe,bootfile-name": "undionly.kpxe",  # as before UEFI existed
                    "tftp-server": "10.70.0.1", "server-ip-address": "10.70.0.1"}
    uefi = _dhcp_options(node(properties=caps("boot_mode:uefi")), s)
    assert uefi == {**bios, "tag:!ipxe,bootfile-name": "snponly.efi"}
    with pytest.raises(Invalid, match="boot_mode"):
        _dhcp_options(node(properties=caps("boot_mode:legacy")), s)


def test_ipxe_boot_validation_refuses_a_bad_boot_mode() -> None:
    s = Settings(boot_server_url="http://10.70.0.1:8080")
    task: Any = SimpleNamespace(node=node(properties=caps("boot_mode:legacy")), settings=s,
                                driver_info={})
    with pytest.raises(Invalid, match=r"properties\.capabilities boot_mode"):
        IPXEBoot(s).validate(task)


def test_unknown_macs_get_the_first_stage_of_their_client_architecture() -> None:
    opts = discovery_dhcp_options(Settings(), "http://10.70.0.1:8080")
    lines = format_options("!known", [{"opt_name": n, "opt_value": v} for n, v in opts])
    assert lines == [
        "tag:!known,tag:ipxe,option:bootfile-name,http://10.70.0.1:8080/boot/discovery.ipxe",
        "tag:!known,tag:!ipxe,tag:!efi,option:bootfile-name,undionly.kpxe",
        "tag:!known,tag:!ipxe,tag:efi,option:bootfile-name,snponly.efi",
        "tag:!known,option:tftp-server,10.70.0.1"]


def test_dnsmasq_tags_x86_64_uefi_clients_by_option_93(tmp_path: Path) -> None:
    cmd = DnsmasqServer("provisioning", "eth0", "10.70.0.0/24", tmp_path).command()
    assert "--dhcp-match=set:efi,option:client-arch,7" in cmd
    assert "--dhcp-match=set:efi,option:client-arch,9" in cmd
    assert "--dhcp-userclass=set:ipxe,iPXE" in cmd


@pytest.mark.parametrize("values", [
    {"default_boot_mode": "legacy"}, {"uefi_ipxe_bootfile_name": ""},
    {"uefi_ipxe_bootfile_name": "/usr/lib/ipxe/snponly.efi"},
    {"ipxe_bootfile_name": "a,b"}])
def test_bad_boot_settings_are_refused_by_name(values: dict[str, str]) -> None:
    with pytest.raises(Invalid, match=next(iter(values))):
        Settings(**values).validate()  # type: ignore[arg-type]


def test_agent_inspect_and_deploy_refuse_a_bad_boot_mode_before_they_start() -> None:
    from metalplane.drivers.modules.agent import AgentDeploy, AgentInspect

    s = Settings(boot_server_url="http://10.70.0.1:8080")
    driver = SimpleNamespace(boot=IPXEBoot(s))
    good: Any = SimpleNamespace(node=node(properties=caps("boot_mode:uefi")), settings=s,
                                driver_info={}, driver=driver)
    bad: Any = SimpleNamespace(node=node(instance_info={"deploy_boot_mode": "legacy"}),
                               settings=s, driver_info={}, driver=driver)
    for interface in (AgentInspect(s), AgentDeploy(s)):
        interface.validate(good)
        with pytest.raises(Invalid, match=r"instance_info\.deploy_boot_mode"):
            interface.validate(bad)
