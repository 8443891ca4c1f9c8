"""The node task: holds a node's lock, applies the state machine, saves and logs.

Every provision-state change goes through :meth:`NodeTask.process_event`, which checks the
transition against :mod:`metalplane.lifecycle.states`, persists it and logs it with the
lock's purpose, as Ironic's ``task_manager`` does. A task is opened with
:meth:`metalplane.conductor.manager.Conductor.acquire`; it releases the lock when its
``with`` block ends unless the work was handed to a worker with :meth:`NodeTask.spawn`.

On a worker, the move into a resting or wait state (where the worker's work ends) is written
together with the lock's release, in one statement: a fake-hardware ``manage`` is one write
on the worker instead of three. Nothing outside the task can see the node between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from metalplane.common.config import Settings
from metalplane.db import api as db_api
from metalplane.db.models import Node, utcnow
from metalplane.drivers.base import Driver
from metalplane.lifecycle import states
from metalplane.lifecycle.networking import NetworkInterface

if TYPE_CHECKING:
    from metalplane.conductor.manager import Conductor

__all__ = ["NodeTask"]

LOG = logging.getLogger(__name__)


class NodeTask:
    """A node with its lock held by this conductor, for ``purpose``.

    Implements :class:`metalplane.drivers.base.Task` for the drivers.
    """

    def __init__(self, conductor: Conductor, node: Node, purpose: str) -> None:
        self.conductor = conductor
        self._node = node
        self.purpose = purpose
        self._driver: Driver | None = None
        self._driver_info: dict[str, Any] | None = None
        self.handed_off = False
        self._pending: dict[str, Any] = {}  # written with the next save or the release
        self.cache: dict[str, Any] = {}  # drivers' objects for this holding (Task.cache)

    # -- the drivers.base.Task protocol --
    @property
    def node(self) -> Node:
        return self._node

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            self._driver = self.conductor.registry.driver_for(self._node)
        return self._driver

    @property
    def driver_info(self) -> dict[str, Any]:
        if self._driver_info is None:
            self._driver_info = self.conductor.secrets.decrypt_driver_info(
                self._node.driver_info or {})
        return self._driver_info

    @property
    def settings(self) -> Settings:
        return self.conductor.settings

    @property
    def network(self) -> NetworkInterface:
        """The node's network interface (its ``network_interface``, else the default)."""
        return self.conductor.networking.for_node(self._node)

    @property
    def secrets(self) -> Any:
        return self.conductor.secrets

    def save(self, **fields: Any) -> None:
        """Persist ``fields`` (and any change still pending) on the node now (we hold its
        lock)."""
        if self._pending:
            fields, self._pending = {**self._pending, **fields}, {}
        self._node = db_api.update_node(self.conductor.db, self._node.id, fields)
        if "driver_info" in fields or "driver" in fields:
            self._driver_info = self._driver = None
            self.cache.clear()

    def stage(self, **fields: Any) -> None:
        """Set ``fields`` on the node now; they are written with the next save, state
        change or the release, whichever comes first."""
        self._pending.update(fields)
        for key, value in fields.items():
            setattr(self._node, key, value)

    # -- state machine --
    def process_event(self, event: str, last_error: str | None = None, **extra: Any) -> None:
        """Move the node along ``event`` (a verb or done/wait/resume/fail/abort), saving
        ``extra`` fields with it.

        Raises :class:`~metalplane.common.exceptions.InvalidStateRequested` if the table has no such
        transition from the current state.
        """
        node = self._node
        source = node.provision_state
        t = states.next_state(source, event)
        dest = t.dest
        if event == "done" and source in (states.CLEANING, states.CLEAN_WAIT):
            # manual cleaning returns to manageable, automated to available
            dest = node.target_provision_state or dest
        if dest in states.RESTING_STATES:
            target = None
        else:
            target = t.target or node.target_provision_state
        fields: dict[str, Any] = {
            "provision_state": dest,
            "target_provision_state": target,
            "provision_updated_at": utcnow(),
        }
        if event in states.VERBS or states.normalize_verb(event) in states.VERBS:
            fields["last_error"] = None
        if last_error is not None:
            fields["last_error"] = last_error
        if (source in states.WAIT_STATES and event in ("fail", "abort")
                and node.target_power_state is not None):
            # a reboot into the agent nobody awaits any more: the power sync reads the BMC
            fields["target_power_state"] = None
        fields.update(extra)
        if self.handed_off and (dest in states.RESTING_STATES or dest in states.WAIT_STATES):
            self.stage(**fields)  # the worker ends here: written by release()
        else:
            self.save(**fields)
        LOG.info("Node %s moved from '%s' to '%s' on %s%s (lock purpose: %s)",
                 node.uuid, source, dest, event,
                 f", target '{target}'" if target else "", self.purpose)

    def fail(self, message: str) -> None:
        """Fire ``fail`` with ``message`` as ``last_error`` (from a transient or wait state);
        from an inspect, clean, deploy or tear-down flow the node is then made safe
        (:meth:`~metalplane.conductor.manager.Conductor.make_safe`)."""
        source = self._node.provision_state
        LOG.error("Node %s: %s failed in state '%s': %s", self._node.uuid, self.purpose,
                  source, message)
        self.process_event("fail", last_error=message)
        if source in states.MAKE_SAFE_STATES:
            self.conductor.make_safe(self)

    # -- lock --
    def spawn(self, fn: Callable[[NodeTask], None]) -> None:
        """Run ``fn(self)`` on a conductor worker; the worker releases the lock at the end."""
        self.handed_off = True
        try:
            self.conductor.submit_task(self, fn)
        except BaseException:
            self.handed_off = False
            raise

    def release(self) -> None:
        """Release the lock, writing any pending change in the same statement."""
        pending, self._pending = self._pending, {}
        db_api.release_node(self.conductor.db, self._node.id, self.conductor.host, pending)
