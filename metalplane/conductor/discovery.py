"""Auto-discovery and ``POST /v1/continue_inspection``: inspection data the ramdisk posts.

Ironic's built-in inspection (``ironic/api/controllers/v1/ramdisk.py``
``ContinueInspectionController``, ``ironic/drivers/modules/inspect_utils.py``
``lookup_node``, ``ironic/conductor/inspection.py`` ``continue_inspection``, and the
``[auto_discovery]`` options): the agent posts ``{"inventory": {...}, ...plugin data}``.

- The node is looked up by the inventory's MACs (its ports) and its BMC address (the host
  of a node's ``*_address`` driver_info). Several nodes: 404.
- A known node waiting for its inspection (``inspect wait``, its agent's ``inspect`` command
  not answered yet) takes the data as that command's result: inspection goes on as usual.
  A known node in any other state: 404, as Ironic (and nothing is changed).
- Unknown, with ``discovery_enabled``: a node is enrolled with ``discovery_driver``, its
  ports from the inventory's interfaces (``pxe_enabled`` on the one it booted from, the
  LLDP wiring in ``local_link_connection``), its properties from the inventory; the
  inventory is stored with ``auto_discovered: true`` in its plugin data (what
  ``data://auto_discovered`` reads), the inspection rules are applied; then, as Ironic's
  inspection ends, the node is powered off when its (new) driver can, and with
  ``discovery_provision_state = manageable`` it is moved on by ``manage``.
- Unknown, discovery off: 404, as Ironic.

The endpoint takes no credentials (as Ironic's): it never answers a secret (the agent token
shows as ``******``), its messages do not tell a known node from an unknown one, bodies are
bounded by ``max_request_body_size``, and it enrolls at most ``discovery_max_per_minute``
nodes a minute (then 429 with Retry-After). A MAC already enrolled is never enrolled twice:
discoveries are serialised in this process, and the store's unique port address refuses a
second conductor's (the loser's node is deleted again).

Also: the DHCP side (:meth:`Discovery.ensure_dhcp`, a periodic task: the inspection
network's dnsmasq answers unknown MACs) and the iPXE script it points them to.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import re
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import Conflict, Invalid, MetalplaneError, NotFound
from metalplane.conductor.inspection import RuleFailed, store_and_apply_rules
from metalplane.db import api as db_api
from metalplane.db.models import Node, Port
from metalplane.drivers import base as drivers_base
from metalplane.drivers import inventory as inventory_mod
from metalplane.drivers.modules import agent as agent_mod
from metalplane.lifecycle import states

if TYPE_CHECKING:
    from metalplane.conductor.manager import Conductor
    from metalplane.conductor.task import NodeTask

__all__ = ["AUTO_DISCOVERED", "Discovery", "TooManyDiscoveries", "check_body",
           "discovery_dhcp_options", "discovery_range"]

LOG = logging.getLogger(__name__)
AUTO_DISCOVERED = "auto_discovered"  # the plugin data flag, as ironic-inspector's
CALLBACK_PATH = "/v1/continue_inspection"
_NOT_FOUND = "no node is waiting for this inspection data"  # one message: discloses nothing
_NO_BMC = ("", "0.0.0.0", "::", "::/0")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class TooManyDiscoveries(MetalplaneError):
    """More nodes discovered in the last minute than ``discovery_max_per_minute`` (HTTP 429,
    retry after ``retry_after`` seconds)."""

    code = 429
    retryable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_body(body: Any) -> tuple[dict[str, Any], dict[str, Any], list[str], list[str]]:
    """The inventory, the plugin data (the body's other keys), the valid MACs (lower case;
    invalid ones are left out, as Ironic warns and ignores them) and the BMC addresses of a
    ``continue_inspection`` body, checked as Ironic's ``DATA_VALIDATOR``: ``inventory`` an
    object whose ``interfaces`` is a non-empty list of objects with a string
    ``mac_address``; ``bmc_address``/``bmc_v6address`` strings or null. Raises
    :class:`Invalid` naming the field, or when neither a MAC nor a BMC address is given."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object with an inventory")
    inventory = body.get("inventory")
    if not isinstance(inventory, dict):
        raise Invalid("inventory is required and must be an object")
    nics = inventory.get("interfaces")
    if not isinstance(nics, list) or not nics:
        raise Invalid("inventory.interfaces must be a non-empty list")
    macs = []
    for i, nic in enumerate(nics):
        if not isinstance(nic, dict) or not isinstance(nic.get("mac_address"), str):
            raise Invalid(f"inventory.interfaces[{i}].mac_address must be a string")
        mac = nic["mac_address"].strip().lower().replace("-", ":")
        if _MAC.match(mac) and mac != "00:00:00:00:00:00":
            macs.append(mac)
    bmcs = []
    for key in ("bmc_address", "bmc_v6address"):
        value = inventory.get(key)
        if value is not None and not isinstance(value, str):
            raise Invalid(f"inventory.{key} must be a string or null")
        if value and value.strip() not in _NO_BMC:
            bmcs.append(value.strip())
    if not macs and not bmcs:
        raise Invalid("No lookup information provided: inventory.interfaces has no valid "
                      "mac_address and there is no inventory.bmc_address")
    plugin_data = {k: v for k, v in body.items() if k != "inventory"}
    return inventory, plugin_data, list(dict.fromkeys(macs)), bmcs


