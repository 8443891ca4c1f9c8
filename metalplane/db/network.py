"""Queries and updates of the network service's tables (networks, segments, subnets, IP
allocations, network ports, security groups, switches and their ports' wanted state).

As :mod:`metalplane.db.api`, functions take a :class:`~metalplane.db.engine.Database` and
return model objects detached from their session; lookups by one column go through
:func:`~metalplane.db.api.rows_where` and one-row updates through
:func:`~metalplane.db.api.update_row` (cached Core statements). Where the network service
decides something *inside* a write transaction (which segment is free, which addresses a
port gets, whether a new gateway is in use), the function takes that decision as a
callable and runs it in the transaction, so checks and writes stay one change: the
callable gets the reads it needs (:class:`PortReads`, a ``taken`` set, an ``in_use``
function), never a connection.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from metalplane.common.exceptions import Conflict, NotFound
from metalplane.db.api import update_many
from metalplane.db.engine import Database
from metalplane.db.models import (
    FloatingIP,
    IPAllocation,
    Network,
    NetworkPort,
    NetworkSegment,
    SecurityGroup,
    SecurityGroupRule,
    SegmentAllocation,
    Subnet,
    Switch,
    SwitchPortBinding,
)

__all__ = [
    "PortReads",
    "SegmentTaken",
    "create_network",
    "create_port",
    "create_security_group",
    "create_security_group_rule",
    "create_subnet",
    "create_switch",
    "delete_network",
    "delete_port",
    "delete_security_group",
    "delete_security_group_rule",
    "delete_subnet",
    "delete_switch",
    "list_networks",
    "list_ports",
    "list_security_group_rules",
    "list_security_groups",
    "list_switch_port_bindings",
    "list_switches",
    "record_switch_ports",
    "set_port_bindings",
    "switch_by_ident",
    "switch_port_in_use",
    "update_network",
    "update_port_addresses",
    "update_security_group",
    "update_subnet",
]

_SUBNETS: sa.Table = Subnet.__table__  # type: ignore[assignment]
_IP_ALLOCATIONS: sa.Table = IPAllocation.__table__  # type: ignore[assignment]
_NETWORK_PORTS: sa.Table = NetworkPort.__table__  # type: ignore[assignment]
_SECURITY_GROUPS: sa.Table = SecurityGroup.__table__  # type: ignore[assignment]
_SWITCH_PORTS: sa.Table = SwitchPortBinding.__table__  # type: ignore[assignment]
_FLOATINGIPS: sa.Table = FloatingIP.__table__  # type: ignore[assignment]


class SegmentTaken(Conflict):
    """A network's creation lost a race: a unique key (its segment) refused a row. Nothing
    was written; choosing the segment again may succeed."""


class SegmentLike(Protocol):
    """What :func:`create_network` needs of a segment (a ``network.types.Segment``)."""

    @property
    def network_type(self) -> str: ...
    @property
    def physical_network(self) -> str | None: ...
    @property
    def segmentation_id(self) -> int | None: ...


# ---- networks ------------------------------------------------------------------------

S = TypeVar("S", bound=SegmentLike)


def create_network(
    db: Database, values: dict[str, Any],
    choose_segment: Callable[[set[tuple[str, str, int]]], S],
    precommit: Callable[[Network], None],
) -> tuple[Network, S]:
    """In one write transaction: read the allocated segments (``(network_type,
    physical_network or "", segmentation_id or 0)``), let ``choose_segment`` pick one from
    them (it raises what it likes: nothing is written then), insert the network of
    ``values`` (with its ``id``), its segment and the segment's allocation, and call
    ``precommit`` with the network before the commit (its errors roll everything back).
    Returns the network and the chosen segment.

    Raises :class:`SegmentTaken` when a unique key refuses a row (another network took the
    segment meanwhile)."""
    try:
        with db.write() as s:
            taken = {(a.network_type, a.physical_network, a.segmentation_id)
                     for a in s.scalars(sa.select(SegmentAllocation))}
            seg = choose_segment(taken)
            net = Network(**values)
            s.add(net)
            s.flush()
            s.add(NetworkSegment(id=str(uuidlib.uuid4()), network_id=net.id,
                                 network_type=seg.network_type,
                                 physical_network=seg.physical_network,
                                 segmentation_id=seg.segmentation_id))
            s.add(SegmentAllocation(network_type=seg.network_type,
                                    physical_network=seg.physical_network or "",
                                    segmentation_id=seg.segmentation_id or 0,
                                    network_id=net.id))
            precommit(net)
    except IntegrityError:
        raise SegmentTaken("that segment was just taken by another network") from None
    return net, seg


def list_networks(db: Database, equals: dict[str, Any]) -> list[Network]:
    """Networks whose columns hold ``equals`` (column → value), by creation time then id."""
    with db.read() as s:
        q = sa.select(Network).order_by(Network.created_at, Network.id)
        for key, value in equals.items():
            q = q.where(getattr(Network, key) == value)
        return list(s.scalars(q))


def update_network(db: Database, network_id: str, values: dict[str, Any]) -> None:
    """Set ``values`` (column → value) on network ``network_id``, which must exist."""
    with db.write() as s:
        row = s.get(Network, network_id)
        assert row is not None
        for k, v in values.items():
            setattr(row, k, v)


def delete_network(db: Database, network_id: str) -> None:
    """Delete network ``network_id`` with its subnets, their addresses, its segments and
    their allocations, in one transaction. Raises :class:`Conflict` while a port is on it
    (nothing is deleted then)."""
    with db.write() as s:
        if s.scalars(sa.select(NetworkPort.id).where(NetworkPort.network_id == network_id)
                     ).first():
            raise Conflict(f"Unable to complete operation on network {network_id}. There "
                           "are one or more ports still in use on the network.")
        s.execute(sa.delete(IPAllocation).where(IPAllocation.subnet_id.in_(
            sa.select(Subnet.id).where(Subnet.network_id == network_id))))
        for model in (Subnet, NetworkSegment, SegmentAllocation):
            s.execute(sa.delete(model).where(model.network_id == network_id))
        s.execute(sa.delete(Network).where(Network.id == network_id))


# ---- subnets -------------------------------------------------------------------------

def create_subnet(db: Database, network_id: str,
                  make: Callable[[list[str]], dict[str, Any]]) -> Subnet:
    """In one write transaction: read the CIDRs of network ``network_id``'s subnets, let
    ``make`` turn them into the new subnet's columns (it raises when the new one overlaps
    or is bad: nothing is written then) and insert it. Returns the subnet."""
    with db.write() as s:
        others = [sn.cidr for sn in s.scalars(sa.select(Subnet).where(
            Subnet.network_id == network_id))]
        sub = Subnet(**make(others))
        s.add(sub)
    return sub


def update_subnet(db: Database, subnet_id: str,
                  change: Callable[[Subnet, Callable[[str], bool]], dict[str, Any]]) -> None:
    """In one write transaction: call ``change`` with subnet ``subnet_id`` and an
    ``in_use(ip_address)`` function (does a port hold that address on this subnet?), and
    set the columns it returns. ``change`` raises to refuse (nothing is written then).
    Raises :class:`NotFound` ("Subnet <id> could not be found.") if the subnet is gone."""
    with db.write() as s:
        row = s.get(Subnet, subnet_id)
        if row is None:
            raise NotFound(f"Subnet {subnet_id} could not be found.")

        def in_use(ip: str) -> bool:
            return s.scalars(sa.select(IPAllocation.port_id).where(
                IPAllocation.subnet_id == row.id,
                IPAllocation.ip_address == ip)).first() is not None

        for k, v in change(row, in_use).items():
            setattr(row, k, v)


def delete_subnet(db: Database, subnet_id: str) -> None:
    """Delete subnet ``subnet_id``. Raises :class:`Conflict` while a port holds one of its
    addresses."""
    with db.write() as s:
        if s.scalars(sa.select(IPAllocation.id).where(IPAllocation.subnet_id == subnet_id)
                     ).first():
            raise Conflict(f"Unable to complete operation on subnet {subnet_id}: one or "
                           "more ports have an IP allocation from this subnet.")
        s.execute(sa.delete(Subnet).where(Subnet.id == subnet_id))


# ---- network ports -------------------------------------------------------------------

@functools.cache
def _port_statements() -> dict[str, Any]:
    """The Core statements of a port's creation, change and deletion, built once (a node's
    network change creates and deletes ports by the dozen)."""
    sub, alloc, ports = _SUBNETS, _IP_ALLOCATIONS, _NETWORK_PORTS
    return {
        "subnets": sa.select(sub).where(sub.c.network_id == sa.bindparam("network_id"))
        .order_by(sub.c.created_at, sub.c.id),
        "address_used": sa.select(alloc.c.id).where(
            alloc.c.subnet_id == sa.bindparam("subnet_id"),
            alloc.c.ip_address == sa.bindparam("ip_address")),
        "used_addresses": sa.select(alloc.c.ip_address).where(
            alloc.c.subnet_id == sa.bindparam("subnet_id")),
        "sg_exists": sa.select(_SECURITY_GROUPS.c.id).where(
            _SECURITY_GROUPS.c.id == sa.bindparam("sg_id")),
        "insert_port": sa.insert(ports),
        "insert_allocs": sa.insert(alloc),
        "delete_allocs": sa.delete(alloc).where(alloc.c.port_id == sa.bindparam("port_id")),
        "delete_port": sa.delete(ports).where(ports.c.id == sa.bindparam("port_id")),
        "fip_routers": sa.select(_FLOATINGIPS.c.router_id).where(
            _FLOATINGIPS.c.port_id == sa.bindparam("fixed_port")),
        "disassociate": sa.update(_FLOATINGIPS).where(
            _FLOATINGIPS.c.port_id == sa.bindparam("fixed_port")).values(
            port_id=None, fixed_ip_address=None, router_id=None, status="DOWN"),
    }


class PortReads:
    """The reads a port's addresses and security groups are checked with, inside the
    write transaction of :func:`create_port` or :func:`update_port_addresses`."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._q = _port_statements()

    def subnets(self, network_id: str) -> list[Any]:
        """The subnets of ``network_id`` by creation time then id: rows with a subnet's
        columns as attributes (``id``, ``cidr``, ``gateway_ip``, ``allocation_pools``…)."""
        return list(self._conn.execute(self._q["subnets"], {"network_id": network_id}))

    def address_used(self, subnet_id: str, ip_address: str) -> bool:
        """Whether ``ip_address`` is allocated on subnet ``subnet_id``."""
        return self._conn.execute(self._q["address_used"], {
            "subnet_id": subnet_id, "ip_address": ip_address}).first() is not None

    def used_addresses(self, subnet_id: str) -> set[str]:
        """Every address allocated on subnet ``subnet_id``."""
        return set(self._conn.execute(self._q["used_addresses"],
                                      {"subnet_id": subnet_id}).scalars())

    def security_group_exists(self, sg_id: str) -> bool:
        return self._conn.execute(self._q["sg_exists"], {"sg_id": sg_id}).first() is not None


