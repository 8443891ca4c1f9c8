"""Security groups enforced on the top-of-rack Open vSwitch: a ToR ACL per bound switch port.

The ``ovs`` backend puts a bare-metal port on a tenant VLAN by setting the access VLAN of
its switch port; this module makes that switch port also enforce the Neutron security
groups of the network port, as OpenFlow rules on the same bridge (what
networking-generic-switch's ACL support does on hardware switches):

- traffic *leaving* the node (Neutron ``egress``) is caught in table 0 by its ``in_port``
  (each member interface of a bond); traffic *to* the node (``ingress``) by its
  destination MAC (the network port's ``mac_address`` and the addresses of the bare-metal
  ports and portgroup wired to that switch port), after the sender's own egress check, so
  two filtered nodes on one VLAN are each filtered;
- stateful groups use conntrack (``ct()``, one zone per switch port; the userspace
  datapath has its own conntrack): replies and related packets of allowed connections
  pass, new connections need a rule, invalid packets drop. A port's zone is
  :data:`ZONE_BASE` + its OpenFlow port number: conntrack zones are shared by every
  bridge of one datapath, and an ovn-controller on the same ovs-vswitchd (the lab's
  gateway chassis) hands out zones from 1 upwards to its logical ports and routers; a
  shared zone let OVN's SNAT find the ToR's entry for the same connection and skip NAT;
- IPv4/IPv6 matching no rule is dropped; ARP (and any other non-IP frame), DHCP from the
  node's client and to it from a server, and IPv6 neighbour discovery / MLD always pass;
  broadcast and multicast IP to the node is not filtered (its MAC is not the destination);
- what is allowed goes on with the bridge's ``NORMAL`` action (MAC learning, access VLANs).

Every flow carries a cookie of its switch port (:func:`cookie_of`); a change replaces a
port's flows in one OpenFlow bundle (all or nothing), so there is never a moment with the
port's old flows gone and the new ones missing. metalplane reaches a switch's OpenFlow
through a passive *service* controller it adds over OVSDB (:func:`openflow_address`) and
``ovs-ofctl`` (Debian's openvswitch-common). Sources: ovs-fields(7) (``ct_state``,
``ct_zone``, ``tp_dst`` masks), ovs-actions(7) (``ct``, ``resubmit``, ``NORMAL``),
ovs-ofctl(8) (``bundle``, ``dump-flows``, ``diff-flows``), ovs-vswitchd.conf.db(5)
(Controller ``type``), Neutron's OVS firewall driver (the rule shapes).

This module must not change VLANs (``switches`` does) nor decide bindings (``mech``); it
reads the wanted state from the database each time, so it keeps no state to lose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.models import (
    IPAllocation,
    NetworkPort,
    Port,
    Portgroup,
    SecurityGroup,
    SecurityGroupRule,
    Switch,
    SwitchPortBinding,
)
from metalplane.network.ovs import SwitchError
from metalplane.network.switches import SwitchManager

if TYPE_CHECKING:
    from metalplane.network.mech import Binding

__all__ = ["AclRule", "Ofctl", "PortAcl", "TorAcl", "cookie_of", "openflow_address",
           "port_flows", "port_masks", "rule_matches"]

LOG = logging.getLogger(__name__)

COOKIE_BASE = 0x4D50 << 48  # "MP": every flow of this module; the low 48 bits name the port
COOKIE_MASK = 0xFFFF << 48
ZONE_BASE = 0xF000  # conntrack zones 61440..65535, above those ovn-controller hands out
TABLE_EGRESS = 10  # from the node, after ct() in its zone
TABLE_TO_NODE = 11  # allowed so far: on to the destination's ingress check, else NORMAL
TABLE_INGRESS = 12  # to the node, after ct() in its zone
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}
_PORTS = (6, 17, 132)  # protocols whose port_range is a TCP/UDP/SCTP port range
# ICMPv6 that IPv6 needs to work at all (RFC 4861 ND, RFC 3810 MLD), always let through as
# ARP is: MLD query/report/done 130-132, RS 133, NS 135, NA 136, MLDv2 report 143; RA 134
# only towards the node.
_ND_OUT = (130, 131, 132, 133, 135, 136, 143)
_ND_IN = (*_ND_OUT, 134)
_ETH = {"IPv4": "ip", "IPv6": "ipv6"}
_COOKIE_RE = re.compile(r"cookie=(0x[0-9a-f]+)")


def cookie_of(port_name: str) -> int:
    """The cookie of every ACL flow of switch port ``port_name``: ``0x4d50`` in the top 16
    bits, 48 bits of SHA-256 of the name below (never 0, which is the shared flows')."""
    low = int(hashlib.sha256(port_name.encode()).hexdigest()[:12], 16)
    return COOKIE_BASE | (low or 1)


def port_masks(lo: int, hi: int) -> list[str]:
    """``lo``..``hi`` (inclusive, 0-65535) as few ``value/mask`` matches as cover it
    exactly (``"80"`` for one port, ``"0x50/0xfff0"`` for 80-95); ovs-fields(7) allows a
    bitwise mask on ``tp_src``/``tp_dst``."""
    out: list[str] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append(str(lo) if size == 1 else f"{lo:#x}/{0xFFFF ^ (size - 1):#x}")
        lo += size
    return out


@dataclasses.dataclass(frozen=True)
class AclRule:
    """One security group rule, resolved: ``direction`` ``ingress`` (to the node) or
    ``egress``, ``ethertype`` ``IPv4``/``IPv6``, ``protocol`` as an IP protocol number
    (None: any), ``port_min``/``port_max`` (a port range for TCP/UDP/SCTP, ICMP type and
    code for ICMP), ``remotes`` the CIDRs of the other end (None: any; empty: nothing,
    e.g. a remote group with no addresses)."""

    direction: str
    ethertype: str
    protocol: int | None = None
    port_min: int | None = None
    port_max: int | None = None
    remotes: tuple[str, ...] | None = None

    @classmethod
    def from_row(cls, row: SecurityGroupRule,
                 group_ips: Callable[[str], list[str]]) -> AclRule:
        """From a stored rule; ``group_ips(group_id)`` gives the fixed IPs of the ports of
        a ``remote_group_id``."""
        proto: int | None = None
        if row.protocol not in (None, "", "0", "any"):
            name = str(row.protocol).lower()
            proto = PROTOCOLS[name] if name in PROTOCOLS else int(name)
            if proto == 1 and row.ethertype == "IPv6":  # Neutron: icmp on IPv6 is ICMPv6
                proto = 58
        remotes: tuple[str, ...] | None = None
        if row.remote_group_id:
            version = 4 if row.ethertype == "IPv4" else 6
            remotes = tuple(sorted({ip for ip in group_ips(row.remote_group_id)
                                    if ipaddress.ip_address(ip).version == version}))
        elif row.remote_ip_prefix and ipaddress.ip_network(row.remote_ip_prefix).prefixlen:
            remotes = (str(row.remote_ip_prefix),)
        return cls(row.direction, row.ethertype, proto, row.port_range_min,
                   row.port_range_max, remotes)


def rule_matches(rule: AclRule) -> list[str]:
    """The OpenFlow matches (ovs-fields(7) syntax, comma-separated) of traffic ``rule``
    allows, seen at the node's switch port: one per remote address and port mask. Empty
    when it allows nothing (a remote group without addresses)."""
    eth = _ETH[rule.ethertype]
    proto = "" if rule.protocol is None else f",nw_proto={rule.protocol}"
    l4 = [""]
    if rule.protocol in _PORTS and (rule.port_min, rule.port_max) not in (
            (None, None), (1, 65535), (0, 65535)):
        lo = rule.port_min if rule.port_min is not None else 0
        hi = rule.port_max if rule.port_max is not None else lo
        l4 = [f",tp_dst={m}" for m in port_masks(lo, hi)]
    elif rule.protocol in (1, 58) and rule.port_min is not None:
        icmp = "icmp" if rule.protocol == 1 else "icmpv6"
        l4 = [f",{icmp}_type={rule.port_min}"
              + ("" if rule.port_max is None else f",{icmp}_code={rule.port_max}")]
    if rule.remotes is None:
        peers = [""]
    else:
        side = "src" if rule.direction == "ingress" else "dst"
        field = f"nw_{side}" if eth == "ip" else f"ipv6_{side}"
        peers = [f",{field}={r}" for r in rule.remotes]
    return [f"{eth}{proto}{p}{x}" for p in peers for x in l4]


@dataclasses.dataclass(frozen=True)
class PortAcl:
    """The ACL of one switch port: ``ofports`` its (member) interfaces' OpenFlow port
    numbers, ``macs`` the node's addresses behind it, ``zone`` its conntrack zone,
    ``stateful`` whether replies pass by themselves, ``rules`` the union of its groups'."""

    port_name: str
    ofports: tuple[int, ...]
    macs: tuple[str, ...]
    zone: int
    stateful: bool
    rules: tuple[AclRule, ...]

    @property
    def cookie(self) -> int:
        return cookie_of(self.port_name)


def zone_of(switch: str, ofport: int) -> int:
    """The conntrack zone (16 bits, ovs-fields(7) ``ct_zone``) of the switch port numbered
    ``ofport``: :data:`ZONE_BASE` + ``ofport``. Raises :class:`SwitchError` for a port
    number of 4096 or more, which has no zone in that range."""
    if not 0 < ofport < 0x10000 - ZONE_BASE:
        raise SwitchError(f"switch {switch}: OpenFlow port {ofport} is beyond the "
                          f"{0x10000 - ZONE_BASE - 1} ports a ToR ACL can filter")
    return ZONE_BASE + ofport


def shared_flows() -> list[str]:
    """The flows every filtered switch shares (cookie ``0x4d50 << 48``): IP goes through
    the to-node dispatch table, which sends what no filtered node receives to NORMAL; the
    two check tables drop what no rule allowed."""
    c = f"cookie={COOKIE_BASE:#x}"
    return [f"{c},table=0,priority=1,ip,actions=resubmit(,{TABLE_TO_NODE})",
            f"{c},table=0,priority=1,ipv6,actions=resubmit(,{TABLE_TO_NODE})",
            f"{c},table={TABLE_TO_NODE},priority=0,actions=NORMAL",
            f"{c},table={TABLE_EGRESS},priority=0,actions=drop",
            f"{c},table={TABLE_INGRESS},priority=0,actions=drop"]


def port_flows(acl: PortAcl) -> list[str]:
    """The flows (ovs-ofctl(8) flow syntax, ``add-flow`` form) enforcing ``acl``; see the
    module docstring for the pipeline."""
    c, z = f"cookie={acl.cookie:#x}", acl.zone
    egress, ingress = f"table={TABLE_EGRESS}", f"table={TABLE_INGRESS}"
    after_egress, deliver = f"resubmit(,{TABLE_TO_NODE})", "NORMAL"
    flows: list[str] = []
    for eth in ("ip", "ipv6"):
        flows += [f"{c},table=0,priority=100,in_port={p},{eth},"
                  f"actions=ct(table={TABLE_EGRESS},zone={z})" for p in acl.ofports]
        flows += [f"{c},table={TABLE_TO_NODE},priority=100,dl_dst={m},{eth},"
                  f"actions=ct(table={TABLE_INGRESS},zone={z})" for m in acl.macs]
    mine = f"priority={{}},ct_zone={z}"
    for table, action in ((egress, after_egress), (ingress, deliver)):
        if acl.stateful:
            flows += [f"{c},{table},{mine.format(70)},ct_state=+est-rel-inv+trk,"
                      f"actions={action}",
                      f"{c},{table},{mine.format(70)},ct_state=+rel-inv+trk,actions={action}",
                      f"{c},{table},{mine.format(60)},ct_state=+inv+trk,actions=drop"]
    # DHCP client <-> server (RFC 2131 ports 68/67, RFC 8415 546/547) and ND/MLD
    for table, action, matches in (
            (egress, after_egress, ["udp,tp_src=68,tp_dst=67", "udp6,tp_src=546,tp_dst=547",
                                    *(f"icmp6,icmp_type={t}" for t in _ND_OUT)]),
            (ingress, deliver, ["udp,tp_src=67,tp_dst=68", "udp6,tp_src=547,tp_dst=546",
                                *(f"icmp6,icmp_type={t}" for t in _ND_IN)])):
        flows += [f"{c},{table},{mine.format(65)},{m},actions={action}" for m in matches]
    new = ",ct_state=+new+trk" if acl.stateful else ""
    commit = f"ct(commit,zone={z})," if acl.stateful else ""
    seen: set[str] = set()
    for rule in acl.rules:
        table, action = ((ingress, deliver) if rule.direction == "ingress"
                         else (egress, after_egress))
        for match in rule_matches(rule):
            flow = f"{c},{table},{mine.format(50)}{new},{match},actions={commit}{action}"
            if flow not in seen:
                seen.add(flow)
                flows.append(flow)
    return flows


def openflow_address(sw: Switch) -> tuple[str, str]:
    """``(listen, connect)``: the passive OpenFlow target metalplane adds to ``sw``'s
    bridge and the address ovs-ofctl connects to. OVSDB ``unix:DIR/db.sock`` gives
    ``punix:DIR/<bridge>.mpof`` (ovs-vswitchd accepts unix sockets only in its run
    directory, where its database socket usually is); ``tcp:HOST:PORT`` gives
    ``ptcp:PORT+1:HOST``. Raises :class:`SwitchError` for ``ssl:`` (no OpenFlow
    credentials are configured)."""
    kind, _, rest = sw.address.partition(":")
    if kind == "unix":
        path = os.path.join(os.path.dirname(rest), f"{sw.bridge}.mpof")
        return f"punix:{path}", f"unix:{path}"
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return f"ptcp:{int(port) + 1}:{host}", f"tcp:{host}:{int(port) + 1}"
    raise SwitchError(f"switch {sw.name}: security groups on the switch need an OVSDB "
                      f"address unix: or tcp: (not {kind}:) to derive its OpenFlow listener")


class Ofctl:
    """``ovs-ofctl`` (OpenFlow 1.4, for bundles) against one OpenFlow address; the I/O
    seam of this module (tests may pass another). Every method raises
    :class:`SwitchError` with ovs-ofctl's message."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout

    def _run(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        cmd = ["ovs-ofctl", "-O", "OpenFlow14", f"--timeout={int(self.timeout)}", *args]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout + 5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SwitchError(f"ovs-ofctl {args[0]} {self.address}: {exc}") from None
        if r.returncode not in ok:
            raise SwitchError(f"ovs-ofctl {args[0]} {self.address} failed: "
                              f"{r.stderr.strip() or r.returncode}")
        return r.returncode, r.stdout

    def bundle(self, lines: list[str]) -> None:
        """Apply ``lines`` (``flow add …`` / ``flow delete …``) as one atomic bundle."""
        with _text_file(lines) as path:
            self._run("bundle", self.address, path)

    def dump(self) -> list[str]:
        """This module's flows on the switch (all cookies under ``0x4d50 << 48``), in
        ``dump-flows --no-stats`` form."""
        _, out = self._run("--no-stats", "dump-flows", self.address,
                           f"cookie={COOKIE_BASE:#x}/{COOKIE_MASK:#x}")
        return [line.strip() for line in out.splitlines()
                if line.strip() and not line.startswith(("OFPST", "NXST"))]

    def differing_cookies(self, current: list[str], wanted: list[str]) -> set[int]:
        """Cookies of the flows that differ between two flow lists, each parsed and
        compared as ovs-ofctl does (``diff-flows``), so the text form does not matter."""
        with _text_file(current) as a, _text_file(wanted) as b:
            rc, out = self._run("diff-flows", a, b, ok=(0, 2))
        if rc == 0:
            return set()
        cookies = {int(m.group(1), 16) for m in _COOKIE_RE.finditer(out)}
        # a flow without cookie= in the diff has cookie 0: not ours, never expected
        return cookies or {COOKIE_BASE}


@contextlib.contextmanager
def _text_file(lines: list[str]) -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="metalplane-of-", suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        yield path
    finally:
        os.unlink(path)


@dataclasses.dataclass(frozen=True)
class _Place:
    """A switch port a network port is bound to: ``members`` for a bond."""

    switch: Switch
    port_name: str
    members: tuple[str, ...] = ()

    @property
    def interfaces(self) -> tuple[str, ...]:
        return self.members or (self.port_name,)


class TorAcl:
    """Keeps the ToR ACLs of the ``ovs`` backend's bound ports equal to their security
    groups. ``ofctl(address)`` makes the OpenFlow client (default :class:`Ofctl`).
    Registers :meth:`repair` as a drift check of ``switches``. Not ``enabled``
    (``tor_acl`` off), every hook does nothing."""

    def __init__(self, db: Database, switches: SwitchManager,
                 ofctl: Callable[[str], Ofctl] = Ofctl, enabled: bool = True) -> None:
        self.enabled = enabled
        self.db = db
        self.switches = switches
        self._ofctl = ofctl
        self._listening: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}  # one per switch: compute + apply
        self._locks_lock = threading.Lock()
        if enabled:
            switches.drift_checks.append(self.repair)

    # ---------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def binding(self, pairs: list[tuple[NetworkPort, Binding]]) -> Iterator[None]:
        """Around the VLAN change of a bind: the ACLs go in first (matching ``in_port`` and
        the MACs, harmless while the port is still parked), so the port never reaches its
        VLAN unfiltered; they are checked again after (the interfaces of a bond made or
        dissolved have been renumbered; a dissolved bond's flows go) and removed if the VLAN
        change raised. Raises :class:`SwitchError`."""
        places = [(port, place) for port, b in pairs if b.driver == "ovs"
                  for place in _places(b) if port.security_groups] if self.enabled else []
        if not places:
            yield
            return
        self._apply(places)
        try:
            yield
        except BaseException:
            with contextlib.suppress(SwitchError):
                self._apply([(None, place) for _, place in places])
            raise
        # a bond made or dissolved by this change has new interface rows (new ofports),
        # and a dissolved bond's own flows go
        reshaped = {id(b) for port, b in pairs if b.driver == "ovs" and port.security_groups
                    and any(c.members or c.unbond for _, cfgs in b.changes.values()
                            for c in cfgs)}
        again: list[tuple[NetworkPort | None, _Place]] = [
            (port, place) for port, b in pairs if id(b) in reshaped for place in _places(b)]
        again += [(None, _Place(sw, c.unbond)) for _, b in pairs if id(b) in reshaped
                  for sw, cfgs in b.changes.values() for c in cfgs if c.unbond]
        if again:
            self._apply(list(dict.fromkeys(again)))

    @contextlib.contextmanager
    def unbinding(self, ports: list[NetworkPort], bindings: list[Binding]) -> Iterator[None]:
        """Around the VLAN change of an unbind: the ACLs of the ports' switch ports (and of
        a dissolved bond) go after the switch ports are parked. Raises
        :class:`SwitchError`."""
        yield
        if self.enabled and any(p.security_groups for p in ports):
            self._apply([(None, place) for b in bindings if b.driver == "ovs"
                         for place in _places(b, released=True)])

    def ports_changed(self, port_ids: list[str], groups: Iterable[str]) -> None:
        """After ports' ``security_groups`` or fixed IPs changed (or ports were created or
        deleted): re-apply the ACLs of those ports and of every bound port that is in
        ``groups`` (old and new) or whose rules name one of them as ``remote_group_id``.
        A switch that cannot be reached is logged (drift repair catches up)."""
        self._refresh(set(port_ids), set(groups))

    def groups_changed(self, group_ids: Iterable[str]) -> None:
        """After rules of ``group_ids`` were created or deleted (or a group deleted):
        re-apply every bound port in them or referring to them."""
        self._refresh(set(), set(group_ids))

    def repair(self, sw: Switch) -> list[str]:
        """Drift repair of ``sw``: compare its ACL flows with what the database wants
        (``diff-flows``) and replace the flows of every switch port that differs, removing
        those of ports that should have none. One line per repair. Raises
        :class:`SwitchError`."""
        wanted = self._bound_on(sw)
        if not wanted and not self._ever_filtered(sw):
            return []  # no OpenFlow listener, no call: a switch without ACLs costs nothing
        ofctl = self._client(sw)
        with self._lock(sw):
            acls = self._acls(sw, [(p, place) for p, place in wanted])
            want_flows = (shared_flows() if acls else []) + [
                f for a in acls.values() for f in port_flows(a)]
            differ = ofctl.differing_cookies(ofctl.dump(), want_flows)
            if not differ:
                return []
            by_cookie = {a.cookie: a for a in acls.values()}
            lines, bundle = [], []
            for cookie in sorted(differ):
                bundle.append(f"flow delete cookie={cookie:#x}/-1")
                acl = by_cookie.get(cookie)
                if cookie == COOKIE_BASE:
                    bundle += [f"flow add {f}" for f in shared_flows()] if acls else []
                    lines.append(f"switch {sw.name}: shared ACL flows "
                                 + ("restored" if acls else "removed"))
                elif acl is not None:
                    bundle += [f"flow add {f}" for f in port_flows(acl)]
                    lines.append(f"switch {sw.name} port {acl.port_name}: ACL flows differed, "
                                 "restored")
                else:
                    lines.append(f"switch {sw.name}: ACL flows of cookie {cookie:#x} "
                                 "(no port wants them) removed")
            ofctl.bundle(bundle)
        for line in lines:
            LOG.warning("drift repaired: %s", line)
        return lines

    # ---------------------------------------------------------------- the work
    def _refresh(self, port_ids: set[str], groups: set[str]) -> None:
        if not self.enabled or (not port_ids and not groups):
            return
        rules = db_api.rows_where(self.db, SecurityGroupRule)
        groups |= {r.security_group_id for r in rules if r.remote_group_id in groups}
        if not groups and not port_ids:
            return
        ports = {p.id: p for p in db_api.rows_where(self.db, NetworkPort)}
        wanted = port_ids | {pid for pid, p in ports.items()
                             if groups & set(p.security_groups or [])}
        rows = db_api.rows_where(self.db, SwitchPortBinding,
                                 network_port_id=sorted(wanted)) if wanted else []
        by_switch: dict[str, list[tuple[NetworkPort | None, _Place]]] = defaultdict(list)
        for row in rows:
            port = ports.get(row.network_port_id or "")
            if row.network_port_id in port_ids and port is None:
                continue  # a deleted port: its unbind removed its flows
            if port is not None and port.binding_vif_details.get("driver") not in (None, "ovs"):
                continue
            by_switch[row.switch_uuid].append((port, _Place(
                self.switches.get(row.switch_uuid), row.port_name,
                tuple(sorted(row.bond_members or [])))))
        for entries in by_switch.values():
            try:
                self._apply(entries)
            except SwitchError as exc:
                LOG.error("security groups not re-applied on switch %s (drift repair will "
                          "retry): %s", entries[0][1].switch.name, exc.message)

    def _apply(self, entries: Sequence[tuple[NetworkPort | None, _Place]]) -> None:
        """Replace the ACL of each switch port with its network port's (None or no groups:
        none), one bundle per switch."""
        per_switch: dict[str, list[tuple[NetworkPort | None, _Place]]] = defaultdict(list)
        for entry in entries:
            per_switch[entry[1].switch.id].append(entry)
        for items in per_switch.values():
            sw = items[0][1].switch
            ofctl = self._client(sw)
            with self._lock(sw):
                acls = self._acls(sw, [(p, pl) for p, pl in items
                                       if p is not None and p.security_groups])
                bundle: list[str] = []
                if acls:
                    bundle += [f"flow add {f}" for f in shared_flows()]
                for _, place in items:
                    bundle.append(f"flow delete cookie={cookie_of(place.port_name):#x}/-1")
                    acl = acls.get(place.port_name)
                    if acl is not None:
                        bundle += [f"flow add {f}" for f in port_flows(acl)]
                ofctl.bundle(bundle)
            LOG.info("switch %s: ACL of port(s) %s set (%s)", sw.name,
                     ", ".join(pl.port_name for _, pl in items),
                     ", ".join(f"{a.port_name}: {len(a.rules)} rule(s)" for a in acls.values())
                     or "none filtered")

    def _acls(self, sw: Switch, items: list[tuple[NetworkPort, _Place]]) -> dict[str, PortAcl]:
        """The :class:`PortAcl` of each filtered switch port among ``items``."""
        items = [(p, pl) for p, pl in items if p.security_groups]
        if not items:
            return {}
        group_ids = {g for p, _ in items for g in p.security_groups}
        groups = {g.id: g for g in db_api.rows_where(self.db, SecurityGroup,
                                                     id=sorted(group_ids))}
        rules = db_api.rows_where(self.db, SecurityGroupRule,
                                  security_group_id=sorted(group_ids))
        member_ips = self._group_ips({r.remote_group_id for r in rules if r.remote_group_id})
        ofports = self.switches.batcher(sw).switch.ofports(
            sorted({i for _, pl in items for i in pl.interfaces}))
        macs = self._wired_macs(sw)
        out: dict[str, PortAcl] = {}
        for port, place in items:
            nums = tuple(sorted(ofports[i] for i in place.interfaces if i in ofports))
            if not nums:
                raise SwitchError(f"switch {sw.name} has no interface {', '.join(place.interfaces)}"
                                  " to filter")
            mine = set(port.security_groups)
            out[place.port_name] = PortAcl(
                port_name=place.port_name, ofports=nums,
                macs=tuple(sorted({port.mac_address.lower()} | {
                    m for i in place.interfaces for m in macs.get(i, ())})),
                zone=zone_of(sw.name, nums[0]),
                stateful=any(groups[g].stateful for g in mine if g in groups),
                rules=tuple(AclRule.from_row(r, lambda g: member_ips.get(g, []))
                            for r in rules if r.security_group_id in mine))
        return out

    def _group_ips(self, groups: set[str]) -> dict[str, list[str]]:
        """``{group id: fixed IPs of its ports}``."""
        if not groups:
            return {}
        members: dict[str, list[str]] = defaultdict(list)
        owner = defaultdict(list)
        for p in db_api.rows_where(self.db, NetworkPort):
            for g in groups & set(p.security_groups or []):
                owner[p.id].append(g)
        if owner:
            for a in db_api.rows_where(self.db, IPAllocation, port_id=sorted(owner)):
                for g in owner[a.port_id]:
                    members[g].append(a.ip_address)
        return members

    def _wired_macs(self, sw: Switch) -> dict[str, set[str]]:
        """``{switch port: MACs}`` of the bare-metal ports whose local_link_connection
        names a port of ``sw``, and of their portgroups: the node's NICs behind it."""
        groups = {g.id: g.address for g in db_api.rows_where(self.db, Portgroup)}
        out: dict[str, set[str]] = defaultdict(set)
        for p in db_api.rows_where(self.db, Port):
            llc = p.local_link_connection or {}
            if str(llc.get("switch_id") or "").lower() != sw.switch_id or not llc.get("port_id"):
                continue
            out[str(llc["port_id"])].add(p.address.lower())
            if p.portgroup_id is not None and groups.get(p.portgroup_id):
                out[str(llc["port_id"])].add(str(groups[p.portgroup_id]).lower())
        return out

    def _bound_on(self, sw: Switch) -> list[tuple[NetworkPort, _Place]]:
        """The filtered network ports bound on ``sw`` with their switch ports."""
        rows = [r for r in self.switches.bindings(sw.id) if r.network_port_id]
        if not rows:
            return []
        ports = {p.id: p for p in db_api.rows_where(
            self.db, NetworkPort, id=sorted({r.network_port_id for r in rows}))}
        out = []
        for r in rows:
            p = ports.get(r.network_port_id or "")
            if p is None or not p.security_groups or p.binding_vif_type in (
                    "unbound", "binding_failed") or p.binding_vif_details.get(
                    "driver", "ovs") != "ovs":
                continue
            out.append((p, _Place(sw, r.port_name, tuple(sorted(r.bond_members or [])))))
        return out

    def _ever_filtered(self, sw: Switch) -> bool:
        """Whether metalplane ever filtered on ``sw``: its OpenFlow listener is there (it is
        added before the first flow). Raises :class:`SwitchError`."""
        if sw.id in self._listening:
            return True
        try:
            listen, _ = openflow_address(sw)
        except SwitchError:
            return False
        return listen in self.switches.batcher(sw).switch.controllers()

    def _lock(self, sw: Switch) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(sw.id, threading.Lock())

    def _client(self, sw: Switch) -> Ofctl:
        """The OpenFlow client of ``sw``, its service listener added once (and waited
        for, up to 5 s). Raises :class:`SwitchError`."""
        listen, connect = openflow_address(sw)
        ofctl = self._ofctl(connect)
        if sw.id in self._listening:
            return ofctl
        self.switches.batcher(sw).switch.add_service_controller(listen)
        deadline = time.monotonic() + 5
        while True:
            try:
                ofctl.dump()
                break
            except SwitchError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._listening.add(sw.id)
        return ofctl


def _places(binding: Binding, released: bool = False) -> list[_Place]:
    """The switch ports of a binding's changes; ``released``: also a bond it dissolves."""
    out = []
    for sw, cfgs in binding.changes.values():
        for cfg in cfgs:
            out.append(_Place(sw, cfg.name, tuple(sorted(cfg.members))))
            if released and cfg.unbond:
                out.append(_Place(sw, cfg.unbond))
    return out
