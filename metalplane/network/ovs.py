"""Open vSwitch top-of-rack switches through OVSDB (ovsdbapp), with batched transactions.

A switch is one OVS bridge reached at an OVSDB address (``unix:/path/db.sock`` or
``tcp:host:port``). :class:`OVSSwitch` keeps one persistent IDL connection to it and turns
a list of :class:`PortConfig` (the wanted state of switch ports) into one OVSDB
transaction. :class:`SwitchBatcher` coalesces the changes that many threads submit at
about the same time into one transaction per switch, so flipping 100 nodes at once costs
a handful of round trips, not 100. Sources: the Open_vSwitch database schema
(``ovs-vswitchd.conf.db(5)``: Port ``tag``, ``vlan_mode``, ``bond_mode``, ``lacp``,
``other_config:lacp-fallback-ab``), ovsdbapp's command/transaction API.

A switch port no tenant or provider network uses is parked on ``parking_vlan`` (an access
VLAN nothing else uses) so it reaches nothing; it is never left as an untagged trunk.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import threading
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from metalplane.common.exceptions import MetalplaneError

__all__ = ["BOND_MODES", "OVSSwitch", "PortConfig", "SwitchBatcher", "SwitchError", "needs_lag"]

LOG = logging.getLogger(__name__)

# What the switch side of a Linux bond needs, by bonding mode (Ironic portgroup.mode, by
# name or number), from the kernel's bonding HOWTO (Documentation/networking/bonding.rst,
# "Switch Configuration"): 802.3ad needs an LACP aggregation; balance-rr, balance-xor and
# broadcast a static one (EtherChannel); active-backup, balance-tlb and balance-alb none
# (independent access ports). The OVS bond_mode/lacp of each mode that needs a LAG:
BOND_MODES = {
    "802.3ad": ("balance-tcp", "active"), "4": ("balance-tcp", "active"),
    "balance-rr": ("balance-slb", "off"), "0": ("balance-slb", "off"),
    "balance-xor": ("balance-slb", "off"), "2": ("balance-slb", "off"),
    "broadcast": ("balance-slb", "off"), "3": ("balance-slb", "off"),
}
DEFAULT_BOND = ("balance-slb", "off")


def needs_lag(mode: str | None) -> bool:
    """Whether a node bond in Linux bonding ``mode`` (``802.3ad``, ``4``, ``active-backup``,
    ...; None is Ironic's default, ``active-backup``) needs a link aggregation on the switch.
    True for 802.3ad (LACP) and balance-rr, balance-xor, broadcast (static); False for
    active-backup, balance-tlb, balance-alb, whose member links the switch must treat as
    independent ports (bonding HOWTO, "Switch Configuration"; networking-generic-switch
    aggregates 802.3ad only)."""
    return str(mode) in BOND_MODES


class SwitchError(MetalplaneError):
    """The switch could not be reached or refused a change (HTTP 503); nothing was applied."""

    code = 503
    retryable = True


@dataclasses.dataclass(frozen=True)
class PortConfig:
    """The wanted state of one switch port.

    ``name``: the OVS port (the port_id of a local_link_connection, or a bond's name).
    ``vlan``: its access VLAN. ``members``: for a bond, the interfaces it bonds (they stop
    being ports of their own); empty for a plain port. ``unbond``: for a plain config of a
    former bond's members, the bond to dissolve first.
    """

    name: str
    vlan: int
    members: tuple[str, ...] = ()
    mode: str | None = None
    unbond: str | None = None


class _SetPorts(ovs_command.BaseCommand):  # type: ignore[misc]
    """One command that brings several switch ports to their wanted state."""

    def __init__(self, api: Any, bridge: str, configs: list[PortConfig]) -> None:
        super().__init__(api)
        self.bridge = bridge
        self.configs = configs

    def _port(self, name: str) -> Any:
        return idlutils.row_by_value(self.api.idl, "Port", "name", name, None)

    def _drop_port(self, br: Any, port: Any) -> None:
        for iface in port.interfaces:
            iface.delete()
        br.delvalue("ports", port)
        port.delete()

    def _new_port(self, txn: Any, br: Any, name: str, ifaces: list[str]) -> Any:
        port = txn.insert(self.api._tables["Port"])
        port.name = name
        rows = []
        for iname in ifaces:
            iface = txn.insert(self.api._tables["Interface"])
            iface.name = iname
            rows.append(iface)
        port.interfaces = rows
        br.addvalue("ports", port)
        return port

    def run_idl(self, txn: Any) -> None:
        br = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge)
        for cfg in self.configs:
            if cfg.unbond:
                old = self._port(cfg.unbond)
                if old is not None:
                    self._drop_port(br, old)
            if cfg.members:
                existing = self._port(cfg.name)
                current = sorted(i.name for i in existing.interfaces) if existing else []
                if existing is None or current != sorted(cfg.members):
                    for member in cfg.members:
                        row = self._port(member)
                        if row is not None:
                            self._drop_port(br, row)
                    if existing is not None:
                        self._drop_port(br, existing)
                    port = self._new_port(txn, br, cfg.name, list(cfg.members))
                else:
                    port = existing
                bond_mode, lacp = BOND_MODES.get(cfg.mode or "", DEFAULT_BOND)
                port.bond_mode = [bond_mode]
                port.lacp = [lacp]
                # a static aggregation (LACP off) takes broadcasts and multicasts on every
                # member, as a switch's EtherChannel does: the host sends them on any of its
                # links (ovs-vswitchd.conf.db(5): all-members-active; otherwise balance-slb
                # drops them on all but its active member)
                port.other_config = {"lacp-fallback-ab": "true",
                                     **({"all-members-active": "true"} if lacp == "off"
                                        else {})}
            else:
                port = self._port(cfg.name)
                if port is None:
                    if not cfg.unbond:
                        raise RuntimeError(f"switch port {cfg.name} does not exist on bridge "
                                           f"{self.bridge}")
                    port = self._new_port(txn, br, cfg.name, [cfg.name])
            port.tag = [cfg.vlan]
            port.vlan_mode = ["access"]


class _AddController(ovs_command.BaseCommand):  # type: ignore[misc]
    """Add a Controller row with ``target`` to the bridge unless one is there already."""

    def __init__(self, api: Any, bridge: str, target: str) -> None:
        super().__init__(api)
        self.bridge = bridge
        self.target = target

    def run_idl(self, txn: Any) -> None:
        br = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.bridge)
        if any(c.target == self.target for c in br.controller):
            return
        row = txn.insert(self.api._tables["Controller"])
        row.target = self.target
        br.addvalue("controller", row)


class _Idl(connection.OvsdbIdl):  # type: ignore[misc]
    """Seam on ovsdbapp's ``OvsdbIdl``: without its ``time.sleep(0)`` for every row of an
    update (a yield for eventlet's green threads; metalplane runs none).

    Relies on ovsdbapp and ``ovs`` (checked by tests/unit/test_library_seams.py):
    ``OvsdbIdl.cooperative_yield`` is the sleep, and ``ovs.db.idl.Idl`` calls
    ``self.cooperative_yield()`` once per row of an update, its own default being to do
    nothing (which this restores).
    Measured: client CPU per commit of 500 ports 46 → 38 ms (docs/benchmarks.md,
    "Library seams")."""

    def cooperative_yield(self) -> None:
        return None


class OVSSwitch:
    """A persistent OVSDB connection to one bridge.

    Raises :class:`SwitchError` when the OVSDB server cannot be reached.
    """

    def __init__(self, address: str, bridge: str, timeout: float = 10.0) -> None:
        self.address = address
        self.bridge = bridge
        try:
            helper = idlutils.get_schema_helper(address, "Open_vSwitch")
        except Exception as exc:
            raise SwitchError(f"cannot reach OVSDB at {address}: {exc}") from None
        for table in ("Open_vSwitch", "Bridge", "Port", "Interface", "Controller"):
            helper.register_table(table)
        idl = _Idl(address, helper)
        self._conn = connection.Connection(idl=idl, timeout=int(timeout))
        # ovsdbapp keeps the connection in a class attribute (Backend._ovsdb_connection):
        # every OvsdbIdl of a process would share the first connection ever made, i.e.
        # one switch. A class of its own per switch keeps each connection its own.
        api_class = type(f"OvsdbIdl_{bridge}", (impl_idl.OvsdbIdl,),
                         {"_ovsdb_connection": None})
        self.api = api_class(self._conn)
        try:
            self.api.br_exists(bridge).execute(check_error=True)
        except Exception as exc:
            self.close()
            raise SwitchError(f"cannot use OVSDB at {address}: {exc}") from None
        if not self.api.br_exists(bridge).execute(check_error=True):
            self.close()
            raise SwitchError(f"bridge {bridge!r} does not exist at {address}")

    def apply(self, configs: list[PortConfig]) -> None:
        """Apply ``configs`` in one OVSDB transaction: all or nothing.

        Raises :class:`SwitchError` naming what failed.
        """
        if not configs:
            return
        try:
            with self.api.transaction(check_error=True) as txn:
                txn.add(_SetPorts(self.api, self.bridge, configs))
        except SwitchError:
            raise
        except Exception as exc:
            raise SwitchError(f"switch {self.bridge} at {self.address} refused the change: "
                              f"{exc}") from None

    def observed(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Current ``{"vlan": int | None, "members": [...]}`` of each named port that exists."""
        out: dict[str, dict[str, Any]] = {}
        try:
            rows = self.api.db_list_rows("Port").execute(check_error=True)
        except Exception as exc:
            raise SwitchError(f"cannot read switch {self.bridge}: {exc}") from None
        wanted = set(names)
        for row in rows:
            if row.name in wanted:
                out[row.name] = {"vlan": row.tag[0] if row.tag else None,
                                 "members": sorted(i.name for i in row.interfaces)}
        return out

    def ofports(self, interfaces: list[str]) -> dict[str, int]:
        """``{interface name: OpenFlow port number}`` of each named interface that exists
        and has one (``Interface.ofport``, ovs-vswitchd.conf.db(5)). Raises
        :class:`SwitchError`."""
        try:
            rows = self.api.db_list_rows("Interface").execute(check_error=True)
        except Exception as exc:
            raise SwitchError(f"cannot read switch {self.bridge}: {exc}") from None
        wanted = set(interfaces)
        return {row.name: row.ofport[0] for row in rows
                if row.name in wanted and row.ofport and row.ofport[0] > 0}

    def controllers(self) -> list[str]:
        """The targets of the bridge's controllers. Raises :class:`SwitchError`."""
        try:
            return list(self.api.get_controller(self.bridge).execute(check_error=True))
        except Exception as exc:
            raise SwitchError(f"cannot read switch {self.bridge}: {exc}") from None

    def add_service_controller(self, target: str) -> None:
        """Make sure the bridge has a controller listening at ``target`` (a passive
        ``punix:``/``ptcp:`` target: a *service* controller, which leaves fail_mode and
        the flow tables alone; ovs-vswitchd.conf.db(5), Controller ``type``). Other
        controllers are kept. Raises :class:`SwitchError`."""
        try:
            with self.api.transaction(check_error=True) as txn:
                txn.add(_AddController(self.api, self.bridge, target))
        except Exception as exc:
            raise SwitchError(f"switch {self.bridge} at {self.address} refused the OpenFlow "
                              f"listener {target}: {exc}") from None

    def close(self) -> None:
        try:
            self._conn.stop(timeout=5)
        except Exception:
            LOG.debug("closing OVSDB connection to %s failed", self.address, exc_info=True)


@dataclasses.dataclass
class _Job:
    configs: list[PortConfig]
    future: concurrent.futures.Future[None]


class SwitchBatcher:
    """Coalesces concurrent change requests for one switch into few transactions.

    :meth:`submit` enqueues configs and returns a future; one writer thread takes
    everything queued, commits it as one transaction, and resolves every future. If the
    combined transaction fails, each request is retried alone so one bad request cannot
    fail the others.
    """

    def __init__(self, switch: OVSSwitch, max_batch: int = 1000, start: bool = True) -> None:
        self.switch = switch
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"ovs-{switch.bridge}",
                                        daemon=True)
        self.transactions = 0  # OVSDB transactions committed (or tried)
        if start:
            self._thread.start()

    def start(self) -> None:
        """Start the writer (for a batcher made with ``start=False``)."""
        self._thread.start()

    def submit(self, configs: list[PortConfig]) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Job(list(configs), fut))
        return fut

    def apply(self, configs: list[PortConfig], timeout: float = 60.0) -> None:
        """Submit and wait. Raises :class:`SwitchError`."""
        self.submit(configs).result(timeout=timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            size = len(job.configs)
            while size < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
                size += len(nxt.configs)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        merged: dict[str, PortConfig] = {}
        for j in jobs:  # later requests for the same port win
            for cfg in j.configs:
                merged[cfg.name] = cfg
        try:
            self.transactions += 1
            self.switch.apply(list(merged.values()))
        except SwitchError as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            for j in jobs:
                try:
                    self.transactions += 1
                    self.switch.apply(j.configs)
                    j.future.set_result(None)
                except SwitchError as exc:
                    j.future.set_exception(exc)
            return
        for j in jobs:
            j.future.set_result(None)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.switch.close()