def create_port(db: Database, values: dict[str, Any],
                prepare: Callable[[PortReads], list[dict[str, str]]]) -> None:
    """In one transaction (Core statements: an ORM session's unit of work cost two thirds
    of a port's creation, 1.6 ms, and a node's network change makes one): call
    ``prepare`` with the reads it checks with (it may add to ``values``, and raises to
    refuse: nothing is written then), insert the network port of ``values`` (with its
    ``id`` and ``network_id``) and the ``ip_allocations`` rows ``prepare`` returned
    (``port_id``, ``subnet_id``, ``ip_address``).

    Raises :class:`Conflict` when the MAC address is in use on the network or an address
    was taken meanwhile."""
    q = _port_statements()
    try:
        with db.transaction() as conn:
            allocs = prepare(PortReads(conn))
            conn.execute(q["insert_port"], values)
            if allocs:
                conn.execute(q["insert_allocs"], allocs)
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "mac" in text:
            raise Conflict(f"MAC address {values['mac_address']} is already in use on "
                           f"network {values['network_id']}") from None
        raise Conflict("an IP address asked for was just taken; try again") from None


def update_port_addresses(
    db: Database, port_id: str,
    security_groups: Callable[[PortReads], list[str]] | None,
    fixed_ips: Callable[[PortReads], list[dict[str, str]]] | None,
) -> None:
    """In one transaction: with ``security_groups``, set the port's groups to what it
    returns; with ``fixed_ips``, drop the port's addresses and insert the
    ``ip_allocations`` rows it returns (it reads with the old ones gone). Either raises to
    refuse: nothing is written then."""
    q = _port_statements()
    with db.transaction() as conn:
        reads = PortReads(conn)
        if security_groups is not None:
            update_many(conn, NetworkPort, [{"id": port_id,
                                             "security_groups": security_groups(reads)}])
        if fixed_ips is not None:
            conn.execute(q["delete_allocs"], {"port_id": port_id})
            allocs = fixed_ips(reads)
            if allocs:
                conn.execute(q["insert_allocs"], allocs)


