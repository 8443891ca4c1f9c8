"""After an inspection: keep the node's inventory and apply the inspection rules to it.

Ironic's built-in inspection (``ironic/drivers/modules/inspector/agent.py`` then
``ironic/common/inspection_rules/engine.py``): the inventory and its plugin data replace the
node's previous ones (``GET /v1/nodes/{node}/inventory`` serves them), then the rules of
phase ``main`` run in priority order on them (:mod:`metalplane.common.inspection_rules`).
What the rules change on the node goes through the same checks as an API PATCH (driver
and interfaces resolved, driver_info secrets sealed, traits checked) and is saved under the
task's lock; a port's changed fields are saved on the port. A rule that fails raises
:class:`RuleFailed` naming it; the step engine then fails the node (``inspect failed``).

Values of sensitive rules stay out of the logs.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from metalplane.common.exceptions import MetalplaneError
from metalplane.common.inspection_rules import NodeData, RuleFailed, apply_rules
from metalplane.conductor.task import NodeTask
from metalplane.db import api as db_api
from metalplane.db import inspection as db_inspection
from metalplane.db.models import Port

__all__ = ["RuleFailed", "rule_dict", "store_and_apply_rules"]

LOG = logging.getLogger(__name__)
PORT_KEYS = ("address", "extra", "local_link_connection", "physical_network", "pxe_enabled",
             "name")


def rule_dict(rule: Any) -> dict[str, Any]:
    """A stored rule (an ``InspectionRule`` row) as the dict the rule functions take."""
    return {k: copy.deepcopy(getattr(rule, k)) for k in
            ("uuid", "description", "priority", "phase", "sensitive", "conditions", "actions")}


def store_and_apply_rules(task: NodeTask, inventory: dict[str, Any],
                          plugin_data: dict[str, Any]) -> list[str]:
    """Store the node's ``inventory`` and ``plugin_data``, then apply the rules of phase
    ``main``, highest priority first, each rule's changes saved before the next rule reads
    the node; returns the UUIDs of the rules applied. Raises :class:`RuleFailed` naming the
    rule that failed, or whose changes the node refused (an unknown driver, a bad trait):
    the node keeps what earlier rules changed, as in Ironic."""
    db = task.conductor.db
    node = task.node
    db_inspection.save_inventory(db, node.id, inventory, plugin_data)
    rules = sorted((rule_dict(r) for r in db_inspection.list_rules(db, phase="main")),
                   key=lambda r: -int(r["priority"] or 0))
    applied: list[str] = []
    for rule in rules:
        applied += _apply_one(task, rule, inventory, plugin_data)
    if applied:
        LOG.info("Node %s: inspection rules applied: %s", node.uuid, ", ".join(applied))
    return applied


def _apply_one(task: NodeTask, rule: dict[str, Any], inventory: dict[str, Any],
               plugin_data: dict[str, Any]) -> list[str]:
    from metalplane.conductor.resources import NODE_CREATE_FIELDS  # resources imports us

    node, db = task.node, task.conductor.db
    fields = {k: copy.deepcopy(getattr(node, k, None)) for k in NODE_CREATE_FIELDS}
    ports = {p.uuid: {"_id": p.id, **{k: copy.deepcopy(getattr(p, k)) for k in PORT_KEYS}}
             for p in db_api.list_ports(db, node_id=node.id)}
    data = NodeData(fields=fields, ports=copy.deepcopy(ports))
    try:
        applied = apply_rules([rule], data, inventory, plugin_data)
    finally:
        for level, text in data.logs:
            getattr(LOG, level if level in ("debug", "info", "warning", "error") else "error")(
                "Node %s: inspection rule %s: %s", node.uuid, rule["uuid"], text)
    if applied:
        try:
            _write_back(task, data, ports)
        except MetalplaneError as exc:
            name = str(rule["uuid"]) + (f" ({rule['description']})" if rule["description"]
                                        else "")
            what = "" if rule["sensitive"] else f": {exc.message}"
            raise RuleFailed(f"inspection rule {name}: the node refused its changes{what}"
                             ) from None
    return applied


def _write_back(task: NodeTask, data: NodeData, before: dict[str, dict[str, Any]]) -> None:
    from metalplane.conductor.resources import NODE_DEFAULTS, NodeResources

    node = task.node
    new = dict(data.fields)
    if new.get("driver") != node.driver:
        _reset_interfaces(task, new)
    for key, default in NODE_DEFAULTS.items():
        if new.get(key) is None:
            new[key] = copy.deepcopy(default)
    if any(new.get(k) != getattr(node, k, None) for k in new):
        checked = NodeResources(task.conductor).check_node_values(new)
        changed = {k: v for k, v in checked.items() if getattr(node, k, None) != v}
        if changed:
            task.save(**changed)
    for uuid, port in data.ports.items():
        old = before.get(uuid) or {}
        values = {k: port.get(k) for k in PORT_KEYS if k != "address" and port.get(k) != old.get(k)}
        if values:
            db_api.update_row(task.conductor.db, Port, int(old["_id"]), values, "port")


def _reset_interfaces(task: NodeTask, new: dict[str, Any]) -> None:
    """A rule changed the driver: the interfaces it did not set and the new hardware type
    does not support go back to its defaults (Ironic's ``reset_interfaces`` on a driver
    change). An unknown driver is left for the checks to refuse."""
    try:
        hw = task.conductor.registry.hardware_type(str(new.get("driver")))
    except MetalplaneError:
        return
    node = task.node
    for kind, names in hw.supported.items():
        key = f"{kind}_interface"
        if new.get(key) == getattr(node, key, None) and new.get(key) not in (None, *names):
            new[key] = None
