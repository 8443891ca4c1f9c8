"""The store of inspection: each node's last inventory, and the inspection rules.

Ironic's ``node_inventory`` and ``inspection_rules`` tables. This module holds no rule
semantics (validation and evaluation live in :mod:`metalplane.conductor.inspection_rules`);
objects come back detached from their session.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from metalplane.common.exceptions import Conflict, Invalid, NotFound
from metalplane.db.engine import Database
from metalplane.db.models import InspectionRule, NodeInventory

__all__ = ["RULE_SORT_KEYS", "create_rule", "delete_rule", "get_inventory", "get_rule",
           "list_rules", "save_inventory", "update_rule"]

RULE_SORT_KEYS = ("id", "uuid", "priority", "phase", "description", "sensitive",
                  "created_at", "updated_at")


def save_inventory(db: Database, node_id: int, inventory: dict[str, Any],
                   plugin_data: dict[str, Any]) -> None:
    """Replace node ``node_id``'s inventory and plugin data with these."""
    with db.write() as s:
        s.execute(sa.delete(NodeInventory).where(NodeInventory.node_id == node_id))
        s.add(NodeInventory(node_id=node_id, inventory_data=inventory, plugin_data=plugin_data))


def get_inventory(db: Database, node_id: int) -> NodeInventory | None:
    """Node ``node_id``'s last inventory, or None if it was never inspected in-band."""
    with db.read() as s:
        row: NodeInventory | None = s.scalars(
            sa.select(NodeInventory).where(NodeInventory.node_id == node_id)).first()
        return row


def create_rule(db: Database, values: dict[str, Any]) -> InspectionRule:
    """Insert a rule (``values``: its columns; a UUID is made if none is given). Raises
    :class:`Conflict` for a UUID already in use."""
    values = {**values, "uuid": values.get("uuid") or str(uuidlib.uuid4())}
    rule = InspectionRule(**values)
    try:
        with db.write() as s:
            s.add(rule)
    except IntegrityError:
        raise Conflict(f"Inspection rule with UUID {values['uuid']} already exists.") from None
    return rule


def get_rule(db: Database, uuid: str) -> InspectionRule:
    """The rule with this UUID. Raises :class:`NotFound`."""
    with db.read() as s:
        rule: InspectionRule | None = s.scalars(
            sa.select(InspectionRule).where(InspectionRule.uuid == uuid)).first()
    if rule is None:
        raise NotFound(f"Inspection rule {uuid} could not be found.")
    return rule


def list_rules(db: Database, phase: str | None = None, limit: int | None = None,
               marker: str | None = None, sort_key: str = "id",
               sort_dir: str = "asc") -> list[InspectionRule]:
    """Rules (of ``phase`` if given) sorted by ``sort_key`` (:data:`RULE_SORT_KEYS`), then
    id, after the rule whose UUID is ``marker``, at most ``limit``. Raises :class:`Invalid`
    for an unknown sort key, direction or marker."""
    if sort_key not in RULE_SORT_KEYS:
        raise Invalid(f"The sort_key value {sort_key} is an invalid field for sorting")
    if sort_dir not in ("asc", "desc"):
        raise Invalid(f"Invalid sort direction: {sort_dir}. Acceptable values are 'asc' "
                      "or 'desc'")
    col = getattr(InspectionRule, sort_key)
    order = (col.asc(), InspectionRule.id.asc()) if sort_dir == "asc" else \
        (col.desc(), InspectionRule.id.desc())
    with db.read() as s:
        q = sa.select(InspectionRule)
        if phase:
            q = q.where(InspectionRule.phase == phase)
        rows = list(s.scalars(q.order_by(*order)))
    if marker:
        at = next((i for i, r in enumerate(rows) if r.uuid == marker), None)
        if at is None:
            raise Invalid(f"marker {marker} is not an inspection rule UUID")
        rows = rows[at + 1:]
    return rows[:limit] if limit else rows


def update_rule(db: Database, uuid: str, values: dict[str, Any]) -> InspectionRule:
    """Set ``values`` on the rule with this UUID and return it. Raises :class:`NotFound`."""
    with db.write() as s:
        rule: InspectionRule | None = s.scalars(
            sa.select(InspectionRule).where(InspectionRule.uuid == uuid)).first()
        if rule is None:
            raise NotFound(f"Inspection rule {uuid} could not be found.")
        for key, value in values.items():
            setattr(rule, key, value)
    return rule


def delete_rule(db: Database, uuid: str) -> None:
    """Delete the rule with this UUID. Raises :class:`NotFound`."""
    with db.write() as s:
        gone = s.execute(sa.delete(InspectionRule).where(InspectionRule.uuid == uuid))
    if not getattr(gone, "rowcount", 1):
        raise NotFound(f"Inspection rule {uuid} could not be found.")
