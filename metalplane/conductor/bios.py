"""Keeping each node's BIOS settings: read through its bios interface, stored for the API.

As Ironic's ``conductor/utils.node_cache_bios_settings``: the settings are read when a node
is verified (enroll → manageable), when cleaning starts (manual or automated) and after each
``bios`` step that finished, and stored in the ``bios_settings`` table that
``GET /v1/nodes/{id}/bios`` serves. Reading them never fails the node's work: an interface
that cannot read them (``no-bios``, a BMC without a Bios resource) leaves the stored ones as
they are, and a BMC error is logged.
"""

from __future__ import annotations

import logging

from metalplane.common.exceptions import MetalplaneError
from metalplane.conductor.task import NodeTask
from metalplane.db import bios as db_bios
from metalplane.db.engine import Database

__all__ = ["cache_bios_settings"]

LOG = logging.getLogger(__name__)


def cache_bios_settings(db: Database, task: NodeTask) -> bool:
    """Read the node's BIOS settings and store them in ``db`` (created, updated, deleted
    to match).
    Returns whether they were stored. Never raises for the BMC or the interface."""
    try:
        settings = task.driver.bios.get_settings(task)
    except MetalplaneError as exc:
        LOG.warning("Node %s: reading the BIOS settings failed: %s", task.node.uuid,
                    exc.message)
        return False
    except Exception:  # a driver's bug must not fail the node's cleaning or verify
        LOG.exception("Node %s: reading the BIOS settings failed", task.node.uuid)
        return False
    if settings is None:
        LOG.debug("Node %s: its bios interface reads no settings", task.node.uuid)
        return False
    created, updated, deleted = db_bios.sync_settings(db, task.node.id, settings)
    LOG.info("Node %s: BIOS settings stored (%d new, %d changed, %d gone)", task.node.uuid,
             created, updated, deleted)
    return True