def delete_port(db: Database, port_id: str) -> set[str]:
    """Delete network port ``port_id`` and its addresses, and disassociate the floating IPs
    of its fixed IPs (no port, fixed IP nor router; status ``DOWN``), in one transaction.
    Returns the routers those floating IPs were associated through."""
    q = _port_statements()
    with db.transaction() as conn:
        routers = {r for r in conn.execute(q["fip_routers"], {"fixed_port": port_id})
                   .scalars() if r}
        if routers:
            conn.execute(q["disassociate"], {"fixed_port": port_id})
        conn.execute(q["delete_allocs"], {"port_id": port_id})
        conn.execute(q["delete_port"], {"port_id": port_id})
    return routers


def list_ports(db: Database, equals: dict[str, Any]) -> list[NetworkPort]:
    """Network ports whose columns hold ``equals`` (column → value), by creation time then
    id."""
    with db.read() as s:
        q = sa.select(NetworkPort).order_by(NetworkPort.created_at, NetworkPort.id)
        for col, value in equals.items():
            q = q.where(getattr(NetworkPort, col) == value)
        return list(s.scalars(q))


def set_port_bindings(db: Database, changes: list[tuple[str, str, dict[str, Any], str]]
                      ) -> None:
    """Record ``(port_id, vif_type, vif_details, status)`` of many ports: one transaction,
    one executemany ``UPDATE`` by primary key. Ports that are gone are skipped."""
    if not changes:
        return
    with db.transaction() as conn:
        update_many(conn, NetworkPort, [
            {"id": port_id, "binding_vif_type": vif_type, "binding_vif_details": details,
             "status": status} for port_id, vif_type, details, status in changes])


