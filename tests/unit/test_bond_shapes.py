"""A portgroup's shapes, with small doubles: on the switch (a LAG only for the bonding modes
that need one, the Linux bonding HOWTO's "Switch Configuration"), on the provider networks
(one network port per PXE-enabled port, never a bond, as Ironic's add_ports_to_network)
and in the config drive (the bond carries the portgroup's properties)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import NotFound
from metalplane.db.models import NetworkPort, Port, Portgroup, Switch
from metalplane.lifecycle.networking import (
    TENANT_KEY,
    NeutronNetwork,
    NodeNetworking,
    bond_properties,
)
from metalplane.network.mech import OVSSwitchDriver, PortContext
from metalplane.network.ovs import BOND_MODES, PortConfig, needs_lag
from metalplane.network.tor_acl import TorAcl

SWITCH = Switch(id="sw-uuid", switch_id="aa:bb", name="tor", address="unix:x", bridge="tor")


class _Switches:
    """What mech's driver asks of the switch manager; ``recorded``: the switch ports
    metalplane last set, by name (a bond with ``bond_members``)."""

    parking_vlan = 4000

    def __init__(self, recorded: dict[str, list[str]] | None = None) -> None:
        self.recorded = recorded or {}

    def wanted(self, sw: Switch, name: str) -> Any:
        members = self.recorded.get(name)
        return None if members is None else SimpleNamespace(bond_members=members)

    def by_switch_id(self, sid: str) -> Switch | None:
        return SWITCH if sid == "aa:bb" else None

    def list_switches(self) -> list[Switch]:
        return [SWITCH]


def _group_ctx(mode: str | None, name: str = "bond0") -> PortContext:
    profile = {"local_link_information": [{"switch_id": "aa:bb", "port_id": "p1"},
                                          {"switch_id": "aa:bb", "port_id": "p2"}],
               "local_group_information": {"id": "pg-1", "name": name, "bond_mode": mode,
                                           "bond_properties": {}}}
    return PortContext(port_id="np-1", vnic_type="baremetal", host_id="node-1",
                       profile=profile, network=SimpleNamespace(name="t", id="t"),  # type: ignore[arg-type]
                       segment=SimpleNamespace(network_type="vlan",  # type: ignore[arg-type]
                                               segmentation_id=101))


LAG = {"802.3ad": ("balance-tcp", "active"), "4": ("balance-tcp", "active"),
       "balance-rr": ("balance-slb", "off"), "0": ("balance-slb", "off"),
       "balance-xor": ("balance-slb", "off"), "2": ("balance-slb", "off"),
       "broadcast": ("balance-slb", "off"), "3": ("balance-slb", "off")}
INDEPENDENT = ["active-backup", "1", "balance-tlb", "5", "balance-alb", "6", None]


@pytest.mark.parametrize("mode", sorted(LAG))
def test_a_mode_that_needs_a_lag_is_a_bond_on_the_switch(mode: str) -> None:
    driver = OVSSwitchDriver(_Switches())  # type: ignore[arg-type]
    binding = driver.bind_port(_group_ctx(mode))
    assert binding is not None
    assert needs_lag(mode) and BOND_MODES[mode] == LAG[mode]
    assert binding.changes == {"sw-uuid": (SWITCH, [PortConfig("bond0", 101, ("p1", "p2"),
                                                               mode)])}
    # parking dissolves it once made: each member alone on the parking VLAN
    driver = OVSSwitchDriver(_Switches({"bond0": ["p1", "p2"]}))  # type: ignore[arg-type]
    parked = driver.unbind_port(_group_ctx(mode))
    assert parked.changes["sw-uuid"][1] == [PortConfig("p1", 4000, unbond="bond0"),
                                            PortConfig("p2", 4000, unbond="bond0")]


@pytest.mark.parametrize("mode", INDEPENDENT)
def test_a_mode_without_a_lag_is_independent_access_ports(mode: str | None) -> None:
    """active-backup, balance-tlb, balance-alb (and no mode: Ironic's default is
    active-backup) need no switch configuration: each member an access port on the VLAN,
    a bond an earlier mode left dissolved."""
    assert not needs_lag(mode) and str(mode) not in BOND_MODES
    driver = OVSSwitchDriver(_Switches())  # type: ignore[arg-type]
    binding = driver.bind_port(_group_ctx(mode))
    assert binding is not None
    assert binding.changes["sw-uuid"][1] == [PortConfig("p1", 101), PortConfig("p2", 101)]
    # the bond an earlier mode made of these ports is dissolved
    driver = OVSSwitchDriver(_Switches({"bond0": ["p1", "p2"]}))  # type: ignore[arg-type]
    binding = driver.bind_port(_group_ctx(mode))
    assert binding is not None
    assert binding.changes["sw-uuid"][1] == [PortConfig("p1", 101, unbond="bond0"),
                                             PortConfig("p2", 101, unbond="bond0")]
    # ... but not another node's bond that happens to have the name
    driver = OVSSwitchDriver(_Switches({"bond0": ["q1", "q2"]}))  # type: ignore[arg-type]
    binding = driver.bind_port(_group_ctx(mode))
    assert binding is not None
    assert binding.changes["sw-uuid"][1] == [PortConfig("p1", 101), PortConfig("p2", 101)]


# ---------------------------------------------------------------- provider networks
class _Plugin:
    """Creates network ports in memory; records the binds."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.bound: list[str] = []
        self.deleted: list[str] = []
        self.ports: dict[str, SimpleNamespace] = {}
        self.switches = _Switches()

    def get_network(self, name: str) -> Any:
        return SimpleNamespace(id=f"net-{name}", name=name, project_id=None)

    def list_subnets(self, _filters: dict[str, Any]) -> list[Any]:
        return []

    def create_port(self, body: dict[str, Any]) -> Any:
        self.created.append(body)
        port = SimpleNamespace(id=f"np-{len(self.created)}", mac_address=body["mac_address"],
                               network_id=body["network_id"], binding_vif_type="unbound",
                               extra_dhcp_opts=[])
        self.ports[port.id] = port
        return port

    def set_binding_host(self, ident: str, _host: str) -> Any:
        return self.ports[ident]

    def bind_many(self, ports: list[Any]) -> None:
        self.bound += [p.id for p in ports]
        for p in ports:
            p.binding_vif_type = "other"

    def get_port(self, ident: str) -> Any:
        if ident not in self.ports:
            raise NotFound(f"port {ident} not found")
        return self.ports[ident]

    def fixed_ips(self, _ident: str) -> list[dict[str, str]]:
        return []

    def unbind_many(self, ports: list[Any]) -> None:
        for p in ports:
            p.binding_vif_type = "unbound"

    def delete_port(self, ident: str) -> None:
        self.deleted.append(ident)
        self.ports.pop(ident, None)


