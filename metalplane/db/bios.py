"""The store of each node's BIOS settings as last read from its BMC (Ironic's
``bios_settings`` table and ``BIOSSettingList.sync_node_setting``).

Holds no BIOS semantics (reading the BMC is the bios interface's, the refresh the
conductor's); objects come back detached from their session.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from metalplane.common.exceptions import NotFound
from metalplane.db.engine import Database
from metalplane.db.models import BiosSetting, utcnow

__all__ = ["REGISTRY_FIELDS", "get_setting", "list_settings", "sync_settings"]

# The attribute registry's fields kept per setting (Ironic's BIOSSetting.registry_fields).
REGISTRY_FIELDS = ("attribute_type", "allowable_values", "lower_bound", "max_length",
                   "min_length", "read_only", "reset_required", "unique", "upper_bound")


def list_settings(db: Database, node_id: int) -> list[BiosSetting]:
    """Node ``node_id``'s settings, by name."""
    with db.read() as s:
        return list(s.scalars(sa.select(BiosSetting).where(BiosSetting.node_id == node_id)
                              .order_by(BiosSetting.name)))


def get_setting(db: Database, node_id: int, node_uuid: str, name: str) -> BiosSetting:
    """Node ``node_id``'s setting ``name``. Raises :class:`NotFound` with Ironic's
    message (``Node <uuid> doesn't have a BIOS setting '<name>'``)."""
    with db.read() as s:
        row: BiosSetting | None = s.scalars(sa.select(BiosSetting).where(
            BiosSetting.node_id == node_id, BiosSetting.name == name)).first()
    if row is None:
        raise NotFound(f"Node {node_uuid} doesn't have a BIOS setting '{name}'")
    return row


def sync_settings(db: Database, node_id: int, settings: list[dict[str, Any]]
                  ) -> tuple[int, int, int]:
    """Make node ``node_id``'s stored settings these (``[{"name", "value", <registry
    field>?...}]``, value a string or None): new ones created, changed ones updated (their
    ``updated_at`` set), gone ones deleted, unchanged ones left with their timestamps.
    Returns (created, updated, deleted) counts."""
    wanted = {str(s["name"]): s for s in settings}
    with db.read() as s:  # most reads change nothing: then nothing is written
        stored = {r.name: r for r in s.scalars(
            sa.select(BiosSetting).where(BiosSetting.node_id == node_id))}
    gone = [name for name in stored if name not in wanted]
    new: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    for name, setting in wanted.items():
        values = {"value": setting.get("value"),
                  **{k: setting.get(k) for k in REGISTRY_FIELDS}}
        row = stored.get(name)
        if row is None:
            new[name] = values
        elif any(getattr(row, k) != v for k, v in values.items()):
            changed[name] = values
    if not (gone or new or changed):
        return 0, 0, 0
    with db.write() as s:
        if gone:
            s.execute(sa.delete(BiosSetting).where(BiosSetting.node_id == node_id,
                                                   BiosSetting.name.in_(gone)))
        for name, values in changed.items():
            s.execute(sa.update(BiosSetting).where(
                BiosSetting.node_id == node_id, BiosSetting.name == name)
                .values(**values, updated_at=utcnow()))
        for name, values in new.items():
            s.add(BiosSetting(node_id=node_id, name=name, **values))
    return len(new), len(changed), len(gone)
