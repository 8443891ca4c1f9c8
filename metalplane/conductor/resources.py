"""Creating and changing nodes, ports and portgroups: the validation rules.

Every check happens before anything is written, so bad input is refused whole. Field
names and error texts follow Ironic's. Secrets in ``driver_info`` are encrypted here,
before they reach the store.
"""

from __future__ import annotations

import copy
import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import jsonpatch

from metalplane.common.exceptions import Conflict, Invalid, InvalidState, NotFound
from metalplane.common.network_data import check_network_data
from metalplane.common.secrets import MASK, is_sealed, is_secret_key
from metalplane.conductor.manager import Conductor
from metalplane.db import api as db_api
from metalplane.db.models import Node, Port, Portgroup
from metalplane.drivers import base as drivers_base
from metalplane.lifecycle import states
from metalplane.lifecycle.networking import NETWORK_INTERFACES, TENANT_KEY

__all__ = ["TRAIT_PATTERN", "NodeResources", "normalize_mac", "valid_name"]

_MAC = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$")
_DPID = re.compile(r"^(0x)?[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9\-._~]+$")
TRAIT_PATTERN = r"^[A-Z][A-Z0-9_]*$"  # os-traits' standard names and CUSTOM_*
_TRAIT = re.compile(TRAIT_PATTERN)
MAX_TRAITS = 50  # Ironic's limit per node
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
              "balance-tlb", "balance-alb", "0", "1", "2", "3", "4", "5", "6")
LLC_KEYS = ("switch_id", "port_id", "switch_info", "network_type",
            "vtep-logical-switch", "vtep-physical-switch")  # the last two: Ironic 1.90

NODE_CREATE_FIELDS = frozenset({
    "uuid", "name", "driver", "driver_info", "properties", "instance_info", "instance_uuid",
    "extra", "maintenance", "maintenance_reason", "traits", "resource_class",
    "conductor_group", "owner", "lessee", "network_interface",
    *(f"{k}_interface" for k in drivers_base.INTERFACE_KINDS),
    *(f"{k}_interface" for k in drivers_base.NOOP_INTERFACES), "description", "automated_clean",
    "network_data",
})
NODE_READONLY_FIELDS = frozenset({
    "provision_state", "target_provision_state", "provision_updated_at", "power_state",
    "target_power_state", "reservation", "created_at", "updated_at", "driver_internal_info",
    "inspection_started_at", "inspection_finished_at", "last_error", "links", "ports",
    "portgroups", "states", "conductor", "allocation_uuid",
})
# What a node field removed or set to null by a PATCH goes back to (the others: null).
NODE_DEFAULTS: dict[str, Any] = {"conductor_group": "", "maintenance": False, "traits": [],
                                 "driver_info": {}, "properties": {}, "instance_info": {},
                                 "extra": {}, "network_data": {}}
# Ironic's update_port: where a port's wiring may change outside maintenance
PORT_CHANGE_STATES = (states.ENROLL, states.INSPECTING, states.INSPECT_WAIT, states.MANAGEABLE)
CONNECTIVITY_FIELDS = frozenset({"portgroup_id", "pxe_enabled", "local_link_connection",
                                 "physical_network"})
DELETE_ALLOWED = frozenset({states.ENROLL, states.MANAGEABLE, states.AVAILABLE,
                            states.ADOPT_FAILED, states.INSPECT_FAILED, states.CLEAN_FAILED})


Check = Callable[[dict[str, Any]], dict[str, Any]]