def _wiring() -> tuple[list[Port], list[Portgroup]]:
    pg = Portgroup(id=1, uuid="pg-1", name="bond0", address="52:54:00:00:00:01", node_id=1,
                   mode="802.3ad", properties={"miimon": "100", "bond_lacp_rate": "fast"},
                   standalone_ports_supported=True, internal_info={})
    ports = [Port(id=i, uuid=f"port-{i}", address=f"52:54:00:00:00:0{i}", node_id=1,
                  portgroup_id=1 if i < 3 else None, pxe_enabled=i != 2,
                  local_link_connection={"switch_id": "aa:bb", "port_id": f"p{i}"},
                  internal_info={}) for i in (1, 2, 3)]
    return ports, [pg]


def _neutron(tmp_path: Any, plugin: _Plugin,
             objects: tuple[list[Port], list[Portgroup]]) -> NeutronNetwork:
    settings = Settings(data_dir=tmp_path, provisioning_network="prov",
                        cleaning_network="clean", inspection_network="insp")
    iface = NeutronNetwork(settings, plugin, None,  # type: ignore[arg-type]
                           NodeNetworking(settings, plugin, None).dhcp)  # type: ignore[arg-type]
    iface._objects = lambda _node: objects  # type: ignore[method-assign]
    iface._save_internal = lambda obj, info: setattr(  # type: ignore[method-assign]
        obj, "internal_info", info)
    return iface


def _task() -> Any:
    node = SimpleNamespace(id=1, uuid="node-1", name="n1")
    return SimpleNamespace(node=node, driver=SimpleNamespace(
        boot=SimpleNamespace(dhcp_options=lambda _t: [])))


