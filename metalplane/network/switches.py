"""Registered top-of-rack switches and the connections to them.

A switch is registered with its ``switch_id`` (the MAC or OpenFlow datapath ID a port's
``local_link_connection.switch_id`` names), its ``name`` (``switch_info``), its driver
(``ovs``), its OVSDB address and bridge. Registration connects once to check the address
and bridge work, so a typo is a 400 at once, not a failed binding later. Connections are
kept, one :class:`~metalplane.network.ovs.SwitchBatcher` per switch, and reopened after
a failure.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

from metalplane.common.exceptions import Conflict, Invalid
from metalplane.db import api as db_api
from metalplane.db import network as db_net
from metalplane.db.engine import Database
from metalplane.db.models import Switch, SwitchPortBinding
from metalplane.network.ovs import OVSSwitch, PortConfig, SwitchBatcher, SwitchError

__all__ = ["SwitchManager"]

LOG = logging.getLogger(__name__)
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_DPID = re.compile(r"^(0x)?[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9\-._]+$")
SWITCH_FIELDS = ("name", "switch_id", "driver", "address", "bridge", "physical_networks")


def normalize_switch_id(value: Any) -> str:
    sid = str(value or "").strip().lower().replace("-", ":")
    if not (_MAC.match(sid) or _DPID.match(sid)):
        raise Invalid(f"switch_id '{value}' must be a MAC address or an OpenFlow datapath "
                      "ID (16 hex digits)")
    return sid


class SwitchManager:
    """CRUD of switches, lookup by ``switch_id``, and applying port configs to them."""

    def __init__(self, db: Database, parking_vlan: int) -> None:
        self.db = db
        self.parking_vlan = parking_vlan
        self._batchers: dict[str, SwitchBatcher] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        # more drift checks run by sync() on each reachable switch (the ToR ACL's): each
        # repairs what differs and returns one line per repair; raises SwitchError
        self.drift_checks: list[Callable[[Switch], list[str]]] = []

    # ---------------------------------------------------------------- registry
    def create(self, body: dict[str, Any], check: bool = True) -> Switch:
        """Register a switch. Raises :class:`Invalid` for bad fields or an unreachable
        OVSDB address/bridge, :class:`Conflict` for a duplicate name or switch_id."""
        unknown = sorted(set(body) - set(SWITCH_FIELDS))
        if unknown:
            raise Invalid(f"Unknown attribute for switch: {', '.join(unknown)}")
        name = body.get("name")
        if not name or not _NAME.match(str(name)):
            raise Invalid("name (the switch_info of local_link_connection) is required: "
                          "letters, digits, - . _")
        driver = body.get("driver") or "ovs"
        if driver != "ovs":
            raise Invalid(f"driver '{driver}' is not supported; supported: ovs")
        address = str(body.get("address") or "")
        if not address.startswith(("unix:", "tcp:", "ssl:")):
            raise Invalid("address must be an OVSDB address: unix:/path, tcp:host:port or "
                          "ssl:host:port")
        bridge = str(body.get("bridge") or "")
        if not bridge:
            raise Invalid("bridge is required for an ovs switch")
        physnets = body.get("physical_networks") or []
        if not isinstance(physnets, list) or not all(isinstance(p, str) for p in physnets):
            raise Invalid("physical_networks must be a list of names")
        values = {"id": str(uuidlib.uuid4()), "name": name,
                  "switch_id": normalize_switch_id(body.get("switch_id")), "driver": driver,
                  "address": address, "bridge": bridge, "physical_networks": physnets}
        if check:
            try:
                OVSSwitch(address, bridge).close()
            except SwitchError as exc:
                raise Invalid(f"switch {name}: {exc.message}") from None
        return db_net.create_switch(self.db, values)

    def list_switches(self) -> list[Switch]:
        return db_net.list_switches(self.db)

    def get(self, ident: str) -> Switch:
        """The switch whose id, name or switch_id is ``ident``. Raises :class:`NotFound`."""
        return db_net.switch_by_ident(self.db, ident)

    @contextlib.contextmanager
    def cached_lookups(self) -> Iterator[None]:
        """Within the block, this thread's :meth:`by_switch_id` answers each switch_id from
        one read (a batch of bindings names the same few switches many times)."""
        outer = getattr(self._local, "memo", None)
        self._local.memo = {} if outer is None else outer
        try:
            yield
        finally:
            self._local.memo = outer

    def by_switch_id(self, switch_id: str) -> Switch | None:
        key = str(switch_id).lower()
        memo: dict[str, Switch | None] | None = getattr(self._local, "memo", None)
        if memo is not None and key in memo:
            return memo[key]
        rows = db_api.rows_where(self.db, Switch, switch_id=key)
        sw: Switch | None = rows[0] if rows else None
        if memo is not None:
            memo[key] = sw
        return sw

    def delete(self, ident: str) -> None:
        sw = self.get(ident)
        used = db_net.switch_port_in_use(self.db, sw.id)
        if used is not None:
            raise Conflict(f"switch {sw.name} still has bound ports (e.g. {used.port_name}); "
                           "detach them first")
        db_net.delete_switch(self.db, sw.id)
        self._forget(sw)

    def bindings(self, switch_uuid: str | None = None) -> list[SwitchPortBinding]:
        return db_net.list_switch_port_bindings(self.db, switch_uuid)

    # ---------------------------------------------------------------- the datapath
    def batcher(self, sw: Switch) -> SwitchBatcher:
        """The (lazily connected) batcher of ``sw``. Raises :class:`SwitchError`."""
        with self._lock:
            b = self._batchers.get(sw.id)
            if b is None:
                b = SwitchBatcher(OVSSwitch(sw.address, sw.bridge))
                self._batchers[sw.id] = b
            return b

    def _forget(self, sw: Switch) -> None:
        with self._lock:
            b = self._batchers.pop(sw.id, None)
        if b is not None:
            b.close()

    def apply(self, sw: Switch, configs: list[PortConfig],
              owners: dict[str, str | None]) -> None:
        """Apply ``configs`` to ``sw`` in one transaction and record them as the wanted
        state (``owners`` maps a port name to the network port that uses it, None when
        parked). Raises :class:`SwitchError`; then nothing was applied or recorded."""
        try:
            self.batcher(sw).apply(configs)
        except SwitchError:
            self._forget(sw)  # the next call reconnects
            raise
        # one transaction of Core statements: dissolved bonds and ports that became bond
        # members go, the rest is one executemany UPDATE and one INSERT
        db_net.record_switch_ports(
            self.db, sw.id,
            [([cfg.unbond] if cfg.unbond else []) + list(cfg.members) for cfg in configs],
            [{"vlan": cfg.vlan, "bond_members": list(cfg.members), "bond_mode": cfg.mode,
              "network_port_id": owners.get(cfg.name), "port_name": cfg.name}
             for cfg in configs])

    def wanted(self, sw: Switch, port_name: str) -> SwitchPortBinding | None:
        return self.wanted_many(sw, [port_name]).get(port_name)

    def wanted_many(self, sw: Switch, names: list[str]) -> dict[str, SwitchPortBinding]:
        """What metalplane last set on each named port of ``sw`` (one query)."""
        return {r.port_name: r for r in db_api.rows_where(
            self.db, SwitchPortBinding, switch_uuid=sw.id, port_name=list(names))}

    def observed(self, sw: Switch) -> dict[str, dict[str, Any]]:
        """What the switch says of every port metalplane manages on it."""
        names = [b.port_name for b in self.bindings(sw.id)]
        try:
            return self.batcher(sw).switch.observed(names)
        except SwitchError:
            self._forget(sw)
            raise

    def sync(self, repair: bool = True) -> list[str]:
        """Drift repair: put back every managed port whose VLAN or bond differs from what
        was set, after the :attr:`drift_checks` (the ToR ACL flows) of its switch. Returns
        one line per repair (also logged). Unreachable switches are logged and skipped.
        Without ``repair``, only the VLANs and bonds are compared, nothing is changed and
        the lines say what would be restored."""
        repairs: list[str] = []
        for sw in self.list_switches():
            try:
                seen = self.observed(sw)
            except SwitchError as exc:
                LOG.warning("drift check of switch %s skipped: %s", sw.name, exc.message)
                continue
            for check in self.drift_checks if repair else []:
                try:
                    repairs.extend(check(sw))
                except SwitchError as exc:
                    LOG.error("drift repair on switch %s failed: %s", sw.name, exc.message)
            fixes: list[PortConfig] = []
            owners: dict[str, str | None] = {}
            for b in self.bindings(sw.id):
                now = seen.get(b.port_name)
                members = sorted(b.bond_members or [])
                if now is not None and now["vlan"] == b.vlan and (
                        not members or now["members"] == members):
                    continue
                before = "missing" if now is None else f"VLAN {now['vlan']}"
                line = (f"switch {sw.name} port {b.port_name}: {before}, "
                        f"{'restored' if repair else 'would restore'} VLAN {b.vlan}"
                        + (f" on bond of {', '.join(members)}" if members else ""))
                fixes.append(PortConfig(b.port_name, b.vlan or self.parking_vlan,
                                        tuple(members), b.bond_mode))
                owners[b.port_name] = b.network_port_id
                repairs.append(line)
            if fixes and repair:
                try:
                    self.apply(sw, fixes, owners)
                except SwitchError as exc:
                    LOG.error("drift repair on switch %s failed: %s", sw.name, exc.message)
                    continue
                for line in repairs[-len(fixes):]:
                    LOG.warning("drift repaired: %s", line)
        return repairs

    def close(self) -> None:
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for b in batchers:
            b.close()
