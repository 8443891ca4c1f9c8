"""The network interfaces (noop, flat, neutron) and the one door the conductor uses, with
small doubles: a plugin that records every call, ports held in memory, no database."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from metalplane.common.config import Settings
from metalplane.db.models import Port
from metalplane.drivers import base as drivers_base
from metalplane.lifecycle import states
from metalplane.lifecycle.networking import (
    NETWORK_INTERFACES,
    PROVIDER_KINDS,
    PROVIDER_NETWORK,
    TENANT_KEY,
    FlatNetwork,
    NetworkInterface,
    NeutronNetwork,
    NodeNetworking,
    NoopNetwork,
)


class RecordingPlugin:
    """A network plugin that records the name of every call; ports are looked up in
    ``ports`` and returned as they are."""

    def __init__(self, ports: dict[str, Any] | None = None) -> None:
        self.calls: list[str] = []
        self.ports = ports or {}

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **_kwargs: Any) -> Any:
            self.calls.append(name)
            if name in ("get_port", "update_port", "set_binding_host"):
                return self.ports[args[0]]
            return None
        return call


class NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used ({name})")


def _settings(tmp_path: Any, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, provisioning_network="prov", cleaning_network="clean",
                    inspection_network="insp", **kw)


def _node(**kw: Any) -> SimpleNamespace:
    fields = {"id": 1, "uuid": "node-1", "name": "n1", "network_interface": None,
              "provision_state": states.DEPLOYING, "power_state": drivers_base.POWER_ON,
              "target_power_state": None, "owner": None, "lessee": None}
    return SimpleNamespace(**{**fields, **kw})


def _task(node: SimpleNamespace, log: list[str] | None = None) -> SimpleNamespace:
    log = log if log is not None else []

    def set_power_state(_task: Any, state: str) -> None:
        log.append(state)

    def save(**fields: Any) -> None:
        vars(node).update(fields)

    power = SimpleNamespace(set_power_state=set_power_state)
    boot = SimpleNamespace(dhcp_options=lambda _t: [])
    return SimpleNamespace(node=node, driver=SimpleNamespace(power=power, boot=boot),
                           save=save, stage=save)


def _iface(cls: type[NetworkInterface], tmp_path: Any, plugin: RecordingPlugin,
           ports: list[Port] | None = None) -> NetworkInterface:
    settings = _settings(tmp_path)
    iface = cls(settings, plugin, NoDatabase(), NodeNetworking(  # type: ignore[arg-type]
        settings, plugin, NoDatabase()).dhcp)  # type: ignore[arg-type]
    if ports is not None:  # the node's ports, in memory
        iface._objects = lambda _node: (ports, [])  # type: ignore[method-assign]
        iface._save_internal = lambda obj, info: setattr(  # type: ignore[method-assign]
            obj, "internal_info", info)
    return iface


def _vif_port() -> Port:
    return Port(id=7, uuid="port-7", address="52:54:00:00:00:07", node_id=1,
                portgroup_id=None, pxe_enabled=True,
                local_link_connection={"switch_id": "aa:bb", "port_id": "p7"},
                internal_info={TENANT_KEY: "vif-1"})


def _vif() -> SimpleNamespace:
    return SimpleNamespace(id="vif-1", binding_vif_type="unbound", binding_vif_details={})


def test_noop_touches_nothing(tmp_path: Any) -> None:
    plugin = RecordingPlugin()
    iface = _iface(NoopNetwork, tmp_path, plugin)
    task = _task(_node())
    iface.validate(task, ("provisioning", "cleaning"))  # type: ignore[arg-type]
    for kind in PROVIDER_KINDS:
        iface.add_network(task, kind)  # type: ignore[arg-type]
    iface.configure_tenant(task)  # type: ignore[arg-type]
    iface.port_changed(task, 7, {"address": "52:54:00:00:00:08"})  # type: ignore[arg-type]
    iface.portgroup_changed(task, 1, {"mode": "802.3ad"})  # type: ignore[arg-type]
    iface.port_deleted(task, 7)  # type: ignore[arg-type]
    iface.portgroup_deleted(task, 1)  # type: ignore[arg-type]
    assert plugin.calls == []


def test_flat_binds_the_tenant_vifs_without_a_switch(tmp_path: Any) -> None:
    plugin = RecordingPlugin({"vif-1": _vif()})
    iface = _iface(FlatNetwork, tmp_path, plugin, [_vif_port()])
    task = _task(_node())
    iface.validate(task, ("provisioning", "cleaning"))  # type: ignore[arg-type]
    iface.add_network(task, "provisioning")  # type: ignore[arg-type]
    assert plugin.calls == []  # one flat network: no provider-network port, no switch
    iface.configure_tenant(task)  # type: ignore[arg-type]
    assert plugin.calls == ["get_port", "set_mac_address", "update_port",
                            "mark_bound_without_switch"]


def test_neutron_binds_the_tenant_vifs_on_their_switch_ports(tmp_path: Any) -> None:
    plugin = RecordingPlugin({"vif-1": _vif()})
    iface = _iface(NeutronNetwork, tmp_path, plugin, [_vif_port()])
    iface.configure_tenant(_task(_node()))  # type: ignore[arg-type]
    assert plugin.calls == ["get_port", "set_mac_address", "update_port", "set_binding_host",
                            "bind_many"]


def test_the_node_network_interface_picks_the_implementation(tmp_path: Any) -> None:
    nn = NodeNetworking(_settings(tmp_path, default_network_interface="neutron"),
                        RecordingPlugin(), NoDatabase())  # type: ignore[arg-type]
    assert set(nn.interfaces) == set(NETWORK_INTERFACES)
    assert isinstance(nn.for_node(_node()), NeutronNetwork)  # type: ignore[arg-type]
    for name, cls in (("noop", NoopNetwork), ("flat", FlatNetwork),
                      ("neutron", NeutronNetwork)):
        assert isinstance(nn.for_node(_node(network_interface=name)),  # type: ignore[arg-type]
                          cls)


def test_the_state_map_covers_the_provider_phases(tmp_path: Any) -> None:
    assert PROVIDER_NETWORK == {states.INSPECTING: "inspection",
                                states.CLEANING: "cleaning",
                                states.DEPLOYING: "provisioning"}
    settings = Settings(data_dir=tmp_path)
    for kind in (*PROVIDER_NETWORK.values(), *PROVIDER_KINDS):
        assert kind in PROVIDER_KINDS and hasattr(settings, f"{kind}_network")
    for state in PROVIDER_NETWORK:
        assert state in states.TRANSIENT_STATES


class _ProvisioningPlugin:
    """The provisioning network's port of the node: one fixed IP on a subnet with a
    gateway and a DNS server."""

    def get_port(self, ident: str) -> Any:
        assert ident == "prov-port"
        return SimpleNamespace(id="prov-port", mac_address="52:54:00:00:00:07",
                               network_id="net-prov")

    def fixed_ips(self, ident: str) -> list[dict[str, str]]:
        return [{"subnet_id": "sub-prov", "ip_address": "10.70.0.23"}]

    def get_subnet(self, ident: str) -> Any:
        return SimpleNamespace(cidr="10.70.0.0/24", gateway_ip="10.70.0.1",
                               dns_nameservers=["10.70.0.1"])


def test_network_data_for_a_dhcp_less_ramdisk(tmp_path: Any) -> None:
    """neutron: the node's network_data field, else its provider network port's address
    (Ironic's get_node_network_data); flat: the field only."""
    port = _vif_port()
    port.internal_info = {"provisioning_vif_port_id": "prov-port"}
    plugin = _ProvisioningPlugin()
    neutron = _iface(NeutronNetwork, tmp_path, plugin, [port])  # type: ignore[arg-type]
    flat = _iface(FlatNetwork, tmp_path, plugin, [port])  # type: ignore[arg-type]
    task = _task(_node(network_data=None))
    assert flat.get_node_network_data(task) == {}  # type: ignore[arg-type]
    data = neutron.get_node_network_data(task)  # type: ignore[arg-type]
    assert data == {
        "links": [{"id": "port-port-7", "type": "phy", "vif_id": "prov-port", "mtu": 1500,
                   "ethernet_mac_address": "52:54:00:00:00:07"}],
        "networks": [{"id": "network-port-7-0", "type": "ipv4", "link": "port-port-7",
                      "ip_address": "10.70.0.23", "netmask": "255.255.255.0",
                      "network_id": "net-prov",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                  "gateway": "10.70.0.1"}]}],
        "services": [{"type": "dns", "address": "10.70.0.1"}]}
    port.internal_info = {}  # on no provider network: nothing (the ramdisk asks DHCP)
    assert neutron.get_node_network_data(task) == {}  # type: ignore[arg-type]
    mine = {"links": [], "networks": [], "services": []}
    task = _task(_node(network_data=mine))
    assert neutron.get_node_network_data(task) == mine  # type: ignore[arg-type]
    assert flat.get_node_network_data(task) == mine  # type: ignore[arg-type]