def test_a_provider_network_gets_one_port_per_pxe_port_never_a_bond(tmp_path: Any) -> None:
    """Ironic's add_ports_to_network: one network port per PXE-enabled port (portgroup
    members included), its binding:profile that port's local_link_information only,
    recorded on the port."""
    objects = _wiring()
    ports, (pg,) = objects
    plugin = _Plugin()
    iface = _neutron(tmp_path, plugin, objects)
    iface.add_network(_task(), "cleaning")
    assert [(b["mac_address"], b["binding:profile"]) for b in plugin.created] == [
        ("52:54:00:00:00:01", {"local_link_information": [
            {"switch_id": "aa:bb", "port_id": "p1"}]}),
        ("52:54:00:00:00:03", {"local_link_information": [
            {"switch_id": "aa:bb", "port_id": "p3"}]})]
    assert plugin.bound == ["np-1", "np-2"]
    assert ports[0].internal_info == {"cleaning_vif_port_id": "np-1"}
    assert ports[1].internal_info == {}  # not PXE-enabled
    assert ports[2].internal_info == {"cleaning_vif_port_id": "np-2"}
    assert pg.internal_info == {}
    # the ramdisk's network_data: a phy link per port
    data = iface._provider_network_data(_task().node)
    assert [(link["id"], link["type"]) for link in data["links"]] == [
        ("port-port-1", "phy"), ("port-port-3", "phy")]
    iface.remove_network(_task(), "cleaning")
    assert sorted(plugin.deleted) == ["np-1", "np-2"]
    assert all(not p.internal_info for p in ports)


def test_removal_finds_a_key_an_older_version_put_on_the_portgroup(tmp_path: Any) -> None:
    """An upgrade with a node mid-cleaning: its cleaning port was recorded on the
    portgroup; taking the node off the network still finds and deletes it."""
    objects = _wiring()
    ports, (pg,) = objects
    plugin = _Plugin()
    old = plugin.create_port({"mac_address": pg.address, "network_id": "net-clean"})
    pg.internal_info = {"cleaning_vif_port_id": old.id, TENANT_KEY: "vif-9"}
    ports[2].internal_info = {"cleaning_vif_port_id": "gone"}  # deleted behind our back
    iface = _neutron(tmp_path, plugin, objects)
    iface.remove_all_provider_networks(_task())
    assert plugin.deleted == [old.id]
    assert pg.internal_info == {TENANT_KEY: "vif-9"}  # the tenant VIF stays
    assert ports[2].internal_info == {}


def test_a_port_joining_a_portgroup_keeps_its_provider_network_port(tmp_path: Any) -> None:
    """Only a VIF moves to the portgroup (the bond); a provider-network port stays the
    port's."""
    ports, (pg,) = _wiring()
    ports[2].internal_info = {"cleaning_vif_port_id": "np-c", TENANT_KEY: "vif-1"}
    plugin = _Plugin()
    iface = _neutron(tmp_path, plugin, (ports, [pg]))
    moved: list[Any] = []
    iface._apply_wiring = lambda _t, _o, moves: moved.extend(moves)  # type: ignore[method-assign]
    iface.port_changed(_task(), 3, {"portgroup_id": 1})
    assert [(src.uuid, dst.uuid, keys) for src, dst, keys in moved] == [
        ("port-3", "pg-1", {TENANT_KEY: "vif-1"})]


def test_a_deploy_refuses_a_bond_member_without_wiring_before_the_image_is_written(
        tmp_path: Any) -> None:
    """The provisioning network needs the PXE port's wiring only, but the deploy ends with
    the tenant VIF bound on the whole portgroup: its unwired member is refused up front.
    Cleaning alone (no tenant network after it) does not need it."""
    from metalplane.common.exceptions import Invalid

    ports, (pg,) = _wiring()
    ports[1].local_link_connection = {}  # the bond's second member, not PXE-enabled
    iface = _neutron(tmp_path, _Plugin(), (ports, [pg]))
    iface.plugin.get_network = lambda name: SimpleNamespace(id=name)  # type: ignore[method-assign]
    iface.validate(_task(), ("cleaning",))
    iface.validate(_task(), ("provisioning", "cleaning"))  # no tenant VIF yet
    pg.internal_info = {TENANT_KEY: "vif-1"}
    with pytest.raises(Invalid, match=r"port 52:54:00:00:00:02 .* no local_link_connection"):
        iface.validate(_task(), ("provisioning", "cleaning"))
    with pytest.raises(Invalid, match="52:54:00:00:00:02"):
        iface.validate(_task())
    iface.validate(_task(), ("cleaning",))


