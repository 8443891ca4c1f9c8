"""The virtual rack and the demo flow, for real: Open vSwitch, namespaces, sushy-tools,
lldpd, dnsmasq, dhclient, the agent, a metalplane server. Each test uses its own lab name
and state root and removes the lab even when it fails."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from metalplane.lab import lab
from metalplane.lab.demo import Demo
from tests.helpers.peers import free_port
from tests.helpers.rack import need_root_and_ovs

pytestmark = pytest.mark.functional


@pytest.fixture
def lab_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    need_root_and_ovs()
    root = Path("/tmp") / f"mpl-{secrets.token_hex(3)}"  # short: unix socket paths
    monkeypatch.setenv("METALPLANE_LAB_ROOT", str(root))
    name = "t" + secrets.token_hex(3)
    try:
        yield name
    finally:
        lab.down(name, quiet=True)
        assert_nothing_left(name, root)
        root.rmdir() if root.exists() else None


def assert_nothing_left(name: str, root: Path) -> None:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert f"{name}-" not in netns and f"{name}-" not in links
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert str(root / name) not in cmd, f"left running: {cmd}"
    assert not (root / name).exists()


def test_up_status_and_down_even_after_a_crash(lab_name: str) -> None:
    spec = lab.up(lab_name, 2)
    with pytest.raises(lab.LabError, match="already up"):
        lab.up(lab_name, 1)
    # what lab status -o json says, as anyone can check it by hand
    out = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "lab", "status",
                          "--name", lab_name, "-o", "json"], capture_output=True, text=True,
                         timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    nodes = {n["name"]: n for n in status["nodes"]}
    assert set(nodes) == {"node-1", "node-2"}
    n1 = nodes["node-1"]
    assert n1["namespace"] == f"{lab_name}-node1" and n1["switch_port"] == f"{lab_name}-n1"
    assert n1["vlan"] == spec["switch"]["default_vlan"] == 1100
    assert n1["power_state"] == "Off" and n1["ip_addresses"] == []
    inside = subprocess.run(["ip", "netns", "exec", n1["namespace"], "cat",
                             "/sys/class/net/eth0/address"], capture_output=True, text=True)
    assert inside.stdout.strip() == n1["mac"]
    system = httpx.get(n1["bmc_address"].replace("redfish+http", "http"), timeout=10).json()
    assert system["PowerState"] == "Off"
    assert [e for e in status["server_settings"]["METALPLANE_DHCP_BINDINGS"].split(",")] == [
        f"provisioning={lab_name}-svc-prov:eth0", f"cleaning={lab_name}-svc-clean:eth0"]
    # the node hears its switch port over LLDP
    listen = ("import json; from metalplane.agent import lldp; "
              "print(json.dumps(lldp.listen(['eth0'], 15)))")
    heard = subprocess.run(["ip", "netns", "exec", n1["namespace"], sys.executable, "-c", listen],
                           capture_output=True, text=True, timeout=30)
    neighbour = json.loads(heard.stdout)["eth0"]
    assert neighbour["chassis_id"] == spec["switch"]["switch_id"]
    assert neighbour["port_id"] == n1["switch_port"]
    # the BMCs keep their own time: a node powered on boots 1-11 s later (the fake
    # driver's delay) although nobody reads its BMC in between (the lab's clock does);
    # from its blank disk (the boot device it has) it halts
    n2 = nodes["node-2"]
    r = httpx.post(n2["bmc_address"].replace("redfish+http", "http")
                   + "/Actions/ComputerSystem.Reset", json={"ResetType": "On"}, timeout=10)
    assert r.status_code == 204, r.text
    log = Path(spec["state_dir"]) / "logs" / "node-2.log"
    deadline = time.monotonic() + 20
    while "halted: no bootable disk" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "node-2 never booted: its power-on never applied"
        time.sleep(0.2)
    # a crash: the description is gone; down still finds everything by name and directory
    (Path(spec["state_dir"]) / "lab.json").unlink()
    removed = lab.down(lab_name)
    assert any("process" in r for r in removed)
    assert f"netns {lab_name}-node1" in removed


def test_status_of_a_lab_that_is_not_up(lab_name: str) -> None:
    out = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "lab", "status",
                          "--name", lab_name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "is not up" in out.stderr and "Traceback" not in out.stderr
    bad = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "lab", "up",
                          "--name", "Bad_Name"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "lab name" in bad.stderr


def run_demo(lab_name: str, **options: Any) -> tuple[Demo, str, str]:
    """Run the demo with 4 nodes; it, its output and its checks' names (all passed)."""
    buf = io.StringIO()
    demo = Demo(nodes=4, name=lab_name, port=free_port(), timeout=200,
                console=Console(file=buf, width=200, highlight=False), **options)
    code = demo.run()
    out = buf.getvalue()
    failed = [c for c in demo.checks if not c.ok]
    assert code == 0 and not failed, out[-6000:]
    return demo, out, " | ".join(c.what for c in demo.checks)


def test_demo_flow(lab_name: str) -> None:
    t0 = time.monotonic()
    demo, out, whats = run_demo(lab_name)
    # isolation proven both ways, wiring learnt from LLDP, cleaning on its own VLAN
    assert "node-1 reaches node-2" in whats and "node-1 does not reach node-3" in whats
    assert "LLDP wired it" in whats and "cleaned on the cleaning network" in whats
    assert "off its tenant VLAN after undeploy" in whats
    # each node's inventory (IPA's shape) has its own DMI identity and BMC
    assert "node-1: its inventory says Dell Inc. PowerEdge R640" in whats
    assert "node-2: its inventory says HPE ProLiant DL360 Gen10" in whats
    for phase in ("rack", "inspect", "clean", "deploy", "undeploy"):
        assert phase in dict(demo.phases)
    assert "BareMetalHosts" in out and "provisioned" in out
    if shutil.which("kubectl"):  # half the nodes spoke Kubernetes
        assert "kubectl: baremetalhost.metal3.io/node-3 created" in out
        assert "node-3: BareMetalHost provisioned for Machine workers-" in whats
        assert "MachineSet workers: 2 Machines running, one per host" in whats
        assert "node-4: off its tenant VLAN after undeploy" in whats  # scaled back to 0
        assert "machineset.cluster.x-k8s.io/workers" in out
    print(f"demo with 4 nodes: {time.monotonic() - t0:.0f}s")


def test_demo_flow_on_ovn(lab_name: str) -> None:
    """``metalplane demo --backend ovn``: OVN answers DHCP, routes with SNAT and a floating
    IP, and the security group holds; every check of the default demo holds too."""
    if shutil.which("ovn-northd") is None:
        pytest.skip("OVN is not installed: run scripts/setup.sh")
    _demo, _out, whats = run_demo(lab_name, backend="ovn")
    assert "node-1 reaches node-2" in whats and "node-1 does not reach node-3" in whats
    assert "no DHCP from dnsmasq" in whats and "OVN's DHCP answers on tenant-a" in whats
    assert "(SNAT)" in whats and "TCP is not allowed" in whats and "the ToR ACL" in whats
    assert not Path(f"/sys/class/net/{lab_name}-int").exists()  # the rack is gone