def _bmc_hosts(info: dict[str, Any]) -> set[str]:
    """The hosts named by a node's ``*_address`` driver_info values (a URL's host, or the
    value itself), lower case."""
    out = set()
    for key, value in info.items():
        if not key.endswith("_address") or not isinstance(value, str) or not value:
            continue
        text = value.split("+", 1)[1] if value.startswith(("redfish+", "ipmi+")) else value
        host = urllib.parse.urlsplit(text).hostname if "://" in text else text.strip("[]")
        if host:
            out.add(host.lower())
    return out


def discovery_dhcp_options(settings: Settings, url: str) -> list[tuple[str, str]]:
    """The DHCP options of MACs nobody enrolled, ``(opt_name, value)`` as in
    ``extra_dhcp_opts``: iPXE gets the discovery script from boot server ``url``; plain PXE
    firmware gets the first stage by its DHCP client architecture (option 93, dnsmasq's
    ``efi`` tag): ``uefi_ipxe_bootfile_name`` for x86-64 UEFI, else ``ipxe_bootfile_name``,
    as ironic-inspector's dnsmasq does (nobody knows an unknown host's boot mode); and the
    TFTP server when ``url``'s host is an address."""
    server = urllib.parse.urlsplit(url).hostname or ""
    opts = [("tag:ipxe,bootfile-name", f"{url}/boot/discovery.ipxe"),
            ("tag:!ipxe,tag:!efi,bootfile-name", settings.ipxe_bootfile_name),
            ("tag:!ipxe,tag:efi,bootfile-name", settings.uefi_ipxe_bootfile_name)]
    if server and server[0].isdigit():
        opts.append(("tftp-server", server))
    return opts


def discovery_range(setting: str, cidr: str, gateway: str | None,
                    pools: list[dict[str, Any]]) -> tuple[str, str]:
    """The dynamic DHCP range of unknown MACs: ``setting`` (``first,last``), else the largest
    run of host addresses of ``cidr`` outside its allocation ``pools`` (``[{"start",
    "end"}]``) and its ``gateway`` (IPAM never hands them out). Raises :class:`Invalid` when
    the setting does not parse or the subnet has no free address."""
    net = ipaddress.ip_network(cidr)
    if setting:
        first, _, last = setting.partition(",")
        try:
            a, b = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
        except ValueError:
            raise Invalid(f"discovery_dhcp_range takes first,last addresses, not "
                          f"{setting!r}") from None
        if a not in net or b not in net or int(a) > int(b):
            raise Invalid(f"discovery_dhcp_range {setting} is not a range of {cidr}")
        return str(a), str(b)
    used = set()
    for pool in pools or []:
        lo, hi = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        used.add((int(lo), int(hi)))
    if gateway:
        used.add((int(ipaddress.ip_address(gateway)),) * 2)
    best: tuple[int, int] | None = None
    run_start: int | None = None
    lo_host = int(net.network_address) + 1
    hi_host = int(net.broadcast_address) - 1
    for addr in range(lo_host, hi_host + 2):  # one past the end closes the last run
        free = addr <= hi_host and not any(lo <= addr <= hi for lo, hi in used)
        if free and run_start is None:
            run_start = addr
        elif not free and run_start is not None:
            if best is None or addr - run_start > best[1] - best[0] + 1:
                best = (run_start, addr - 1)
            run_start = None
    if best is None:
        raise Invalid(f"subnet {cidr} has no address outside its allocation pools for "
                      "discovery: set discovery_dhcp_range")
    return str(ipaddress.ip_address(best[0])), str(ipaddress.ip_address(best[1]))