# ---------------------------------------------------------------- bond properties
def test_bond_properties_are_prefixed_as_ironic_does(tmp_path: Any) -> None:
    """Ironic's get_local_group_information: ``bond_`` unless the key starts with
    ``bond``."""
    assert bond_properties({"miimon": 100, "bond_lacp_rate": "fast", "bondx": 1}) == {
        "bond_miimon": 100, "bond_lacp_rate": "fast", "bondx": 1}
    assert bond_properties(None) == {}
    ports, (pg,) = _wiring()
    profile = _neutron(tmp_path, _Plugin(), (ports, [pg]))._profile(pg, ports[:2])
    assert profile["local_group_information"] == {
        "id": "pg-1", "name": "bond0", "bond_mode": "802.3ad",
        "bond_properties": {"bond_miimon": "100", "bond_lacp_rate": "fast"}}


def test_the_config_drive_bond_carries_the_portgroup_properties(tmp_path: Any) -> None:
    """network_data.json's bond link has each property as ``bond_<key>`` (what
    cloud-init's convert_net_json turns into bond parameters); bond_mode and bond_links
    stay metalplane's."""
    ports, (pg,) = _wiring()
    pg.properties = {"miimon": 100, "xmit_hash_policy": "layer3+4", "mode": "balance-rr",
                     "bond_links": ["x"]}
    iface = _neutron(tmp_path, _Plugin(), (ports, [pg]))
    vif = SimpleNamespace(id="vif-1", network_id="net-t")
    iface._tenant_ports = lambda _n: [(pg, ports[:2], vif)]  # type: ignore[method-assign]
    links = iface.config_drive(_task().node, None)["network_data"]["links"]  # type: ignore[arg-type]
    bond = next(link for link in links if link["type"] == "bond")
    assert bond == {"id": "bond0", "type": "bond", "ethernet_mac_address": pg.address,
                    "bond_links": ["link0-0", "link0-1"], "bond_mode": "802.3ad",
                    "mtu": 1500, "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4"}


# ---------------------------------------------------------------- ToR ACLs
def test_tor_acls_follow_a_dissolved_bond_to_its_members() -> None:
    """Binding an independent-ports portgroup that dissolves a bond: after the VLAN change
    the members' ACLs are set again (their interfaces were re-created: new ofports) and the
    dissolved bond's flows are removed."""
    switches = SimpleNamespace(drift_checks=[])
    acl = TorAcl(None, switches)  # type: ignore[arg-type]
    applied: list[list[tuple[Any, Any]]] = []
    acl._apply = lambda entries: applied.append(list(entries))  # type: ignore[method-assign]
    driver = OVSSwitchDriver(_Switches({"bond0": ["p1", "p2"]}))  # type: ignore[arg-type]
    port = NetworkPort(id="np-1", security_groups=["sg"])
    binding = driver.bind_port(_group_ctx("active-backup"))
    with acl.binding([(port, binding)]):  # type: ignore[list-item]
        assert [[(p and p.id, pl.port_name) for p, pl in e] for e in applied] == [
            [("np-1", "p1"), ("np-1", "p2")]]
    assert [(p and p.id, pl.port_name, pl.members) for p, pl in applied[1]] == [
        ("np-1", "p1", ()), ("np-1", "p2", ()), (None, "bond0", ())]
    # a plain port's binding changes no interface: its ACL is set once
    applied.clear()
    plain = driver.bind_port(PortContext(
        port_id="np-2", vnic_type="baremetal", host_id="n", network=None,  # type: ignore[arg-type]
        profile={"local_link_information": [{"switch_id": "aa:bb", "port_id": "p3"}]},
        segment=SimpleNamespace(network_type="vlan", segmentation_id=101)))  # type: ignore[arg-type]
    with acl.binding([(port, plain)]):  # type: ignore[list-item]
        pass
    assert len(applied) == 1