def _unchecked(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def _changed(row: Any, values: dict[str, Any]) -> set[str]:
    """The keys of ``values`` that differ from ``row`` (an unset object field is ``{}``)."""
    return {k for k, v in values.items()
            if (getattr(row, k) if not isinstance(v, dict) else getattr(row, k) or {}) != v}


def normalize_mac(value: Any, field: str = "address") -> str:
    """Lower-case colon form of a MAC. Raises :class:`Invalid` naming ``field``."""
    mac = str(value or "").strip().lower()
    if not _MAC.match(mac):
        raise Invalid(f"{field} '{value}' is not a valid MAC address "
                      "(expected six hex pairs, e.g. 52:54:00:12:34:56)")
    return mac.replace("-", ":")


def valid_name(name: Any) -> bool:
    """Ironic's rule for logical names: letters, digits and ``-._~``, not UUID-like."""
    return isinstance(name, str) and bool(_NAME.match(name)) and not db_api.is_uuid_like(name)


def _check_name(name: Any, what: str) -> None:
    if name is None:
        return
    if not valid_name(name):
        raise Invalid(f"{what} name '{name}' must use only letters, digits and - . _ ~ "
                      "and must not look like a UUID")


def _check_trait(trait: Any) -> str:
    """A trait as Ironic (os-traits) accepts it: a standard trait name or ``CUSTOM_*``,
    upper-case letters, digits and underscores, at most 255 characters."""
    if not isinstance(trait, str) or not _TRAIT.match(trait) or len(trait) > 255:
        raise Invalid(f"Invalid trait {str(trait)[:300]!r}: a trait is a standard trait "
                      "name or CUSTOM_ followed by A-Z, 0-9 and _, at most 255 characters")
    return trait


def _check_llc(llc: Any) -> dict[str, Any]:
    if not llc:
        return {}
    if not isinstance(llc, dict):
        raise Invalid("local_link_connection must be an object")
    unknown = sorted(set(llc) - set(LLC_KEYS))
    if unknown:
        raise Invalid(f"local_link_connection has unknown keys {', '.join(unknown)}; "
                      f"allowed: {', '.join(LLC_KEYS)}")
    out = dict(llc)
    vtep = [k for k in ("vtep-logical-switch", "vtep-physical-switch") if llc.get(k)]
    if vtep and (len(vtep) == 1 or not llc.get("port_id")):
        raise Invalid("local_link_connection needs port_id, vtep-logical-switch and "
                      "vtep-physical-switch together (an OVN VTEP switch, Ironic 1.90)")
    if llc.get("network_type") not in (None, "managed", "unmanaged"):
        raise Invalid("local_link_connection/network_type must be 'managed' or 'unmanaged'")
    if llc.get("network_type") != "unmanaged" and not vtep and (
            "switch_id" in llc or "port_id" in llc):
        missing = [k for k in ("switch_id", "port_id") if not llc.get(k)]
        if missing:
            raise Invalid(f"local_link_connection needs {' and '.join(missing)} "
                          "as well (switch_id and port_id go together)")
        sid = str(llc["switch_id"]).lower()
        if _MAC.match(sid):
            out["switch_id"] = sid.replace("-", ":")
        elif not _DPID.match(sid):
            raise Invalid(f"local_link_connection/switch_id '{llc['switch_id']}' must be a "
                          "MAC address or an OpenFlow datapath ID (16 hex digits)")
    return out


def _reads_secrets(pointer: str) -> bool:
    """True if JSON pointer ``pointer`` (RFC 6901) is ``/driver_info`` or one of its secret
    keys: a patch may write there but never copy, move or test it."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return bool(parts) and parts[0] == "driver_info" and (
        len(parts) == 1 or parts[1] == "" or is_secret_key(parts[1]))


class NodeResources:
    """Validating create/update/delete of nodes, ports and portgroups for the API."""

    def __init__(self, conductor: Conductor) -> None:
        self.c = conductor
        self.db = conductor.db

    # ---------------------------------------------------------------- nodes
    def _validate_node_values(self, values: dict[str, Any]) -> dict[str, Any]:
        for key, value in (values.get("driver_info") or {}).items():
            if not is_secret_key(key) and isinstance(value, str) and is_sealed(value):
                raise Invalid(f"driver_info/{key} holds an encrypted secret; only secret "
                              "fields (…_password, …_key, …_secret, …_token) may")
        registry = self.c.registry
        registry.resolve_interfaces(values["driver"], values)
        ni = values.get("network_interface")
        if ni is not None and ni not in NETWORK_INTERFACES:
            raise Invalid(f"network_interface '{ni}' is not one of "
                          f"{', '.join(NETWORK_INTERFACES)}")
        _check_name(values.get("name"), "node")
        for key in ("driver_info", "properties", "instance_info", "extra"):
            if not isinstance(values.get(key) or {}, dict):
                raise Invalid(f"{key} must be an object")
        if "network_data" in values:
            values["network_data"] = check_network_data(values["network_data"])
        traits = values.get("traits") or []
        if not isinstance(traits, list):
            raise Invalid("traits must be a list of strings")
        values["traits"] = list(dict.fromkeys(_check_trait(t) for t in traits))
        if len(values["traits"]) > MAX_TRAITS:
            raise Invalid(f"a node can have at most {MAX_TRAITS} traits")
        info = values.get("driver_info") or {}
        clear = self.c.secrets.decrypt_driver_info(info)
        driver = registry.driver_for(_Shim(values))
        for iface in driver.interfaces().values():
            iface.validate_driver_info(clear, partial=True)
        values["driver_info"] = self.c.secrets.encrypt_driver_info(info)
        return values

    def check_node_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """A node's whole set of fields (``NODE_CREATE_FIELDS``) checked as a PATCH's are:
        driver and interfaces resolved, traits checked, driver_info secrets sealed.
        Returns the values to store. Raises :class:`Invalid`."""
        return self._validate_node_values(dict(values))

    def create_node(self, body: dict[str, Any]) -> Node:
        """Enroll a node. Raises :class:`Invalid` (400) or :class:`Conflict` (409)."""
        unknown = sorted(set(body) - NODE_CREATE_FIELDS)
        if unknown:
            raise Invalid(f"Unknown attribute for node: {', '.join(unknown)}")
        if not body.get("driver"):
            raise Invalid("driver is required")
        values = {k: v for k, v in body.items() if v is not None}
        if "uuid" in values:
            if not db_api.is_uuid_like(values["uuid"]):
                raise Invalid(f"uuid '{values['uuid']}' is not a UUID")
            values["uuid"] = str(uuidlib.UUID(values["uuid"]))
        values = self._validate_node_values(values)
        values.setdefault("conductor_group", "")
        values["provision_state"] = states.ENROLL
        return db_api.create_node(self.db, values)

    def update_node(self, ident: str, patch: list[dict[str, Any]],
                    check: Check = _unchecked) -> Node:
        """Apply a JSON patch (RFC 6902) to a node under its lock; ``check`` validates the
        patched document's shape (the API's schema) and returns its coerced values.

        A ``******`` value for a secret keeps the stored one. Raises :class:`Invalid` for
        an unknown or read-only path or a value of a wrong type, :class:`NodeLocked`,
        :class:`NotFound`.
        """
        if not isinstance(patch, list) or not patch:
            raise Invalid("a PATCH body must be a non-empty JSON patch list")
        for op in patch:
            if not isinstance(op, dict) or "op" not in op or "path" not in op:
                raise Invalid("each patch operation needs 'op' and 'path'")
            read = op.get("from") if op["op"] in ("copy", "move") else (
                op["path"] if op["op"] == "test" else None)
            if read is not None and _reads_secrets(str(read)):
                raise Invalid(f"'{op['op']}' of {read} is not allowed: it holds secrets, "
                              "which are never read back (set them with add or replace)")
            top = str(op["path"]).lstrip("/").split("/")[0]
            if top in NODE_READONLY_FIELDS or top == "uuid" or top == "id":
                raise Invalid(f"'/{top}' is an internal attribute and can not be updated")
            if top not in NODE_CREATE_FIELDS:
                raise Invalid(f"Adding a new attribute (/{top}) to the root of the resource "
                              "is not allowed")
        with self.c.acquire(ident, "node update") as task:
            node = task.node
            doc = {k: getattr(node, k) for k in NODE_CREATE_FIELDS}
            try:
                new = jsonpatch.apply_patch(doc, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise Invalid(f"patch does not apply: {exc}") from None
            for key in NODE_CREATE_FIELDS - new.keys():  # removed: back to its default
                new[key] = None
            new = check(new)
            for key, default in NODE_DEFAULTS.items():  # null where the store takes none
                if new.get(key) is None:
                    new[key] = copy.deepcopy(default)
            old_info = node.driver_info or {}
            info = dict(new.get("driver_info") or {})
            for k, v in list(info.items()):
                if v == MASK and k in old_info:
                    info[k] = old_info[k]
            new["driver_info"] = info
            if not new.get("driver"):
                raise Invalid("driver can not be removed")
            new = self._validate_node_values(new)
            changed = {k: v for k, v in new.items() if getattr(node, k) != v}
            if not changed:
                return node
            task.save(**changed)
            return task.node

    def delete_node(self, ident: str) -> None:
        """Delete a node and its ports. Raises :class:`Conflict` in a busy or active state."""
        with self.c.acquire(ident, "node deletion") as task:
            node = task.node
            if node.provision_state not in DELETE_ALLOWED and not node.maintenance:
                raise Conflict(
                    f"Can not delete node {node.uuid} in provision state "
                    f"'{node.provision_state}'; allowed in: {', '.join(sorted(DELETE_ALLOWED))}"
                    " (or in maintenance)")
            db_api.destroy_node(self.db, node.id)
            task.handed_off = True  # the row is gone; nothing to release

    def set_maintenance(self, ident: str, on: bool, reason: str | None) -> None:
        with self.c.acquire(ident, "maintenance change") as task:
            task.save(maintenance=on, maintenance_reason=reason if on else None)

    def get_node(self, ident: str) -> Node:
        return db_api.get_node(self.db, ident)

    def set_traits(self, ident: str, traits: list[str]) -> None:
        """Replace a node's traits (Ironic's ``PUT /v1/nodes/{node}/traits``). Raises
        :class:`Invalid` for a bad trait or more than ``MAX_TRAITS``, :class:`NodeLocked`."""
        wanted = list(dict.fromkeys(_check_trait(t) for t in traits))
        if len(wanted) > MAX_TRAITS:
            raise Invalid(f"a node can have at most {MAX_TRAITS} traits, not {len(wanted)}")
        with self.c.acquire(ident, "trait update") as task:
            task.save(traits=wanted)

    def add_trait(self, ident: str, trait: str) -> None:
        """Add one trait; adding one the node has is no change."""
        trait = _check_trait(trait)
        with self.c.acquire(ident, "trait update") as task:
            have = list(task.node.traits or [])
            if trait in have:
                return
            if len(have) >= MAX_TRAITS:
                raise Invalid(f"a node can have at most {MAX_TRAITS} traits")
            task.save(traits=[*have, trait])

    def remove_trait(self, ident: str, trait: str) -> None:
        """Remove one trait. Raises :class:`NotFound` if the node does not have it."""
        with self.c.acquire(ident, "trait update") as task:
            have = list(task.node.traits or [])
            if trait not in have:
                raise NotFound(f"Node {task.node.uuid} doesn't have a trait '{trait}'")
            task.save(traits=[t for t in have if t != trait])

    # ---------------------------------------------------------------- ports
    def _node_for(self, body: dict[str, Any], key: str = "node_uuid") -> Node:
        ident = body.get(key) or body.get("node_id")
        if not ident:
            raise Invalid(f"{key} is required")
        try:
            return self.get_node(str(ident))
        except NotFound:
            raise Invalid(f"{key} {ident} is not a known node") from None

    def _portgroup_id(self, ident: Any, node: Node) -> int | None:
        if not ident:
            return None
        try:
            pg = db_api.get_portgroup(self.db, str(ident))
        except NotFound:
            raise Invalid(f"portgroup_uuid {ident} is not a known portgroup") from None
        if pg.node_id != node.id:
            raise Invalid(f"portgroup {pg.uuid} belongs to another node than the port")
        return pg.id

    PORT_FIELDS = frozenset({"address", "node_uuid", "portgroup_uuid", "local_link_connection",
                             "physical_network", "pxe_enabled", "extra", "name", "uuid"})

    def _port_values(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - self.PORT_FIELDS)
        if unknown:
            raise Invalid(f"Unknown attribute for port: {', '.join(unknown)}")
        node = self._node_for(body)
        values: dict[str, Any] = {
            "address": normalize_mac(body.get("address")),
            "node_id": node.id,
            "portgroup_id": self._portgroup_id(body.get("portgroup_uuid"), node),
            "local_link_connection": _check_llc(body.get("local_link_connection")),
            "physical_network": body.get("physical_network"),
            "pxe_enabled": bool(body.get("pxe_enabled", True)),
            "extra": body.get("extra") or {},
            "name": body.get("name"),
        }
        _check_name(values["name"], "port")
        if not isinstance(values["extra"], dict):
            raise Invalid("extra must be an object")
        return values

    def create_port(self, body: dict[str, Any]) -> Port:
        """Raises :class:`Invalid` for a bad MAC or node, :class:`Conflict` for a used MAC."""
        values = self._port_values(body)
        if body.get("uuid"):
            values["uuid"] = str(body["uuid"])
        return db_api.create_port(self.db, values)

    def port_doc(self, port: Port) -> dict[str, Any]:
        node = db_api.node_by_id(self.db, port.node_id)
        pg = db_api.portgroup_by_id(self.db, port.portgroup_id) if port.portgroup_id else None
        return {"address": port.address, "node_uuid": node.uuid,
                "portgroup_uuid": pg.uuid if pg else None,
                "local_link_connection": port.local_link_connection or {},
                "physical_network": port.physical_network, "pxe_enabled": port.pxe_enabled,
                "extra": port.extra or {}, "name": port.name}

    def update_port(self, ident: str, patch: list[dict[str, Any]],
                    check: Check = _unchecked) -> Port:
        """Apply a JSON patch to a port under its node's lock, as Ironic's conductor
        ``update_port``: an active node's (or one with an instance) port keeps its address
        and the connectivity fields (``CONNECTIVITY_FIELDS``) change only in
        ``PORT_CHANGE_STATES`` or in maintenance; the network interface then moves the
        port's bound switch ports (:meth:`NodeNetworking.port_changed`).

        Raises :class:`Invalid`, :class:`NodeLocked`, :class:`InvalidState` (409),
        :class:`Conflict`, :class:`~metalplane.network.plugin.BindingFailed`."""
        port = db_api.get_port(self.db, ident)
        new = check(self._patched(self.port_doc(port), patch, "port", self.PORT_FIELDS))
        values = self._port_values(new)
        node = db_api.node_by_id(self.db, port.node_id)
        with self.c.acquire(node.uuid, "port update") as task:
            node = task.node
            port = db_api.get_port(self.db, port.uuid)  # as it is under the lock
            changed = _changed(port, values)
            if not changed:
                return port
            if ("address" in changed and not node.maintenance
                    and (node.provision_state == states.ACTIVE or node.instance_uuid)):
                raise InvalidState(f"Cannot update hardware address for port {port.uuid} as "
                                   f"node {node.uuid} is active or has instance UUID "
                                   "assigned (set maintenance mode to change it)")
            connectivity = changed & CONNECTIVITY_FIELDS
            if connectivity and not (node.provision_state in PORT_CHANGE_STATES
                                     or node.maintenance):
                raise InvalidState(
                    f"Port {port.uuid} can not have any connectivity attributes "
                    f"({', '.join(sorted(connectivity))}) updated unless node {node.uuid} is "
                    f"in a {', '.join(PORT_CHANGE_STATES)} state or in maintenance mode. "
                    f"The current state is {node.provision_state}.")
            if "node_id" in changed and any(
                    str(k).endswith("vif_port_id") for k in (port.internal_info or {})):
                raise Conflict(f"Port {port.uuid} carries network ports of node {node.uuid}; "
                               "detach its VIF (or finish the step) before moving it")
            self.c.networking.port_changed(task, port.id, values)
            return db_api.update_row(self.db, Port, port.id, values, "port")  # type: ignore[no-any-return]

    def delete_port(self, ident: str) -> None:
        """Delete a port under its node's lock, as Ironic's ``destroy_port``: a port with a
        VIF is refused (409) unless the node is in maintenance; its network ports' switch
        ports are released first (:meth:`NodeNetworking.port_deleted`). Raises
        :class:`NodeLocked`, :class:`InvalidState`, :class:`NotFound`."""
        self._delete(db_api.get_port(self.db, ident), Port, "port",
                     lambda uuid: db_api.get_port(self.db, uuid),
                     self.c.networking.port_deleted)

    def _delete(self, row: Port | Portgroup, model: type[Port] | type[Portgroup], what: str,
                reread: Callable[[str], Port | Portgroup],
                release: Callable[[Any, int], None]) -> None:
        """Delete ``row`` (a port or portgroup) under its node's lock: refused while it
        carries a VIF unless the node is in maintenance; ``release(task, id)`` frees its
        switch ports first."""
        node = db_api.node_by_id(self.db, row.node_id)
        with self.c.acquire(node.uuid, f"{what} deletion") as task:
            row = reread(row.uuid)  # as it is now that the node is locked
            vif = (row.internal_info or {}).get(TENANT_KEY)
            if vif and not task.node.maintenance:
                raise InvalidState(f"Cannot delete the {what} {row.uuid} as it is bound to "
                                   f"VIF {vif} for use (detach the VIF first, or set "
                                   "maintenance mode)")
            release(task, row.id)
            db_api.delete_row(self.db, model, row.id)

    # ---------------------------------------------------------------- portgroups
    PG_FIELDS = frozenset({"address", "node_uuid", "name", "mode", "properties",
                           "standalone_ports_supported", "extra", "uuid"})

    def _pg_values(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - self.PG_FIELDS)
        if unknown:
            raise Invalid(f"Unknown attribute for portgroup: {', '.join(unknown)}")
        node = self._node_for(body)
        mode = body.get("mode") or "active-backup"
        if str(mode) not in BOND_MODES:
            raise Invalid(f"mode '{mode}' is not a bonding mode; one of {', '.join(BOND_MODES)}")
        _check_name(body.get("name"), "portgroup")
        props = body.get("properties") or {}
        if not isinstance(props, dict):
            raise Invalid("properties must be an object")
        return {
            "node_id": node.id,
            "address": normalize_mac(body["address"]) if body.get("address") else None,
            "name": body.get("name"),
            "mode": str(mode),
            "properties": props,
            "standalone_ports_supported": bool(body.get("standalone_ports_supported", True)),
            "extra": body.get("extra") or {},
        }

    def create_portgroup(self, body: dict[str, Any]) -> Portgroup:
        values = self._pg_values(body)
        if body.get("uuid"):
            values["uuid"] = str(body["uuid"])
        return db_api.create_portgroup(self.db, values)

    def portgroup_doc(self, pg: Portgroup) -> dict[str, Any]:
        node = db_api.node_by_id(self.db, pg.node_id)
        return {"address": pg.address, "node_uuid": node.uuid, "name": pg.name,
                "mode": pg.mode, "properties": pg.properties or {},
                "standalone_ports_supported": pg.standalone_ports_supported,
                "extra": pg.extra or {}}

    def update_portgroup(self, ident: str, patch: list[dict[str, Any]],
                         check: Check = _unchecked) -> Portgroup:
        """Apply a JSON patch to a portgroup under its node's lock, as Ironic's conductor
        ``update_portgroup``: moving it to another node needs ``PORT_CHANGE_STATES`` or
        maintenance and no member ports; a bound bond whose name, mode or properties change
        is rebuilt on the switch (:meth:`NodeNetworking.portgroup_changed`). Raises as
        :meth:`update_port`."""
        pg = db_api.get_portgroup(self.db, ident)
        new = check(self._patched(self.portgroup_doc(pg), patch, "portgroup", self.PG_FIELDS))
        values = self._pg_values(new)
        node = db_api.node_by_id(self.db, pg.node_id)
        with self.c.acquire(node.uuid, "portgroup update") as task:
            node = task.node
            pg = db_api.get_portgroup(self.db, pg.uuid)
            changed = _changed(pg, values)
            if not changed:
                return pg
            if "node_id" in changed and not (node.provision_state in PORT_CHANGE_STATES
                                             or node.maintenance):
                raise InvalidState(
                    f"Portgroup {pg.uuid} can not be associated to another node unless node "
                    f"{node.uuid} is in a {', '.join(PORT_CHANGE_STATES)} state or in "
                    f"maintenance mode. Current state is '{node.provision_state}'.")
            self.c.networking.portgroup_changed(task, pg.id, values)
            return db_api.update_row(self.db, Portgroup, pg.id, values, "portgroup")  # type: ignore[no-any-return]

    def delete_portgroup(self, ident: str) -> None:
        """Delete a portgroup under its node's lock (its ports stay, standalone): one with a
        VIF is refused (409) unless the node is in maintenance, as a port's; its bond is
        released first (:meth:`NodeNetworking.portgroup_deleted`)."""
        self._delete(db_api.get_portgroup(self.db, ident), Portgroup, "portgroup",
                     lambda uuid: db_api.get_portgroup(self.db, uuid),
                     self.c.networking.portgroup_deleted)

    @staticmethod
    def _patched(doc: dict[str, Any], patch: Any, what: str,
                 fields: frozenset[str]) -> dict[str, Any]:
        if not isinstance(patch, list) or not patch:
            raise Invalid("a PATCH body must be a non-empty JSON patch list")
        for op in patch:
            if not isinstance(op, dict) or "path" not in op:
                raise Invalid("each patch operation needs 'op' and 'path'")
            top = str(op["path"]).lstrip("/").split("/")[0]
            if top not in fields or top == "uuid":
                raise Invalid(f"'/{top}' can not be updated on a {what}")
        try:
            out: dict[str, Any] = jsonpatch.apply_patch(doc, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise Invalid(f"patch does not apply: {exc}") from None
        return out


class _Shim:
    """Looks enough like a Node for DriverRegistry.driver_for during validation."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.driver = values["driver"]
        for kind in drivers_base.INTERFACE_KINDS:
            setattr(self, f"{kind}_interface", values.get(f"{kind}_interface"))


