"""OVN's Northbound database through ovsdbapp, with one transaction per change set.

The OVN mechanism driver (:mod:`metalplane.network.ovn_mech`) describes what the NB database
should hold for the networks, subnets and ports it was told about as plain rows
(:class:`LogicalSwitch`, :class:`DhcpOptions`, :class:`LogicalSwitchPort`, ...) collected in a
:class:`ChangeSet`; :meth:`Northbound.apply` writes a whole change set in one NB transaction:
all of it or nothing. Names follow ML2/OVN's, so an operator's ``ovn-nbctl show`` reads as it
does under Neutron: a network is the Logical_Switch ``neutron-<network id>``, a port the
Logical_Switch_Port named by its id, a provider segment the localnet port
``provnet-<segment id>``, a subnet's DHCP options the DHCP_Options row whose
``external_ids:subnet_id`` names it (a port with ``extra_dhcp_opts`` has its own row with
``external_ids:port_id`` too). Sources: ovn-nb(5) (Logical_Switch_Port ``type`` external and
localnet, ``ha_chassis_group``, DHCP_Options and the types of its options), ovn-architecture(7),
ovsdbapp's OVN_Northbound API.

The connection is persistent; ovsdbapp's IDL reconnects by itself after the database server
restarts and a transaction waits (up to ``timeout`` seconds) for it. A change set that cannot
be committed raises :class:`OVNError` (HTTP 503) and leaves the database as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.ovn_northbound import impl_idl

from metalplane.common.exceptions import MetalplaneError
from metalplane.network.ovs import _Idl

__all__ = ["Acl", "ChangeSet", "DhcpOptions", "HAChassisGroup", "LogicalRouter",
           "LogicalRouterPort", "LogicalSwitch", "LogicalSwitchPort", "Northbound", "OVNError",
           "PortGroup", "dhcp_key", "dhcp_options_from_extra", "ovn_option_value"]

LOG = logging.getLogger(__name__)

# ovn-nb(5), "DHCP Options": options of type ``str`` (and ``domains``) are strings that must
# be quoted inside the value; ``host_id`` (tftp_server) takes an address or a quoted string.
STRING_OPTIONS = frozenset({
    "bootfile_name", "bootfile_name_alt", "domain_name", "path_prefix", "hostname", "wpad",
    "tftp_server", "domain_search_list", "broadcast_address_str"})

# Neutron's extra_dhcp_opts names (dnsmasq's, as Ironic sends them) to OVN's DHCP options,
# as ML2/OVN maps them. ``tag:ipxe,bootfile-name`` goes to an iPXE client: OVN sends
# ``bootfile_name`` when the request carries iPXE's option 175 and ``bootfile_name_alt``
# otherwise (ovn-nb(5), "bootfile_name_alt"), so plain PXE firmware (``tag:!ipxe``) gets the
# alternative.
NEUTRON_TO_OVN = {
    "bootfile-name": "bootfile_name", "67": "bootfile_name",
    "tag:ipxe,bootfile-name": "bootfile_name", "tag:!ipxe,bootfile-name": "bootfile_name_alt",
    "tftp-server": "tftp_server", "66": "tftp_server",
    "tftp-server-address": "tftp_server_address", "150": "tftp_server_address",
    "server-ip-address": "next_server",
    "router": "router", "3": "router", "dns-server": "dns_server", "6": "dns_server",
    "domain-name": "domain_name", "15": "domain_name", "domain-search": "domain_search_list",
    "119": "domain_search_list", "mtu": "mtu", "26": "mtu", "lease-time": "lease_time",
    "51": "lease_time", "ntp-server": "ntp_server", "42": "ntp_server",
    "classless-static-route": "classless_static_route", "121": "classless_static_route",
    "arp-timeout": "arp_cache_timeout", "35": "arp_cache_timeout",
    "default-ttl": "default_ttl", "23": "default_ttl", "ip-forward-enable": "ip_forward_enable",
    "19": "ip_forward_enable", "path-prefix": "path_prefix", "210": "path_prefix",
    "log-server": "log_server", "7": "log_server", "wpad": "wpad", "252": "wpad",
}
HA_GROUP = "default_ha_chassis_group"  # ML2/OVN's group of external ports


class OVNError(MetalplaneError):
    """OVN's Northbound database could not be reached or refused a change (HTTP 503);
    nothing of the change set was applied."""

    code = 503
    retryable = True


def ovn_option_value(name: str, value: str) -> str:
    """``value`` as OVN stores DHCP option ``name``: string options quoted (ovn-nb(5))."""
    value = str(value)
    if name in STRING_OPTIONS:  # tftp_server too: unquoted, an address went out as 4 bytes
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "," in value and not value.startswith("{"):
        return "{" + value + "}"  # a list of addresses: dns_server={a, b}
    return value


def dhcp_options_from_extra(extra: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """Neutron ``extra_dhcp_opts`` (IPv4 ones) as OVN DHCP options; second, the names OVN
    has no option for (ML2/OVN ignores those too)."""
    out: dict[str, str] = {}
    skipped: list[str] = []
    for opt in extra:
        if int(opt.get("ip_version") or 4) != 4:
            continue
        key = ",".join(p.strip() for p in str(opt["opt_name"]).split(","))
        name = NEUTRON_TO_OVN.get(key)
        if name is None:
            skipped.append(key)
            continue
        out[name] = ovn_option_value(name, str(opt["opt_value"]))
    return out, skipped


@dataclasses.dataclass(frozen=True)
class LocalnetPort:
    """The localnet port of a VLAN or flat network: its ``physnet`` (``network_name``,
    mapped to a bridge by ``ovn-bridge-mappings`` on the chassis) and VLAN ``tag``."""

    name: str
    physnet: str
    tag: int | None


@dataclasses.dataclass
class LogicalSwitch:
    name: str
    external_ids: dict[str, str]
    localnet: LocalnetPort | None = None
    other_config: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DhcpOptions:
    """One DHCP_Options row: a subnet's (``port_id`` empty) or a port's own."""

    subnet_id: str
    port_id: str
    cidr: str
    options: dict[str, str]
    external_ids: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.subnet_id, self.port_id)


@dataclasses.dataclass
class LogicalSwitchPort:
    """A Logical_Switch_Port. ``dhcpv4``: the key of its DHCP_Options row, None for no
    DHCP answer. ``ha_chassis_group``: for ``type`` external, the group hosting it."""

    name: str
    switch: str
    type: str = ""
    addresses: list[str] = dataclasses.field(default_factory=list)
    port_security: list[str] = dataclasses.field(default_factory=list)
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    dhcpv4: tuple[str, str] | None = None
    ha_chassis_group: str | None = None
    external_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    enabled: bool = True


@dataclasses.dataclass
class HAChassisGroup:
    """An HA_Chassis_Group: ``chassis`` as ``(chassis name, priority)``."""

    name: str
    chassis: list[tuple[str, int]]


@dataclasses.dataclass
class LogicalRouterPort:
    """A Logical_Router_Port (``lrp-<port id>``): its MAC, ``networks`` (``ip/prefix``),
    for a gateway port the chassis that may host it (``(name, priority)``), and options
    (``reside-on-redirect-chassis``)."""

    name: str
    mac: str
    networks: list[str]
    gateway_chassis: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    options: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LogicalRouter:
    """A Logical_Router (``neutron-<router id>``) with all its ports, static routes
    (``(prefix, nexthop)``) and NAT rules (``(type, external_ip, logical_ip)``); ports,
    routes and NAT rules it has beyond these are removed, with the switch ports that led to
    removed router ports."""

    name: str
    enabled: bool
    external_ids: dict[str, str]
    ports: list[LogicalRouterPort] = dataclasses.field(default_factory=list)
    routes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    nat: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Acl:
    """An ACL: ``direction`` from-lport or to-lport, ``priority``, OVN ``match``,
    ``action`` (allow-related, allow-stateless, allow, drop). Source: ovn-nb(5), ACL."""

    direction: str
    priority: int
    match: str
    action: str


@dataclasses.dataclass
class PortGroup:
    """A Port_Group: its logical switch ports (by name) and its ACLs (the whole set)."""

    name: str
    ports: list[str]
    acls: list[Acl]
    external_ids: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ChangeSet:
    """Rows to create or bring to the given state, and rows to delete, applied together.
    A port to delete is ``(switch name, port name)``; a DHCP_Options row by its key."""

    groups: list[HAChassisGroup] = dataclasses.field(default_factory=list)
    switches: list[LogicalSwitch] = dataclasses.field(default_factory=list)
    dhcp: list[DhcpOptions] = dataclasses.field(default_factory=list)
    ports: list[LogicalSwitchPort] = dataclasses.field(default_factory=list)
    del_ports: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    del_dhcp: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    del_switches: list[str] = dataclasses.field(default_factory=list)
    routers: list[LogicalRouter] = dataclasses.field(default_factory=list)
    del_routers: list[str] = dataclasses.field(default_factory=list)
    port_groups: list[PortGroup] = dataclasses.field(default_factory=list)
    del_port_groups: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return any(dataclasses.astuple(self))

    def extend(self, other: ChangeSet) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


def dhcp_key(row: Any) -> tuple[str, str] | None:
    """The (subnet id, port id) a DHCP_Options row was written for; None if not ours."""
    ids = row.external_ids
    if "subnet_id" not in ids:
        return None
    return (ids["subnet_id"], ids.get("port_id", ""))


def _get(row: Any, column: str, default: Any) -> Any:
    """A column's value; ``default`` for a row inserted in this transaction and not
    written yet (the IDL has no value for it)."""
    try:
        return getattr(row, column)
    except AttributeError:
        return default


def _set_if(row: Any, column: str, value: Any) -> None:
    """Write a column only when it differs: an unchanged write still costs OVSDB work."""
    if _get(row, column, None) != value:
        setattr(row, column, value)


class _Apply(ovs_command.BaseCommand):  # type: ignore[misc]
    """One command that brings every row of a change set to its wanted state."""

    def __init__(self, api: Any, change: ChangeSet) -> None:
        super().__init__(api)
        self.change = change

    def _switch(self, name: str) -> Any:
        return idlutils.row_by_value(self.api.idl, "Logical_Switch", "name", name, None)

    def _lsp(self, name: str) -> Any:
        return idlutils.row_by_value(self.api.idl, "Logical_Switch_Port", "name", name, None)

    def _named(self, txn: Any, table: str, name: str) -> Any:
        """The row of ``table`` named ``name``, inserted if there is none."""
        row = idlutils.row_by_value(self.api.idl, table, "name", name, None)
        if row is None:
            row = txn.insert(self.api._tables[table])
            row.name = name
        return row

    def _member(self, txn: Any, table: str, name: str, parent: Any) -> Any:
        """The row of ``table`` named ``name``; a new one is added to ``parent.ports``."""
        row = idlutils.row_by_value(self.api.idl, table, "name", name, None)
        if row is None:
            row = txn.insert(self.api._tables[table])
            row.name = name
            parent.addvalue("ports", row)
        return row

    def _children(self, txn: Any, parent: Any, column: str, table: str,
                  fields: tuple[str, ...], wanted: list[tuple[Any, ...]]) -> None:
        """Make ``parent.column`` (rows of ``table``) hold rows with ``fields`` equal to
        ``wanted``: new rows replace the old ones if the sets differ (the old ones, not
        referenced any more, are garbage collected)."""
        have = sorted(tuple(getattr(r, f) for f in fields) for r in _get(parent, column, []))
        if have == sorted(wanted):
            return
        rows = []
        for values in wanted:
            child = txn.insert(self.api._tables[table])
            for f, v in zip(fields, values, strict=True):
                setattr(child, f, v)
            rows.append(child)
        setattr(parent, column, rows)

    def run_idl(self, txn: Any) -> None:
        c = self.change
        tables = self.api._tables
        groups: dict[str, Any] = {}
        for g in c.groups:
            row = self._named(txn, "HA_Chassis_Group", g.name)
            self._children(txn, row, "ha_chassis", "HA_Chassis", ("chassis_name", "priority"),
                           list(g.chassis))
            groups[g.name] = row
        switches: dict[str, Any] = {}
        for ls in c.switches:
            row = self._named(txn, "Logical_Switch", ls.name)
            _set_if(row, "external_ids", ls.external_ids)
            _set_if(row, "other_config", ls.other_config)
            if ls.localnet is not None:
                ln = self._member(txn, "Logical_Switch_Port", ls.localnet.name, row)
                _set_if(ln, "type", "localnet")
                _set_if(ln, "addresses", ["unknown"])
                _set_if(ln, "options", {"network_name": ls.localnet.physnet})
                _set_if(ln, "tag", [ls.localnet.tag] if ls.localnet.tag is not None else [])
            switches[ls.name] = row
        dhcp: dict[tuple[str, str], Any] = {}
        if c.dhcp or c.del_dhcp or any(p.dhcpv4 for p in c.ports):
            for r in tables["DHCP_Options"].rows.values():
                key = dhcp_key(r)
                if key is not None:
                    dhcp[key] = r
        for d in c.dhcp:
            row = dhcp.get(d.key)
            if row is None:
                row = txn.insert(tables["DHCP_Options"])
                dhcp[d.key] = row
            _set_if(row, "cidr", d.cidr)
            _set_if(row, "options", d.options)
            ids = {**d.external_ids, "subnet_id": d.subnet_id,
                   **({"port_id": d.port_id} if d.port_id else {})}
            _set_if(row, "external_ids", ids)
        for p in c.ports:
            ls = switches.get(p.switch) or self._switch(p.switch)
            if ls is None:
                raise OVNError(f"logical switch {p.switch} of port {p.name} does not exist")
            switches[p.switch] = ls
            row = self._member(txn, "Logical_Switch_Port", p.name, ls)
            _set_if(row, "type", p.type)
            _set_if(row, "addresses", p.addresses)
            _set_if(row, "port_security", p.port_security)
            _set_if(row, "options", p.options)
            _set_if(row, "external_ids", p.external_ids)
            _set_if(row, "enabled", [p.enabled])
            want_dhcp = [dhcp[p.dhcpv4]] if p.dhcpv4 and p.dhcpv4 in dhcp else []
            if [r.uuid for r in _get(row, "dhcpv4_options", [])] != [r.uuid for r in want_dhcp]:
                row.dhcpv4_options = want_dhcp
            if p.ha_chassis_group:
                g = groups.get(p.ha_chassis_group) or idlutils.row_by_value(
                    self.api.idl, "HA_Chassis_Group", "name", p.ha_chassis_group, None)
                if g is None:
                    raise OVNError(f"HA chassis group {p.ha_chassis_group} does not exist")
                have_group = _get(row, "ha_chassis_group", [])
                if not have_group or have_group[0].uuid != g.uuid:
                    row.ha_chassis_group = [g]
            elif _get(row, "ha_chassis_group", []):
                row.ha_chassis_group = []
        for pg in c.port_groups:
            self._port_group(txn, pg)
        for name in c.del_port_groups:
            row = idlutils.row_by_value(self.api.idl, "Port_Group", "name", name, None)
            if row is not None:
                row.delete()
        for switch, name in c.del_ports:
            row = self._lsp(name)
            if row is None:
                continue
            ls = switches.get(switch) or self._switch(switch)
            if ls is not None:
                ls.delvalue("ports", row)
            row.delete()
        for key in c.del_dhcp:
            row = dhcp.get(key)
            if row is not None:
                row.delete()
        for name in c.del_switches:
            row = self._switch(name)
            if row is not None:
                row.delete()
        for lr in c.routers:
            self._router(txn, lr)
        for name in c.del_routers:
            row = idlutils.row_by_value(self.api.idl, "Logical_Router", "name", name, None)
            if row is not None:
                for lrp in row.ports:
                    self._drop_router_lsp(lrp.name)
                row.delete()

    def _port_group(self, txn: Any, pg: PortGroup) -> None:
        row = self._named(txn, "Port_Group", pg.name)
        _set_if(row, "external_ids", pg.external_ids)
        members = [r for r in (self._lsp(n) for n in pg.ports) if r is not None]
        if sorted(r.uuid for r in _get(row, "ports", [])) != sorted(r.uuid for r in members):
            row.ports = members
        self._children(txn, row, "acls", "ACL", ("direction", "priority", "match", "action"),
                       [dataclasses.astuple(a) for a in pg.acls])

    def _drop_router_lsp(self, lrp_name: str) -> None:
        """Delete the switch port that led to router port ``lrp_name`` (``lrp-<id>``)."""
        lsp = self._lsp(lrp_name.removeprefix("lrp-"))
        if lsp is None or lsp.type != "router":
            return
        for ls in self.api._tables["Logical_Switch"].rows.values():
            if lsp in ls.ports:
                ls.delvalue("ports", lsp)
                break
        lsp.delete()

    def _router(self, txn: Any, lr: LogicalRouter) -> None:
        row = self._named(txn, "Logical_Router", lr.name)
        _set_if(row, "enabled", [lr.enabled])
        _set_if(row, "external_ids", lr.external_ids)
        wanted = {p.name for p in lr.ports}
        for lrp in list(_get(row, "ports", [])):
            if lrp.name not in wanted:
                row.delvalue("ports", lrp)
                self._drop_router_lsp(lrp.name)
                lrp.delete()
        for p in lr.ports:
            lrp = self._member(txn, "Logical_Router_Port", p.name, row)
            _set_if(lrp, "mac", p.mac)
            _set_if(lrp, "networks", p.networks)
            _set_if(lrp, "options", p.options)
            self._children(txn, lrp, "gateway_chassis", "Gateway_Chassis",
                           ("name", "chassis_name", "priority"),
                           [(f"{p.name}_{c}", c, prio) for c, prio in p.gateway_chassis])
        self._children(txn, row, "static_routes", "Logical_Router_Static_Route",
                       ("ip_prefix", "nexthop"), list(lr.routes))
        self._children(txn, row, "nat", "NAT", ("type", "external_ip", "logical_ip"),
                       list(lr.nat))


class Northbound:
    """A persistent connection to OVN's Northbound database at ``address``
    (``unix:/path``, ``tcp:host:port``, ``ssl:host:port``).

    Raises :class:`OVNError` when the database cannot be reached in ``timeout`` seconds.
    """

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        try:
            helper = idlutils.get_schema_helper(address, "OVN_Northbound")
        except Exception as exc:
            raise OVNError(f"cannot reach OVN's Northbound database at {address}: "
                           f"{exc}") from None
        helper.register_all()
        self.timeout = timeout
        self._conn = connection.Connection(idl=_Idl(address, helper),
                                           timeout=max(1, int(timeout)))
        # ovsdbapp keeps the connection in a class attribute shared by every instance of a
        # class: a class of its own keeps this connection this instance's (see ovs.py)
        api_class = type("OvnNbApi", (impl_idl.OvnNbApiIdlImpl,), {"_ovsdb_connection": None})
        try:
            self.api = api_class(self._conn)
        except Exception as exc:
            self.close()
            raise OVNError(f"cannot use OVN's Northbound database at {address}: "
                           f"{exc}") from None
        self.transactions = 0  # NB transactions committed (or tried)

    def apply(self, change: ChangeSet) -> None:
        """Write ``change`` in one transaction: all or nothing. Raises :class:`OVNError`."""
        if not change:
            return
        self.transactions += 1
        try:
            with self.api.transaction(check_error=True) as txn:
                txn.add(_Apply(self.api, change))
        except OVNError:
            raise
        except ovsdbapp_exceptions.TimeoutException:
            raise OVNError(f"OVN's Northbound database at {self.address} did not commit "
                           f"the change within {self.timeout:g} s") from None
        except Exception as exc:
            raise OVNError(f"OVN's Northbound database at {self.address} refused the "
                           f"change: {exc}") from None

    def rows(self, table: str) -> list[Any]:
        """The rows of ``table`` as the connection sees them now (read-only)."""
        return list(self.api.tables[table].rows.values())

    def close(self) -> None:
        """Stop the connection's thread, waiting at most about ``timeout`` + 5 s.

        ovsdbapp's ``Connection.stop`` queues a stop marker with a blocking put: when a
        change is being committed and another waits in its one-slot queue (a deploy's
        cleanup during an NB outage, as the server stops), the thread ends after the
        first without taking the marker and the put never returns. The stop runs on a
        thread of its own, so closing is bounded whatever the connection's state."""
        def stop() -> None:
            try:
                self._conn.stop(timeout=5)
            except Exception:
                LOG.debug("closing the NB connection to %s failed", self.address,
                          exc_info=True)

        stopper = threading.Thread(target=stop, name="ovn-nb-close", daemon=True)
        stopper.start()
        stopper.join(self.timeout + 5)
        if stopper.is_alive():
            LOG.warning("the NB connection to %s did not stop within %g s; left to end "
                        "with the process", self.address, self.timeout + 5)