# ---- security groups -----------------------------------------------------------------

def create_security_group(db: Database, values: dict[str, Any]) -> SecurityGroup:
    """Insert the security group of ``values`` (with its ``id``) and return it."""
    sg = SecurityGroup(**values)
    with db.write() as s:
        s.add(sg)
    return sg


def list_security_groups(db: Database) -> list[SecurityGroup]:
    """Every security group, by creation time."""
    with db.read() as s:
        return list(s.scalars(sa.select(SecurityGroup).order_by(SecurityGroup.created_at)))


def update_security_group(db: Database, sg_id: str, values: dict[str, Any]) -> None:
    """Set ``values`` (column → value) on security group ``sg_id``. Raises
    :class:`NotFound` ("Security group <id> could not be found.")."""
    with db.write() as s:
        row = s.get(SecurityGroup, sg_id)
        if row is None:
            raise NotFound(f"Security group {sg_id} could not be found.")
        for k, v in values.items():
            setattr(row, k, v)


def delete_security_group(db: Database, sg_id: str) -> None:
    """Delete security group ``sg_id`` and its rules, in one transaction. Raises
    :class:`Conflict` while a network port uses it (nothing is deleted then)."""
    with db.write() as s:
        for port in s.scalars(sa.select(NetworkPort)):
            if sg_id in (port.security_groups or []):
                raise Conflict(f"Security group {sg_id} is in use by port {port.id}")
        s.execute(sa.delete(SecurityGroupRule).where(
            SecurityGroupRule.security_group_id == sg_id))
        s.execute(sa.delete(SecurityGroup).where(SecurityGroup.id == sg_id))


def list_security_group_rules(db: Database, sg_id: str | None = None
                              ) -> list[SecurityGroupRule]:
    """The rules (of security group ``sg_id``, else all), by creation time."""
    with db.read() as s:
        q = sa.select(SecurityGroupRule).order_by(SecurityGroupRule.created_at)
        if sg_id:
            q = q.where(SecurityGroupRule.security_group_id == sg_id)
        return list(s.scalars(q))


def create_security_group_rule(db: Database, values: dict[str, Any]) -> SecurityGroupRule:
    """Insert the rule of ``values`` (with its ``id``) and return it."""
    rule = SecurityGroupRule(**values)
    with db.write() as s:
        s.add(rule)
    return rule


