"""The step engine: runs a node's inspect, clean and deploy steps in order.

Ironic's ``conductor/steps.py`` with ``cleaning.py`` / ``deployments.py`` in one place. A
phase (``inspect``, ``clean``, ``deploy``) of a node:

1. puts the node on its state's provider network (:data:`PROVIDER_NETWORK`, declared once);
2. plans its steps (:mod:`metalplane.drivers.steps`): every step of the node's interfaces
   with a priority above 0, highest first (ties: power, management, deploy, bios, boot,
   inspect), or for a manual cleaning the steps the user named, in the user's order;
   records them in ``driver_internal_info`` (``<phase>_steps``, ``<phase>_step_index``);
3. runs them; a step that WAITs leaves the node in its wait state until the agent's result,
   which goes to :meth:`StepEngine.agent_result` and from there to the interface that owns
   the step; a step that POLLs (waits on its BMC) leaves it there, flagged
   (``cleaning_polling`` / ``deployment_polling``, Ironic's keys), until the conductor's
   periodic :meth:`StepEngine.poll` hears from the interface that it is over; a failed
   step (or a :class:`MetalplaneError` out of one) fails the node with a
   ``last_error`` naming the step, and the conductor then makes it safe;
4. when all are done, undoes what the phase prepared and takes the node off the network
   (a deploy leaves it in its ``switch_to_tenant_network`` step, with the power off).

Tear-down (``deleting``) is not steps in Ironic either: :meth:`StepEngine.tear_down`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from metalplane.common.exceptions import Invalid, MetalplaneError
from metalplane.conductor.bios import cache_bios_settings
from metalplane.conductor.inspection import RuleFailed, store_and_apply_rules
from metalplane.conductor.task import NodeTask
from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.models import Port, utcnow
from metalplane.drivers import base as drivers_base
from metalplane.drivers.base import InspectionResult
from metalplane.drivers.steps import Outcome, Step, StepResult, failed, steps_of
from metalplane.lifecycle import states
from metalplane.lifecycle.networking import PROVIDER_NETWORK

__all__ = ["PHASE_OF_STATE", "StepEngine", "current_step", "polling"]

LOG = logging.getLogger(__name__)

PHASE_STATE = {"inspect": states.INSPECTING, "clean": states.CLEANING,
               "deploy": states.DEPLOYING}
PHASE_OF_STATE = {
    states.INSPECTING: "inspect", states.INSPECT_WAIT: "inspect",
    states.CLEANING: "clean", states.CLEAN_WAIT: "clean",
    states.DEPLOYING: "deploy", states.DEPLOY_WAIT: "deploy",
}
# Ties between steps of one priority: the interface higher here runs first (Ironic's
# CLEANING_INTERFACE_PRIORITY, extended to the interfaces metalplane has).
INTERFACE_ORDER = {"power": 6, "management": 5, "deploy": 4, "bios": 3, "boot": 2,
                   "inspect": 1}
# Waiting for the agent: the wait states that go back to their working state on a result.
RESUMES = frozenset({states.CLEAN_WAIT, states.DEPLOY_WAIT})


# driver_internal_info flag of a node whose current step is polled (Ironic's keys)
POLLING_KEY = {"inspect": "inspecting_polling", "clean": "cleaning_polling",
               "deploy": "deployment_polling"}


def _keys(phase: str) -> tuple[str, str]:
    return f"{phase}_steps", f"{phase}_step_index"


def polling(node: Any) -> bool:
    """Whether ``node`` waits in a step that the conductor polls (:data:`steps.POLL`)."""
    phase = PHASE_OF_STATE.get(node.provision_state)
    return (phase is not None and node.provision_state in states.WAIT_STATES
            and bool((node.driver_internal_info or {}).get(POLLING_KEY[phase])))


def _ordered(steps: Iterable[Step]) -> list[Step]:
    """``steps`` as a run takes them: highest priority first, ties by interface."""
    return sorted(steps, key=lambda s: (-s.priority, -INTERFACE_ORDER.get(s.interface, 0),
                                        s.step))


def current_step(node: Any) -> dict[str, Any]:
    """The step ``node`` is at (Ironic's ``clean_step`` / ``deploy_step`` field shape:
    ``{"interface", "step", "priority", "args", ...}``), or ``{}`` outside a phase."""
    phase = PHASE_OF_STATE.get(node.provision_state)
    if phase is None:
        return {}
    steps_key, index_key = _keys(phase)
    internal = node.driver_internal_info or {}
    steps, index = internal.get(steps_key) or [], internal.get(index_key)
    if not isinstance(index, int) or not 0 <= index < len(steps):
        return {}
    return dict(steps[index])


class StepEngine:
    """Plans and runs a node's steps; see the module's docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---------------------------------------------------------------- planning
    @staticmethod
    def available(driver: drivers_base.Driver, phase: str) -> list[Step]:
        """Every ``phase`` step of ``driver``'s interfaces, priority 0 included, in the
        order an automated run would take them (priority 0 last)."""
        return _ordered(s for iface in driver.interfaces().values()
                        for s in steps_of(iface, phase))

    def plan(self, task: NodeTask, phase: str,
             requested: list[dict[str, Any]] | None = None) -> list[Step]:
        """The steps a ``phase`` of this node runs.

        ``requested`` (manual cleaning's ``clean_steps``, or ``deploy_steps``): each
        ``{"interface": str, "step": str, "args"?: dict, "priority"?: int}`` naming one of
        :meth:`available`. Clean steps run exactly those, in that order; deploy steps
        change the priority and args of the steps they name and add priority-0 ones, as
        Ironic's user deploy steps do. Raises :class:`Invalid` naming the offending entry
        (unknown step, missing ``required`` arg, unknown arg, bad type)."""
        known = {(s.interface, s.step): s for s in self.available(task.driver, phase)}
        chosen = [self._requested(phase, i, r, known) for i, r in enumerate(requested or [])]
        if phase == "clean" and requested is not None:
            return chosen
        by_key = {(s.interface, s.step): s for s in known.values() if s.priority > 0}
        for s in chosen:
            by_key[(s.interface, s.step)] = s
        return _ordered(s for s in by_key.values() if s.priority > 0)

    @staticmethod
    def _requested(phase: str, i: int, req: Any, known: dict[tuple[str, str], Step]) -> Step:
        where = f"{phase}_steps[{i}]"
        if not isinstance(req, dict):
            raise Invalid(f"{where} must be an object with 'interface' and 'step'")
        extra = set(req) - {"interface", "step", "args", "priority"}
        if extra:
            raise Invalid(f"{where} has unknown field(s): {', '.join(sorted(extra))}")
        iface, name = req.get("interface"), req.get("step")
        if not isinstance(iface, str) or not isinstance(name, str) or not name:
            raise Invalid(f"{where} needs 'interface' and 'step' as strings")
        step = known.get((iface, name))
        if step is None:
            names = ", ".join(f"{s.interface}.{s.step}" for s in known.values()) or "none"
            raise Invalid(f"{where}: the node's driver has no {phase} step "
                          f"'{iface}.{name}'; its {phase} steps: {names}")
        args = req.get("args", {})
        if not isinstance(args, dict):
            raise Invalid(f"{where}.args must be an object")
        unknown = set(args) - set(step.argsinfo)
        if unknown:
            raise Invalid(f"{where}: step {step.label} takes no argument(s) "
                          f"{', '.join(sorted(unknown))}")
        missing = [a for a, info in step.argsinfo.items()
                   if info.get("required") and a not in args]
        if missing:
            raise Invalid(f"{where}: step {step.label} needs argument(s) "
                          f"{', '.join(missing)}")
        priority = req.get("priority", step.priority)
        if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
            raise Invalid(f"{where}.priority must be an integer >= 0")
        if phase == "deploy" and "priority" not in req:
            raise Invalid(f"{where} needs 'priority' (0 disables the step)")
        return Step(step.interface, step.step, priority, dict(args), step.argsinfo,
                    step.abortable, step.requires_ramdisk)

    # ---------------------------------------------------------------- running
    def start(self, task: NodeTask, phase: str, plan: list[Step]) -> None:
        """Run ``phase`` on a node that just entered its working state, on a worker."""
        state = PHASE_STATE[phase]
        try:
            task.network.add_network(task, PROVIDER_NETWORK[state])
            if phase == "inspect":
                task.save(inspection_started_at=utcnow(), inspection_finished_at=None)
            elif phase == "deploy":
                self._stage_configdrive(task)
            elif phase == "clean" and any(s.requires_ramdisk for s in plan):
                task.driver.deploy.prepare_cleaning(task)
        except MetalplaneError as exc:
            task.fail(f"preparing {phase} failed: {exc.message}")
            return
        if phase == "clean":  # as Ironic's cleaning, manual or automated, starts
            cache_bios_settings(self.db, task)
        self._run(task, phase, plan, 0)

    def agent_result(self, task: NodeTask, result: dict[str, Any]) -> None:
        """The agent's ``result`` for the step the node waits in: hand it to that step's
        interface, then go on with the next steps (on a worker)."""
        phase = PHASE_OF_STATE.get(task.node.provision_state)
        step_dict = current_step(task.node)
        if phase is None or not step_dict:
            task.fail("an agent result came for no step")
            return
        step = Step.from_dict(step_dict)
        iface = task.driver.interfaces().get(step.interface)
        outcome = (failed(f"interface {step.interface} is gone") if iface is None
                   else self._guard(iface.agent_result, task, step, result))
        if outcome.outcome is Outcome.FAILED:
            self._failed(task, phase, step, outcome.reason)
            return
        if task.node.provision_state in RESUMES:
            task.process_event("resume")
        if not self._take(task, outcome):
            return
        steps_key, index_key = _keys(phase)
        internal = task.node.driver_internal_info or {}
        plan = [Step.from_dict(s) for s in internal.get(steps_key) or []]
        self._run(task, phase, plan, int(internal[index_key]) + 1)

    def _run(self, task: NodeTask, phase: str, plan: list[Step], index: int) -> None:
        """Run ``plan`` from ``index``. The plan and the current index are written to the
        node when a step waits or fails (what the agent's result, a timeout and an
        operator need), not before each step: a phase that runs through writes nothing
        of them."""
        interfaces = task.driver.interfaces()
        for i in range(index, len(plan)):
            step = plan[i]
            method = getattr(interfaces.get(step.interface), step.step, None)
            if method is None:
                self._record(task, phase, plan, i)
                self._failed(task, phase, step, "the node's driver no longer has it")
                return
            LOG.debug("Node %s: %s step %s", task.node.uuid, phase, step.label)
            outcome = self._guard(method, task, **step.args)
            if outcome.outcome is Outcome.FAILED:
                self._record(task, phase, plan, i)
                self._failed(task, phase, step, outcome.reason)
                return
            if outcome.outcome is Outcome.WAIT:
                self._record(task, phase, plan, i, outcome.poll)
                if task.node.provision_state not in states.WAIT_STATES:
                    task.process_event("wait")
                return
            if step.interface == "bios":  # Ironic's @cache_bios_settings on bios steps
                cache_bios_settings(self.db, task)
            if not self._take(task, outcome):
                return
        self._finish(task, phase, plan)

    def poll(self, task: NodeTask) -> None:
        """Ask the interface owning the step a node waits in (polled: :func:`polling`)
        whether it is over: POLL, the node keeps waiting (its wait timeout still runs);
        failed, the node fails naming the step; done, the next steps run (on a worker)."""
        phase = PHASE_OF_STATE.get(task.node.provision_state)
        step_dict = current_step(task.node)
        if phase is None or not step_dict or not polling(task.node):
            return
        step = Step.from_dict(step_dict)
        iface = task.driver.interfaces().get(step.interface)
        outcome = (failed(f"interface {step.interface} is gone") if iface is None
                   else self._guard(iface.poll_step, task, step))
        if outcome.outcome is Outcome.WAIT and outcome.poll:
            return
        internal = dict(task.node.driver_internal_info or {})
        internal.pop(POLLING_KEY[phase], None)
        task.stage(driver_internal_info=internal)
        if outcome.outcome is Outcome.FAILED:
            self._failed(task, phase, step, outcome.reason)
            return
        if outcome.outcome is Outcome.WAIT:  # now for the agent
            return
        LOG.info("Node %s: %s step %s is over", task.node.uuid, phase, step.label)
        task.process_event("resume")
        if step.interface == "bios":
            cache_bios_settings(self.db, task)
        steps_key, index_key = _keys(phase)
        plan = [Step.from_dict(s) for s in internal.get(steps_key) or []]
        self._run(task, phase, plan, int(internal[index_key]) + 1)

    @staticmethod
    def _guard(call: Any, *args: Any, **kwargs: Any) -> StepResult:
        try:
            result = call(*args, **kwargs)
        except MetalplaneError as exc:
            return failed(exc.message)
        if not isinstance(result, StepResult):
            return failed(f"it returned {type(result).__name__}, not a step result")
        return result

    @staticmethod
    def _record(task: NodeTask, phase: str, plan: list[Step], index: int,
                poll: bool = False) -> None:
        steps_key, index_key = _keys(phase)
        internal = dict(task.node.driver_internal_info or {})
        internal[steps_key] = [s.as_dict() for s in plan]
        internal[index_key] = index
        if poll:
            internal[POLLING_KEY[phase]] = True
        else:
            internal.pop(POLLING_KEY[phase], None)
        task.stage(driver_internal_info=internal)

    @staticmethod
    def _failed(task: NodeTask, phase: str, step: Step, reason: str) -> None:
        task.fail(f"{phase} step '{step.label}' failed: {reason}")

    def _take(self, task: NodeTask, outcome: StepResult) -> bool:
        """Take what a step learned; False when that failed the node (an inspection rule
        that failed: ``inspect failed``, the rule named in ``last_error``)."""
        if isinstance(outcome.data, InspectionResult):
            self.apply_inspection(task, outcome.data)
            if outcome.data.inventory is not None:
                try:
                    store_and_apply_rules(task, outcome.data.inventory,
                                          outcome.data.plugin_data)
                except RuleFailed as exc:
                    task.fail(str(exc))
                    return False
        return True

    def _finish(self, task: NodeTask, phase: str, plan: list[Step]) -> None:
        state = PHASE_STATE[phase]
        steps_key, index_key = _keys(phase)
        try:
            if phase == "inspect":
                task.driver.inspect.tear_down_inspection(task)
            elif phase == "clean" and any(s.requires_ramdisk for s in plan):
                task.driver.deploy.tear_down_cleaning(task)
            if phase != "deploy":  # a deploy's switch_to_tenant_network step did it
                task.network.remove_network(task, PROVIDER_NETWORK[state])
        except MetalplaneError as exc:
            task.fail(f"finishing {phase} failed: {exc.message}")
            return
        extra: dict[str, Any] = {}
        internal = task.node.driver_internal_info or {}
        if steps_key in internal or index_key in internal:  # a step waited on the way
            extra["driver_internal_info"] = {
                k: v for k, v in internal.items()
                if k not in (steps_key, index_key, POLLING_KEY[phase])}
        if phase == "inspect":
            extra["inspection_finished_at"] = utcnow()
        task.process_event("done", **extra)

    # ---------------------------------------------------------------- phase details
    def _stage_configdrive(self, task: NodeTask) -> None:
        # instance_info is what the user asked for and is never overwritten: the drive made
        # from it goes to driver_internal_info, so a rebuild starts again from the user's
        # input rather than from the last generated drive.
        user = (task.node.instance_info or {}).get("configdrive")
        internal = dict(task.node.driver_internal_info or {})
        internal[drivers_base.CONFIGDRIVE_KEY] = task.network.config_drive(task.node, user)
        task.stage(driver_internal_info=internal)

    def apply_inspection(self, task: NodeTask, result: InspectionResult) -> None:
        """Merge ``result.properties`` into the node's, create a port for each new MAC
        (one that belongs to another node is logged and skipped) and record LLDP wiring
        in the ports' ``local_link_connection``."""
        node = task.node
        if result.properties:
            task.save(properties={**(node.properties or {}), **result.properties})
        ports = {p.address: p for p in db_api.list_ports(self.db, node_id=node.id)}
        for mac in result.macs:
            if mac in ports:
                continue
            try:
                ports[mac] = db_api.create_port(self.db, {"address": mac, "node_id": node.id,
                                                          "pxe_enabled": True})
                LOG.info("Node %s: inspection created port %s", node.uuid, mac)
            except MetalplaneError as exc:  # the MAC belongs to another node
                LOG.warning("Node %s: port %s not created: %s", node.uuid, mac, exc.message)
        for mac, llc in result.wiring.items():
            port = ports.get(mac)
            if port is None or port.local_link_connection == llc:
                continue
            db_api.update_row(self.db, Port, port.id, {"local_link_connection": llc}, "port")
            LOG.info("Node %s: port %s is wired to %s port %s (LLDP)", node.uuid, mac,
                     llc.get("switch_info", llc["switch_id"]), llc["port_id"])

    def tear_down(self, task: NodeTask) -> None:
        """``deleting``: power off, tenant VIFs unbound (they stay attached), off every
        provider network, the allocation and the generated config drive gone with the
        instance; then cleaning, as Ironic's tear down."""
        try:
            task.driver.deploy.tear_down(task)
            task.network.unconfigure_tenant(task)
            task.network.remove_all_provider_networks(task)
            if task.node.allocation_id is not None:  # else no allocation holds the node
                db_api.delete_allocation_of_node(self.db, task.node.id)
        except MetalplaneError as exc:
            task.fail(f"tear down failed: {exc.message}")
            return
        internal = dict(task.node.driver_internal_info or {})
        internal.pop(drivers_base.CONFIGDRIVE_KEY, None)
        task.stage(instance_uuid=None, allocation_id=None, allocation_uuid=None,
                   driver_internal_info=internal)
        task.process_event("done")  # deleting -> cleaning, with the fields above
        self.start(task, "clean", self.plan(task, "clean"))

