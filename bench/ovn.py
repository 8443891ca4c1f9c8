"""OVN: binding bare-metal ports in metalplane's batched way against one ovn-nbctl per port,
and the time from a port joining to OVN's first DHCP answer.

A private OVN (NB/SB ovsdb-servers, ovn-northd) and a gateway chassis (ovn-controller on a
private Open vSwitch, userspace datapath, ``physnet1`` trunked to a ToR bridge) run from a
temporary directory. In the same run:

1. ``--ports`` bare-metal ports (500) of a VLAN provider network, each with PXE
   ``extra_dhcp_opts`` (so each has its own DHCP_Options row):
   - metalplane: the OVN mechanism driver's ``bind_ports`` (each LSP becomes ``external``
     on the HA chassis group, with its DHCP options) and ``unbind_ports``, as
     ``NetworkPlugin.bind_many`` calls them: one NB transaction for all;
   - the peer: one ``ovn-nbctl`` call per port doing the same rows (create its
     DHCP_Options, set type, ``ha_chassis_group`` and ``dhcpv4_options``), then one per
     port undoing them.
2. With ``--lsps`` (10,000) more LSPs in the NB database (100 a network, on networks this
   chassis does not serve, as a cloud's ports spread over its tenants): for ``--samples`` joins, a
   namespace on the ToR whose switch port is parked sends DHCPDISCOVERs every 5 ms (a raw
   socket; a real dhclient waits seconds between retries, which would measure its backoff);
   the join is ``NetworkPlugin.bind_many`` of its port (ToR VLAN + NB transaction); the time
   from the join's start to the first DHCPOFFER is measured. The peer's join: the ToR's VLAN
   by ``ovs-vsctl`` and the NB rows by one ``ovn-nbctl`` call.

Prints the machine, versions, parameters and both sets of figures; writes
``bench/results/ovn.json`` with ``ratio`` = the peer's bind+unbind time / metalplane's.
Needs root. Run: ``sudo .venv/bin/python bench/ovn.py [--ports 500] [--lsps 10000]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, header, machine, ms_summary, write_result
from metalplane import __version__
from metalplane.common.config import Settings
from metalplane.db.engine import Database
from metalplane.lab.ovn import Central, Chassis, patch
from metalplane.lab.rack import Switch, add_nic, netns_exec, run
from metalplane.network.ovn import ChangeSet, LogicalSwitch, LogicalSwitchPort
from metalplane.network.ovn_mech import OVNMechanismDriver
from metalplane.network.plugin import NetworkPlugin

PROBE = Path(__file__).with_name("_dhcp_probe.py")
NS = "mpbo-node"
PXE = [{"opt_name": "tag:ipxe,bootfile-name", "opt_value": "http://10.80.0.1:8080/n.ipxe"},
       {"opt_name": "tag:!ipxe,bootfile-name", "opt_value": "undionly.kpxe"},
       {"opt_name": "tftp-server", "opt_value": "10.80.0.1"}]


def mac_of(i: int) -> str:
    return f"02:b0:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


def nbctl(central: Central, *args: str) -> str:
    return run("ovn-nbctl", f"--db={central.nb}", "--timeout=30", *args, timeout=60)


def peer_bind(central: Central, port_id: str, group: str, subnet: str) -> None:
    """What binding one port is, in one ovn-nbctl call (ovn-nbctl(8) database commands)."""
    opts = ('options={server_id="10.80.0.1", server_mac="fa:16:3e:00:00:01", '
            'lease_time="43200", router="10.80.0.1", bootfile_name="\\"undionly.kpxe\\"", '
            'tftp_server="\\"10.80.0.1\\""}')
    nbctl(central, "--", "--id=@d", "create", "DHCP_Options", "cidr=10.80.0.0/16", opts,
          f"external_ids:subnet_id={subnet}", f"external_ids:port_id={port_id}",
          "--", "set", "Logical_Switch_Port", port_id, "type=external",
          f"ha_chassis_group={group}", "dhcpv4_options=@d")


def peer_unbind(central: Central, port_id: str) -> None:
    dhcp = nbctl(central, "--bare", "--columns=dhcpv4_options", "list", "Logical_Switch_Port",
                 port_id)
    nbctl(central, "--", "set", "Logical_Switch_Port", port_id, 'type=""',
          "--", "clear", "Logical_Switch_Port", port_id, "ha_chassis_group",
          "--", "clear", "Logical_Switch_Port", port_id, "dhcpv4_options",
          *(["--", "destroy", "DHCP_Options", dhcp] if dhcp else []))


def join_to_offer(mac: str, join: Any, timeout: float = 10.0,
                  calls: list[float] | None = None) -> float:
    """Start the prober, run ``join()``; seconds from the join's start to the first OFFER.
    ``calls`` gets how long ``join()`` itself took (its return: the NB commit)."""
    probe = subprocess.Popen(netns_exec(NS, sys.executable, str(PROBE), "eth0", mac,
                                        str(timeout)), stdout=subprocess.PIPE, text=True)
    time.sleep(0.05)  # the prober's socket is open and its DISCOVERs go out
    t0 = time.time()
    join()
    if calls is not None:
        calls.append(time.time() - t0)
    out, _ = probe.communicate(timeout=timeout + 10)
    if probe.returncode != 0:
        raise RuntimeError(f"no DHCPOFFER for {mac} within {timeout} s")
    return float(out.strip()) - t0


def settle(central: Central) -> None:
    """Wait until the chassis applied every NB change so far (ovn-nbctl(8) ``--wait=hv
    sync``): a join starts from a quiet OVN, not from the flows of the previous sample."""
    run("ovn-nbctl", f"--db={central.nb}", "--wait=hv", "--timeout=120", "sync", timeout=150)
    time.sleep(0.2)



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ports", type=int, default=500)
    p.add_argument("--lsps", type=int, default=10000)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--parallel-northd", action="store_true",
                   help="Set NB_Global options:use_parallel_build=true (northd threads).")
    p.add_argument("--join-timeout", type=float, default=30.0,
                   help="Seconds a join waits for its first DHCP answer.")
    p.add_argument("--out", type=Path, default=RESULTS / "ovn.json")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/ovn.py needs root (it runs a private OVN and Open vSwitch)")
    work = Path(tempfile.mkdtemp(prefix="mpbo-"))
    central = Central(work / "ovn")
    sw = Switch(rundir=work / "ovs", bridge="mpbo-tor")
    gw = Chassis(sw, "mpbo-gw", central, integration_bridge="mpbo-int",
                 bridge_mappings={"physnet1": "mpbo-ex"}, gateway=True)
    result: dict[str, Any] = {
        "script": "bench/ovn.py", "machine": machine(),
        "versions": {"metalplane": __version__,
                     "ovn": run("ovn-northd", "--version").splitlines()[0],
                     "openvswitch": run("ovs-vsctl", "--version").splitlines()[0]},
        "parameters": {"ports": args.ports, "lsps": args.lsps, "samples": args.samples,
                       "datapath": "netdev", "parallel_northd": args.parallel_northd}}
    header(result)
    try:
        central.start()
        sw.start()
        gw.start()
        patch(sw, sw.bridge, "mpbo-ex")
        if args.parallel_northd:
            nbctl(central, "set", "NB_Global", ".", "options:use_parallel_build=true")
        run("ip", "netns", "add", NS)
        mac = add_nic(sw, NS, "eth0", "mpbo-n0", 4094)
        settings = Settings(data_dir=work / "data", parking_vlan=4094,
                            network_backend="ovn", ovn_nb_connection=central.nb,
                            ovn_gateway_chassis=gw.name, tor_acl=False,
                            network_vlan_ranges="physnet1:1000:1999")
        db = Database(settings.effective_database_url)
        db.upgrade()
        plugin = NetworkPlugin(settings, db)
        ovn = next(d for d in plugin.mechanism_drivers if isinstance(d, OVNMechanismDriver))
        plugin.switches.create({"name": "mpbo-tor", "switch_id": "02:00:00:00:b0:01",
                                "driver": "ovs", "address": sw.address, "bridge": sw.bridge,
                                "physical_networks": ["physnet1"]})
        net = plugin.create_network({"name": "prov", "provider:network_type": "vlan",
                                     "provider:physical_network": "physnet1",
                                     "provider:segmentation_id": 1100})
        sub = plugin.create_subnet({"network_id": net.id, "cidr": "10.80.0.0/16",
                                    "gateway_ip": "10.80.0.1"})
        print(f"creating {args.ports} ports ...", flush=True)
        ports = [plugin.create_port({
            "network_id": net.id, "mac_address": mac_of(i), "binding:vnic_type": "baremetal",
            "binding:host_id": "", "extra_dhcp_opts": PXE}) for i in range(args.ports)]
        ovn.bind_ports(ports[:1])  # the connection and the HA group exist, as in a server
        ovn.unbind_ports(ports[:1])

        # 1. bind + unbind: metalplane's one transaction against ovn-nbctl per port
        txns = ovn.nb.transactions
        t0 = time.perf_counter()
        ovn.bind_ports(ports)
        bind_s = time.perf_counter() - t0
        bind_txns = ovn.nb.transactions - txns
        external = [r for r in ovn.nb.rows("Logical_Switch_Port") if r.type == "external"]
        assert len(external) == args.ports, "bind did not reach the NB database"
        txns = ovn.nb.transactions
        t0 = time.perf_counter()
        ovn.unbind_ports(ports)
        unbind_s = time.perf_counter() - t0
        unbind_txns = ovn.nb.transactions - txns
        assert not [r for r in ovn.nb.rows("Logical_Switch_Port") if r.type == "external"]
        group = nbctl(central, "--bare", "--columns=_uuid", "find", "HA_Chassis_Group",
                      "name=default_ha_chassis_group")
        print(f"metalplane bind_ports:   {bind_s:8.3f} s for {args.ports} ports", flush=True)
        print(f"metalplane unbind_ports: {unbind_s:8.3f} s", flush=True)
        t0 = time.perf_counter()
        for port in ports:
            peer_bind(central, port.id, group, sub.id)
        peer_bind_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for port in ports:
            peer_unbind(central, port.id)
        peer_unbind_s = time.perf_counter() - t0
        print(f"ovn-nbctl per port:      {peer_bind_s:8.3f} s bind, {peer_unbind_s:.3f} s "
              "unbind", flush=True)
        ratio = round((peer_bind_s + peer_unbind_s) / (bind_s + unbind_s), 1)
        print(f"ratio (per-call / metalplane, bind + unbind): {ratio}x", flush=True)

        # 2. join to first DHCP answer, with --lsps more LSPs in the NB database
        print(f"adding {args.lsps} LSPs to the NB database ...", flush=True)
        # 100 LSPs a network, as a cloud's ports spread over its tenants' networks
        switches = [LogicalSwitch(f"filler-net-{j}", {}) for j in range((args.lsps + 99) // 100)]
        filler = [LogicalSwitchPort(name=f"filler-{i}", switch=f"filler-net-{i // 100}",
                                    addresses=[f"{mac_of(100000 + i)} 10.81.{i >> 8 & 255}."
                                               f"{i & 255}"]) for i in range(args.lsps)]
        for k in range(0, len(filler), 2000):
            ovn.apply(ChangeSet(switches=switches if k == 0 else [],
                                ports=filler[k:k + 2000]))
        settle(central)
        node = plugin.create_port({
            "network_id": net.id, "mac_address": mac, "binding:vnic_type": "baremetal",
            "binding:profile": {"local_link_information": [
                {"switch_id": "02:00:00:00:b0:01", "port_id": "mpbo-n0",
                 "switch_info": "mpbo-tor"}]}, "extra_dhcp_opts": PXE})
        ours: list[float] = []
        our_calls: list[float] = []
        for _ in range(args.samples):
            node = plugin.set_binding_host(node.id, "node-0")
            ours.append(join_to_offer(mac, lambda n=node: plugin.bind_many([n]),
                                      args.join_timeout, our_calls))
            plugin.unbind_many([plugin.get_port(node.id)])
            settle(central)
        theirs: list[float] = []
        their_calls: list[float] = []
        for _ in range(args.samples):
            def peer_join() -> None:
                sw.vsctl("set", "port", "mpbo-n0", "tag=1100")
                peer_bind(central, node.id, group, sub.id)
            theirs.append(join_to_offer(mac, peer_join, args.join_timeout, their_calls))
            peer_unbind(central, node.id)
            sw.vsctl("set", "port", "mpbo-n0", "tag=4094")
            settle(central)
        print(f"join to first DHCP answer with {args.lsps} more LSPs: metalplane "
              f"{ms_summary(ours)}, per-call {ms_summary(theirs)}", flush=True)
        print(f"  of which the join call itself: metalplane {ms_summary(our_calls)}, per-call "
              f"{ms_summary(their_calls)}; the rest is OVN (northd, ovn-controller)", flush=True)
        result["results"] = {
            "bind_unbind": {"metalplane_bind_s": round(bind_s, 4),
                            "metalplane_unbind_s": round(unbind_s, 4),
                            "per_call_bind_s": round(peer_bind_s, 3),
                            "per_call_unbind_s": round(peer_unbind_s, 3),
                            "metalplane_nb_transactions": bind_txns + unbind_txns},
            "join_to_dhcp_answer": {"metalplane": ms_summary(ours), "per_call": ms_summary(theirs),
                                    "metalplane_join_call": ms_summary(our_calls),
                                    "per_call_join_call": ms_summary(their_calls)}}
        result["ratio"] = ratio
        write_result(args.out, result)
    finally:
        gw.stop()
        central.stop()
        sw.stop()
        run("ip", "netns", "del", NS, check=False)
        run("ip", "link", "del", "mpbo-n0", check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
