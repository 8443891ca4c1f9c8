"""The VM demo's user data and the lab's virtualbmc command, without a machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from metalplane.lab import vm
from metalplane.lab.vm_demo import _user_data


def test_the_user_data_is_cloud_config_with_a_marker_a_responder_and_probes(
        tmp_path: Path) -> None:
    text = _user_data("vm-1", "tenant-a", "10.70.0.1", "10.70.0.240/24", "192.168.50.250",
                      "192.168.50.251")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    assert files["/srv/www/marker"]["content"] == "deployed by metalplane: vm-1 on tenant-a\n"
    script = files["/usr/local/sbin/metalplane-probes"]["content"]
    assert files["/usr/local/sbin/metalplane-probes"]["permissions"] == "0755"
    assert doc["runcmd"][0][:2] == ["systemd-run", "--unit=demo-http"]
    assert doc["runcmd"][-1] == ["/usr/local/sbin/metalplane-probes"]
    # the probe script is valid sh and probes what the demo checks, in that order
    path = tmp_path / "probes"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
    probes = [line.split()[1:] for line in script.splitlines() if line.startswith("probe ")]
    assert probes == [["own-tenant-peer", "192.168.50.250"],
                      ["other-tenant-peer", "192.168.50.251"],
                      ["provisioning", "10.70.0.1"]]
    # the borrowed provisioning address is added before its probe and removed after
    lines = script.splitlines()
    add = lines.index('ip addr add 10.70.0.240/24 dev "$dev"')
    assert lines[add + 1] == "probe provisioning 10.70.0.1"
    assert lines[add + 2] == 'ip addr del 10.70.0.240/24 dev "$dev"'


def test_vbmcd_runs_with_its_configuration_named_on_its_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "virtualbmc.conf"
    cmd, env = vm.virtualbmc_command(conf)
    assert cmd[-1] == str(conf)  # so that lab down finds it by the state directory
    assert env["VIRTUALBMC_CONFIG"] == str(conf)
    code = cmd[cmd.index("-c") + 1]
    compile(code, "vbmcd", "exec")
    assert "vbmcd.main(['--foreground'])" in code and "0x11" in code
    plain, _env = vm.virtualbmc_command(conf, sha1_only=False)
    assert "serversession" not in plain[plain.index("-c") + 1]


def test_keep_tells_how_to_watch_a_vm_rack_s_console() -> None:
    import io

    from rich.console import Console

    from metalplane.lab.demo import Demo

    buf = io.StringIO()
    d = Demo(nodes=0, name="x", vms=True, console=Console(file=buf, width=300))
    d.spec = {"state_dir": "/run/metalplane/x", "nodes": [], "networks": [],
              "vms": [{"name": "vm-1", "console": "/run/metalplane/x/logs/vm-1-console.log"}],
              "unix_socket": "/s", "boot_server": {"unix_socket": "/b", "url": "http://b"},
              "agent_api_url": "http://a"}
    d._explain_keep()  # a VM has no namespace to enter: its serial console instead
    out = buf.getvalue()
    assert "tail -f /run/metalplane/x/logs/vm-1-console.log" in out
    assert "ip netns exec" not in out and "lab down --name x" in out


def test_a_vm_domain_has_its_nics_in_order_each_10g_full_duplex(tmp_path: Path) -> None:
    """Two NICs in the given order (the first boots), each a tap libvirt opens; QEMU's
    virtio-net is told a speed and full duplex, without which Linux's 802.3ad bonding keeps
    the port out of LACP."""
    import xml.etree.ElementTree as ET

    q = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    nics = [("52:54:00:00:00:01", "lab-v1"), ("52:54:00:00:00:11", "lab-v1n2")]
    xml = ET.fromstring(vm.domain_xml("lab-vm1", "u", nics, tmp_path / "d.qcow2",
                                      tmp_path / "c.log"))
    ifaces = xml.findall("./devices/interface")
    assert [(i.find("mac").get("address"), i.find("target").get("dev"))  # type: ignore[union-attr]
            for i in ifaces] == nics
    aliases = [i.find("alias").get("name") for i in ifaces]  # type: ignore[union-attr]
    assert aliases == ["ua-nic0", "ua-nic1"]
    overridden = {d.get("alias"): {p.get("name"): p.get("value")
                                   for p in d.iter(f"{q}property")}
                  for d in xml.iter(f"{q}device")}
    assert overridden == {a: {"speed": str(vm.NIC_SPEED_MBPS), "duplex": "full"}
                          for a in aliases}