def delete_security_group_rule(db: Database, rule_id: str) -> None:
    """Raises :class:`NotFound` ("Security group rule <id> could not be found.")."""
    with db.write() as s:
        if s.execute(sa.delete(SecurityGroupRule).where(SecurityGroupRule.id == rule_id)
                     ).rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"Security group rule {rule_id} could not be found.")


# ---- switches ------------------------------------------------------------------------

def create_switch(db: Database, values: dict[str, Any]) -> Switch:
    """Insert the switch of ``values`` (with its ``id``) and return it. Raises
    :class:`Conflict` for a name or ``switch_id`` already registered."""
    try:
        with db.write() as s:
            sw = Switch(**values)
            s.add(sw)
    except IntegrityError:
        raise Conflict(f"a switch named {values['name']} or with switch_id "
                       f"{values['switch_id']} is already registered") from None
    return sw


def list_switches(db: Database) -> list[Switch]:
    """Every registered switch, by name."""
    with db.read() as s:
        return list(s.scalars(sa.select(Switch).order_by(Switch.name)))


def switch_by_ident(db: Database, ident: str) -> Switch:
    """The switch whose id, name or ``switch_id`` is ``ident``. Raises :class:`NotFound`."""
    with db.read() as s:
        sw = s.scalars(sa.select(Switch).where(
            (Switch.id == ident) | (Switch.name == ident)
            | (Switch.switch_id == ident.lower()))).first()
    if sw is None:
        raise NotFound(f"Switch {ident} could not be found.")
    return sw


def switch_port_in_use(db: Database, switch_uuid: str) -> SwitchPortBinding | None:
    """A port of switch ``switch_uuid`` a network port is bound to, if any."""
    with db.read() as s:
        return s.scalars(sa.select(SwitchPortBinding).where(
            SwitchPortBinding.switch_uuid == switch_uuid,
            SwitchPortBinding.network_port_id.is_not(None))).first()


def delete_switch(db: Database, switch_uuid: str) -> None:
    """Delete switch ``switch_uuid`` and the wanted state of its ports, in one
    transaction."""
    with db.write() as s:
        s.execute(sa.delete(SwitchPortBinding).where(
            SwitchPortBinding.switch_uuid == switch_uuid))
        s.execute(sa.delete(Switch).where(Switch.id == switch_uuid))


def list_switch_port_bindings(db: Database, switch_uuid: str | None = None
                              ) -> list[SwitchPortBinding]:
    """The wanted state of switch ports (of ``switch_uuid``, else all), by port name."""
    with db.read() as s:
        q = sa.select(SwitchPortBinding).order_by(SwitchPortBinding.port_name)
        if switch_uuid:
            q = q.where(SwitchPortBinding.switch_uuid == switch_uuid)
        return list(s.scalars(q))


def record_switch_ports(db: Database, switch_uuid: str, dropped: list[list[str]],
                        rows: list[dict[str, Any]]) -> None:
    """Record what was applied to switch ``switch_uuid``, in one transaction of Core
    statements (no session): delete the named ports of each non-empty list of ``dropped``
    (dissolved bonds, ports that became bond members), then upsert ``rows`` (``port_name``,
    ``vlan``, ``bond_members``, ``bond_mode``, ``network_port_id``; all with the same keys)
    by port name: one query for those that exist, one executemany ``UPDATE`` for them and
    one executemany ``INSERT`` for the others (a flip of 500 ports is three statements)."""
    table = _SWITCH_PORTS
    with db.transaction() as conn:
        for gone in dropped:
            if gone:
                conn.execute(sa.delete(table).where(table.c.switch_uuid == switch_uuid,
                                                    table.c.port_name.in_(gone)))
        existing = {name: pk for name, pk in conn.execute(
            sa.select(table.c.port_name, table.c.id).where(
                table.c.switch_uuid == switch_uuid,
                table.c.port_name.in_([r["port_name"] for r in rows])))}
        known = [{**r, "id": existing[r["port_name"]]} for r in rows
                 if r["port_name"] in existing]
        new = [{**r, "switch_uuid": switch_uuid} for r in rows
               if r["port_name"] not in existing]
        update_many(conn, SwitchPortBinding, known)
        if new:
            conn.execute(sa.insert(table), new)
