"""``metalplane demo --discovery``: a server nobody enrolled, from power on to ``available``.

The rack has one undiscovered node (``lab up --undiscovered 1``): a Dell whose BMC is an
"iDRAC" at ``https://127.0.10.N`` (:mod:`metalplane.lab.idrac`); the server runs with
discovery on and trusts the lab's CA. The demo:

1. imports the seed's rules.json as is with ``metalplane inspection rule import``;
2. powers the node on through its iDRAC (Redfish ``ComputerSystem.Reset``); it PXE-boots on
   the provisioning (inspection) network, where dnsmasq answers MACs nobody enrolled with
   the discovery script; its agent finds no node, inspects and posts its inventory to
   ``/v1/continue_inspection``;
3. waits for the node metalplane enrolled (``auto_discovered``), made ``idrac`` by the
   seed's rule with ``drac_address`` from the inventory, and powered off through that
   iDRAC as an inspection ends;
4. names it, then manage (the iDRAC answers over verified TLS), inspect (LLDP wires its
   port), provide (cleaned on the cleaning VLAN) to ``available``, with checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metalplane.client.http import ApiError, Client
from metalplane.lab import idrac, lab

if TYPE_CHECKING:
    from metalplane.lab.demo import Demo

__all__ = ["SEED_RULES", "run"]

# The seed's rules.json (the issue's, tests/unit/fixtures/seed_rules.json), as is.
SEED_RULES: list[dict[str, Any]] = [{
    "description": "Set the vendor driver for Dell hardware",
    "conditions": [{"op": "eq", "field": "data://auto_discovered", "value": True},
                   {"op": "eq", "field": "data://inventory.system_vendor.manufacturer",
                    "value": "Dell Inc."}],
    "actions": [{"action": "set-attribute", "path": "driver", "value": "idrac"},
                {"action": "set-attribute", "path": "driver_info/drac_username",
                 "value": "root"},
                {"action": "set-attribute", "path": "driver_info/drac_password",
                 "value": "calvin"},
                {"action": "set-attribute", "path": "driver_info/drac_address",
                 "value": "{data[inventory][bmc_address]}"}]}]


def _import_rules(demo: Demo) -> None:
    path = Path(demo.spec["state_dir"]) / "rules.json"
    path.write_text(json.dumps(SEED_RULES, indent=2))
    r = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "--url",
                        f"http://127.0.0.1:{demo.port}", "inspection", "rule", "import",
                        str(path), "-o", "json"], capture_output=True, text=True, timeout=60)
    demo.check("the seed's rules.json imported as is (metalplane inspection rule import)",
               r.returncode == 0, r.stderr.strip()[-300:] or f"{len(json.loads(r.stdout))} rule")


def _wait_discovered(demo: Demo, c: Client, spec: dict[str, Any],
                     timeout: float = 150) -> dict[str, Any]:
    """The node enrolled for ``spec``'s MAC, once it rests powered off (the power off that
    ends its discovery). Prints what the machine does meanwhile. Raises DemoError."""
    from metalplane.lab.demo import DemoError

    deadline = time.monotonic() + timeout
    seen = ""
    node: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        st: dict[str, Any] = next(
            (n for n in lab.status(demo.name)["nodes"] if n["name"] == spec["name"]), {})
        now = f"{st.get('os')}: {st.get('detail')}"
        if now != seen:
            seen = now
            demo.say(f"{spec['name']} (the machine): {now}")
        ports = c.get("/v1/ports", address=spec["mac"])["ports"]
        if ports:
            node = c.get(f"/v1/nodes/{ports[0]['node_uuid']}")
            if node["power_state"] == "power off" and not node.get("reservation"):
                return node
        time.sleep(1)
    what = (f"enrolled as {node['uuid']} but not powered off ({node['power_state']}, "
            f"{node.get('last_error')})" if node else "not discovered")
    raise DemoError(f"{spec['name']} was {what} in {timeout:.0f}s", [spec["name"]])


def run(demo: Demo, c: Client) -> int:
    """The discovery variant (see the module's docstring); 0 if every check passed."""
    spec = demo.spec["undiscovered"][0]
    name, bmc, hw = spec["name"], spec["idrac"], spec["hardware"]
    with demo.phase("discover"):
        _import_rules(demo)
        idrac.power_on(bmc)
        demo.say(f"{name} powered on through its iDRAC {bmc['url']} (nobody enrolled it: "
                 f"MAC {spec['mac']})")
        node = _wait_discovered(demo, c, spec)
        uuid = node["uuid"]
        demo.uuids[name] = uuid
        demo.say(f"{name} discovered: node {uuid}, driver {node['driver']}, "
                 f"{node['provision_state']}, {node['power_state']}")
        inv = c.get(f"/v1/nodes/{uuid}/inventory")
        info = node["driver_info"]
        demo.check(f"{name}: enrolled by discovery (plugin data auto_discovered)",
                   inv["plugin_data"].get("auto_discovered") is True
                   and node["provision_state"] == "enroll",
                   f"{node['provision_state']}, auto_discovered "
                   f"{inv['plugin_data'].get('auto_discovered')}")
        demo.check(f"{name}: the seed's rule made it idrac", node["driver"] == "idrac",
                   node["driver"])
        demo.check(f"{name}: drac_address {info.get('drac_address')} is its inventory's "
                   f"bmc_address", info.get("drac_address") == inv["inventory"].get(
                       "bmc_address") == hw["bmc_address"], str(info.get("drac_address")))
        raw = json.dumps(c.get(f"/v1/nodes/{uuid}"))
        demo.check(f"{name}: drac_password is not returned by the API",
                   info.get("drac_password") == "******" and idrac.IDRAC_PASSWORD not in raw,
                   str(info.get("drac_password")))
        demo.check(f"{name}: powered off through its iDRAC after discovery",
                   idrac.read_power(bmc) == "Off", idrac.read_power(bmc))
        c.patch(f"/v1/nodes/{uuid}", [{"op": "add", "path": "/name", "value": name}])
    with demo.phase("enroll"):
        demo._provision(c, [name], "manage", "manageable")
    with demo.phase("inspect"):
        demo._provision(c, [name], "inspect", "manageable")
        ports = c.get("/v1/ports", node=name, detail=True)["ports"]
        llc = next((p.get("local_link_connection") or {} for p in ports
                    if p["address"] == spec["mac"]), {})
        sw = demo.spec["switch"]
        demo.check(f"{name}: LLDP wired it to {sw['name']} port {spec['switch_port']}",
                   llc.get("switch_id") == sw["switch_id"]
                   and llc.get("port_id") == spec["switch_port"], str(llc or "no LLDP"))
    with demo.phase("clean"):
        demo._provision(c, [name], "provide", "available")
        cleaning = next(n for n in demo.spec["networks"] if n["name"] == "cleaning")
        prefix = cleaning["cidr"].rsplit(".", 1)[0] + "."
        got = [a for a in demo._lease_addresses(name) if a.startswith(prefix)]
        demo.check(f"{name} was cleaned on the cleaning network (VLAN {cleaning['vlan']})",
                   bool(got), f"DHCP gave {got[-1]}" if got else "no cleaning address")
    try:
        final = c.get(f"/v1/nodes/{name}")
    except ApiError as exc:
        final = {"provision_state": f"unreadable: {exc}", "driver": "?"}
    demo.check(f"{name}: discovered, idrac, and available",
               final["provision_state"] == "available" and final["driver"] == "idrac",
               f"{final['provision_state']}, {final['driver']}")
    demo._report(c)
    return 0 if all(ch.ok for ch in demo.checks) else 1