class Discovery:
    """The conductor's side of ``continue_inspection`` and of the discovery DHCP."""

    def __init__(self, conductor: Conductor) -> None:
        self.c = conductor
        self.settings = conductor.settings
        self._lock = threading.Lock()  # one discovery at a time in this process
        self._recent: collections.deque[float] = collections.deque()
        self._dhcp_logged: str | None = None

    # ------------------------------------------------------------------ the API's call
    def continue_inspection(self, body: Any) -> tuple[Node, bool]:
        """Take what the ramdisk posted (see the module's docstring); the node and whether
        it was enrolled by this call. Raises :class:`Invalid` (400, naming the field),
        :class:`NotFound` (404: no node waits for it, or discovery is off),
        :class:`TooManyDiscoveries` (429), :class:`NodeLocked` (409, retry)."""
        inventory, plugin_data, macs, bmcs = check_body(body)
        node = self._lookup(macs, bmcs)
        if node is not None:
            self._continue_known(node, inventory, plugin_data)
            return node, False
        if not self.settings.discovery_enabled:
            LOG.info("Inspection data from unknown MACs %s, BMC %s: discovery is off",
                     ", ".join(macs), ", ".join(bmcs) or "none")
            raise NotFound(_NOT_FOUND)
        with self._lock:
            node = self._lookup(macs, bmcs)  # a discovery just before ours
            if node is not None:
                self._continue_known(node, inventory, plugin_data)
                return node, False
            self._count()
            node = self._enroll(inventory, plugin_data, macs, bmcs)
        return node, True

    def _lookup(self, macs: list[str], bmcs: list[str]) -> Node | None:
        """The one node with these MACs or BMC address; None for none. Raises
        :class:`NotFound` when they name several nodes (as Ironic's lookup)."""
        ids = {p.node_id for p in db_api.rows_where(self.c.db, Port, address=macs)} if macs \
            else set()
        if bmcs:
            wanted = {b.lower() for b in bmcs}
            # addresses are never sealed (only passwords, keys, secrets, tokens are)
            for n in db_api.list_nodes(self.c.db, columns=("id", "driver_info")):
                if _bmc_hosts(dict(n.driver_info or {})) & wanted:
                    ids.add(n.id)
        if len(ids) > 1:
            LOG.error("Inspection data with MACs %s, BMC %s matches several nodes",
                      ", ".join(macs), ", ".join(bmcs))
            raise NotFound(_NOT_FOUND)
        return db_api.node_by_id(self.c.db, ids.pop()) if ids else None

    def _continue_known(self, node: Node, inventory: dict[str, Any],
                        plugin_data: dict[str, Any]) -> None:
        """A known node: its agent's inspect command is answered with this data."""
        with self.c.acquire(node.uuid, "continue inspection") as task:
            internal = dict(task.node.driver_internal_info or {})
            cmd = internal.get(agent_mod.COMMAND_KEY)
            if (task.node.provision_state != states.INSPECT_WAIT or not isinstance(cmd, dict)
                    or cmd.get("name") != "inspect" or cmd.get("done")):
                LOG.warning("Node %s: inspection data posted while it is %s; ignored",
                            task.node.uuid, task.node.provision_state)
                raise NotFound(_NOT_FOUND)
            internal[agent_mod.COMMAND_KEY] = {**cmd, "done": True}
            task.save(driver_internal_info=internal)
            result = {"command_id": cmd["id"], "status": "succeeded",
                      "data": {**plugin_data, "inventory": inventory}}
            task.spawn(lambda t: self.c.steps.agent_result(t, result))

    def _count(self) -> None:
        now = time.monotonic()
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        limit = self.settings.discovery_max_per_minute
        if len(self._recent) >= limit:
            wait = 60 - (now - self._recent[0])
            raise TooManyDiscoveries(f"more than {limit} nodes discovered in the last minute "
                                     "(discovery_max_per_minute); try again later", wait)
        self._recent.append(now)

    def _enroll(self, inventory: dict[str, Any], plugin_data: dict[str, Any],
                macs: list[str], bmcs: list[str]) -> Node:
        from metalplane.conductor.resources import NodeResources  # resources imports us

        plugin_data = {**plugin_data, AUTO_DISCOVERED: True}
        done = inventory_mod.process({**plugin_data, "inventory": inventory})
        node = NodeResources(self.c).create_node({
            "driver": self.settings.discovery_driver, "properties": done.properties})
        boot = inventory_mod.pxe_mac(inventory)
        try:
            for mac in macs:
                db_api.create_port(self.c.db, {
                    "address": mac, "node_id": node.id,
                    "pxe_enabled": mac == boot or boot not in macs,
                    "local_link_connection": done.wiring.get(mac) or {}})
        except Conflict:  # another conductor enrolled one of these MACs meanwhile
            db_api.destroy_node(self.c.db, node.id)
            LOG.warning("Discovery of MACs %s lost to another conductor's", ", ".join(macs))
            raise NotFound(_NOT_FOUND) from None
        LOG.info("Enrolled the newly discovered node %s with driver %s, MAC addresses [%s] "
                 "and BMC address(es) [%s]", node.uuid, node.driver, ", ".join(macs),
                 ", ".join(bmcs))
        with self.c.acquire(node.uuid, "auto-discovery") as task:
            try:
                store_and_apply_rules(task, inventory, plugin_data)
            except RuleFailed as exc:  # the node stays in enroll, the rule named
                LOG.error("Node %s: %s", task.node.uuid, exc)
                task.save(last_error=str(exc))
                return task.node
            task.spawn(self._after_discovery)
        return db_api.get_node(self.c.db, node.uuid)

    def _after_discovery(self, task: NodeTask) -> None:
        """On a worker: power the node off through its driver (as Ironic ends an
        inspection), then ``manage`` it if so configured. Failures are logged and kept in
        ``last_error``; the node stays enrolled."""
        node = task.node
        if task.driver.power.name != "fake":
            try:
                drivers_base.power_action(task, drivers_base.POWER_OFF)
            except MetalplaneError as exc:
                LOG.warning("Node %s: power off after discovery failed: %s", node.uuid,
                            exc.message)
                task.save(last_error=f"power off after discovery failed: {exc.message}")
        if self.settings.discovery_provision_state == states.MANAGEABLE:
            # manage, as the API's verb does: enroll -> verifying (the BMC answers) ->
            # manageable, or enroll again with the reason in last_error
            try:
                task.driver.power.validate(task)
                task.driver.management.validate(task)
            except MetalplaneError as exc:
                task.save(last_error=f"manage after discovery refused: {exc.message}")
                return
            task.process_event("manage")
            try:
                power = task.driver.power.get_power_state(task)
            except MetalplaneError as exc:
                task.fail(f"reading the power state failed: {exc.message}")
                return
            task.process_event("done", power_state=power)

    # ------------------------------------------------------------------ DHCP and iPXE
    def script(self) -> str:
        """The iPXE script unknown machines get: the agent in discovery mode (no node; its
        inventory goes to ``continue_inspection`` when its lookup finds nothing, as
        ironic-python-agent's ``ipa-inspection-callback-url``). No secret. Raises
        :class:`NotFound` when discovery is off."""
        if not self.settings.discovery_enabled:
            raise NotFound("auto-discovery is not enabled")
        boot = agent_mod.boot_url(self.settings)
        api = agent_mod.api_url(self.settings)
        return ("#!ipxe\n"
                "# metalplane: ramdisk agent in discovery mode\n"
                f"kernel {boot}/files/agent.kernel initrd=agent.initramfs "
                f"metalplane.api_url={api} metalplane.inspection_callback_url={api}"
                f"{CALLBACK_PATH} console=ttyS0\n"
                f"initrd {boot}/files/agent.initramfs\n"
                "boot\n")

    def ensure_dhcp(self) -> None:
        """With discovery on, make the inspection network's dnsmasq answer unknown MACs
        (a dynamic range, :func:`discovery_range`) with the discovery script; a periodic
        task, as the network may be created after the server starts. Problems are logged
        once each, never raised."""
        s = self.settings
        if not (s.discovery_enabled and s.inspection_network):
            return
        try:
            net = self.c.network.get_network(s.inspection_network)
            dhcp = self.c.networking.dhcp
            key = dhcp.serves(net.name, net.id)
            subnets = self.c.network.list_subnets({"network_id": net.id})
            if not key or not subnets:
                raise Invalid(f"inspection network {net.name} has no subnet or no DHCP binding")
            sub = subnets[0]
            first, last = discovery_range(s.discovery_dhcp_range, sub.cidr, sub.gateway_ip,
                                          sub.allocation_pools)
            opts = discovery_dhcp_options(s, agent_mod.boot_url(s))
            if dhcp.set_discovery(key, sub.cidr, first, last, opts):
                msg = f"discovery: unknown MACs on {net.name} lease {first}-{last}"
            else:
                msg = f"discovery: {net.name}'s DHCP is OVN's, which answers no unknown MAC"
        except MetalplaneError as exc:
            msg = f"discovery: no DHCP for unknown MACs: {exc.message}"
        if msg != self._dhcp_logged:
            LOG.info("%s", msg)
            self._dhcp_logged = msg
