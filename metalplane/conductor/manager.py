"""The conductor: runs lifecycle work on many nodes at once.

Work is done on a pool of ``settings.workers`` threads (BMC libraries are blocking); a
node's lock is a reservation in the database, so the API, the workers and other
conductors sharing a PostgreSQL store agree on who may touch a node. Periodic tasks:
heartbeat, power-state sync, wait-state timeouts, and recovery of nodes whose conductor
died. Nothing here speaks HTTP; :mod:`metalplane.api` calls the public methods.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from metalplane.common.config import Settings
from metalplane.common.exceptions import (
    BMCError,
    Conflict,
    Invalid,
    InvalidStateRequested,
    MetalplaneError,
    NodeLocked,
    NotAuthorized,
    NotFound,
)
from metalplane.common.secrets import SecretBox
from metalplane.conductor.bios import cache_bios_settings
from metalplane.conductor.discovery import Discovery
from metalplane.conductor.steps import PHASE_OF_STATE, StepEngine, current_step, polling
from metalplane.conductor.task import NodeTask
from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.models import Node, Port, utcnow
from metalplane.drivers import base as drivers_base
from metalplane.drivers.modules import agent as agent_mod
from metalplane.drivers.registry import DriverRegistry, hardware_types
from metalplane.drivers.steps import PHASES
from metalplane.lifecycle import states
from metalplane.lifecycle.networking import NodeNetworking
from metalplane.network.plugin import NetworkPlugin

__all__ = ["Conductor"]

AGENT_STATES = frozenset({states.INSPECTING, states.INSPECT_WAIT, states.CLEANING,
                          states.CLEAN_WAIT, states.DEPLOYING, states.DEPLOY_WAIT})
# The wait state in which each agent command's result is taken.
COMMAND_STATES = {"inspect": states.INSPECT_WAIT, "erase": states.CLEAN_WAIT,
                  "deploy": states.DEPLOY_WAIT}
# The wait state each working state goes to to wait for its agent, from the state table.
WAIT_OF = {t.source: t.dest for t in states.TRANSITIONS if t.event == "wait"}

LOG = logging.getLogger(__name__)
T = TypeVar("T")
SYNC_ERROR_PREFIX = "power state sync failed: "


def _booting_agent(node: Node) -> bool:
    """The node's ramdisk is booting or running: a state of the agent's and a boot of
    the ramdisk prepared (its script is served, its lookup answered)."""
    return (node.provision_state in AGENT_STATES
            and bool((node.driver_internal_info or {}).get(agent_mod.BOOT_KEY)))


@dataclasses.dataclass
class _Periodic:
    name: str
    interval: float
    fn: Callable[[], Any]
    next_run: float = 0.0


class Conductor:
    """One conductor. ``start()`` registers it, recovers orphaned nodes and starts the
    periodic tasks; ``stop()`` waits for running work (``grace`` seconds) and leaves."""

    def __init__(self, settings: Settings, db: Database, secrets: SecretBox) -> None:
        self.settings = settings
        self.db = db
        self.secrets = secrets
        self.host = settings.conductor_hostname
        self.registry = DriverRegistry(settings)
        self.network = NetworkPlugin(settings, db)
        self.networking = NodeNetworking(settings, self.network, db)
        self.steps = StepEngine(db)
        self.discovery = Discovery(self)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="conductor")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._inflight_lock = threading.Lock()
        self._periodics = [
            _Periodic("heartbeat", settings.heartbeat_interval, self._heartbeat),
            _Periodic("power sync", settings.power_sync_interval, self.sync_power_states),
            _Periodic("wait timeouts", settings.timeout_check_interval, self.check_timeouts),
            _Periodic("step polling", settings.step_poll_interval, self.poll_steps),
            _Periodic("orphan recovery", settings.heartbeat_timeout / 2, self._recover_dead),
            _Periodic("network drift repair", settings.network_sync_interval,
                      self._sync_network_quietly),
        ]
        if settings.discovery_enabled:  # unknown MACs answered once the network exists
            self._periodics.append(_Periodic("discovery DHCP", 5.0,
                                             self.discovery.ensure_dhcp))

    # ------------------------------------------------------------------ life of the process
    def start(self, periodic: bool = True) -> None:
        for iface, error in self.registry.load_all().items():
            LOG.warning("driver interface %s could not be loaded: %s", iface, error)
        db_api.register_conductor(self.db, self.host, "", sorted(hardware_types()))
        # Anything still reserved under our own name is from a previous life of this host.
        self.recover([self.host], reason="restarted")
        self._recover_dead()
        self.sync_switches()
        if periodic:
            now = time.monotonic()
            for p in self._periodics:
                p.next_run = now + p.interval
            self._thread = threading.Thread(target=self._run_periodics, name="periodics",
                                            daemon=True)
            self._thread.start()
        LOG.info("Conductor %s started with %d workers", self.host, self.settings.workers)

    def stop(self, grace: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._inflight_lock:
            pending = set(self._inflight)
        if pending:
            LOG.info("Waiting up to %.0f s for %d running operations", grace, len(pending))
            concurrent.futures.wait(pending, timeout=grace)
        self._executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            db_api.unregister_conductor(self.db, self.host)
        self.network.close()
        self.networking.dhcp.stop()
        LOG.info("Conductor %s stopped", self.host)

    def _run_periodics(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for p in self._periodics:
                if now >= p.next_run:
                    p.next_run = now + p.interval
                    try:
                        p.fn()
                    except Exception:
                        LOG.exception("periodic task %s failed", p.name)
            # asleep until the next one is due (stop() wakes it): an idle server's wake-ups
            # cost CPU too
            wait = min(p.next_run for p in self._periodics) - time.monotonic()
            self._stop.wait(max(0.05, wait))

    def _heartbeat(self) -> None:
        db_api.touch_conductor(self.db, self.host)

    # ------------------------------------------------------------------ tasks and workers
    @contextlib.contextmanager
    def acquire(self, ident: str, purpose: str) -> Iterator[NodeTask]:
        """Lock node ``ident`` for ``purpose``; release on exit unless the work was spawned.

        Raises :class:`NotFound` or :class:`NodeLocked`.
        """
        node = db_api.reserve_node(self.db, ident, self.host, purpose)
        task = NodeTask(self, node, purpose)
        try:
            yield task
        finally:
            if not task.handed_off:
                task.release()

    def submit_task(self, task: NodeTask, fn: Callable[[NodeTask], None]) -> None:
        def run() -> None:
            try:
                fn(task)
            except Exception as exc:  # a bug must not leave the node stuck either
                LOG.exception("Node %s: unexpected error during %s", task.node.uuid,
                              task.purpose)
                self._fail_quietly(task, f"{task.purpose} failed unexpectedly: {exc}")
            finally:
                task.release()

        self._submit(run)

    def _submit(self, run: Callable[[], T]) -> concurrent.futures.Future[T]:
        """``run`` on a worker, counted among the work ``stop()`` waits for. Raises
        :class:`BMCError` (retryable) when the conductor is shutting down."""
        try:
            fut = self._executor.submit(run)
        except RuntimeError:
            raise BMCError("the conductor is shutting down; try again later") from None
        with self._inflight_lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def run_locked(self, ident: str, purpose: str,
                   fn: Callable[[NodeTask], T]) -> concurrent.futures.Future[T]:
        """Lock node ``ident`` for ``purpose`` and run ``fn(task)`` on a worker, releasing
        the lock when it returns; for requests that wait for a BMC, so that they can wait
        a bounded time (``future.result(timeout)``) while the call goes on, or cancel it if
        it has not started. The future holds ``fn``'s result, or raises :class:`NotFound`,
        :class:`NodeLocked` or what ``fn`` raised.

        Raises :class:`BMCError` (retryable) at once when the conductor is shutting down.
        """
        def run() -> T:
            with self.acquire(ident, purpose) as task:
                return fn(task)

        return self._submit(run)

    def _done(self, fut: concurrent.futures.Future[Any]) -> None:
        with self._inflight_lock:
            self._inflight.discard(fut)

    def make_safe(self, task: NodeTask) -> None:
        """Leave a node whose inspect, clean, deploy or tear down failed or was aborted
        safe: off every provider network (its DHCP entries go with it), with no agent token
        or command, powered off. Runs on a worker (spawned if the caller holds the lock
        outside one). Each part is tried even if another fails; what failed is logged and
        added to ``last_error``."""
        if not task.handed_off:
            try:
                task.spawn(self._make_safe)
            except MetalplaneError as exc:  # shutting down: the next start recovers it
                LOG.warning("Node %s: not made safe now: %s", task.node.uuid, exc.message)
            return
        self._make_safe(task)

    def _make_safe(self, task: NodeTask) -> None:
        problems = []
        parts: list[tuple[str, Callable[[], object]]] = [
            ("leaving the provider networks",
             lambda: self.networking.leave_all(task)),
            ("revoking the agent's token", lambda: task.driver.boot.clean_up_ramdisk(task)),
            ("powering off", lambda: drivers_base.power_action(task, drivers_base.POWER_OFF))]
        for what, action in parts:
            try:
                action()
            except Exception as exc:  # each part on its own; a bug is logged, not raised
                message = exc.message if isinstance(exc, MetalplaneError) else repr(exc)
                LOG.warning("Node %s: %s failed after a failure: %s", task.node.uuid, what,
                            message)
                problems.append(f"{what}: {message}")
        if problems:
            task.save(last_error=f"{task.node.last_error} (then, making the node safe: "
                                 f"{'; '.join(problems)})")

    def _fail_quietly(self, task: NodeTask, message: str) -> None:
        try:
            if task.node.provision_state in states.TRANSIENT_STATES | states.WAIT_STATES:
                task.fail(message)
            else:
                task.save(last_error=message, target_power_state=None)
        except Exception:
            LOG.exception("Node %s: could not record failure", task.node.uuid)

    # ------------------------------------------------------------------ provisioning
    def provision(self, ident: str, verb: str,
                  configdrive: dict[str, Any] | str | None = None,
                  clean_steps: list[dict[str, Any]] | None = None,
                  deploy_steps: list[dict[str, Any]] | None = None) -> None:
        """Start provision action ``verb`` on node ``ident`` (the API answers 202).

        ``clean_steps`` (required by ``clean``, manual cleaning) and ``deploy_steps``
        (``deploy``/``rebuild``): steps as :meth:`StepEngine.plan` takes them, checked
        against the node's driver before anything changes.

        Raises :class:`InvalidStateRequested` (400) naming the allowed verbs, :class:`NodeLocked`
        (409), :class:`NotFound` (404), or :class:`Invalid` (400) when the node's driver
        cannot do it or a step is unknown or lacks an argument (checked before anything
        changes).
        """
        verb = states.normalize_verb(verb)
        if verb not in states.VERBS:
            raise Invalid(f"'{verb}' is not a provision verb; verbs: {', '.join(states.VERBS)}")
        if verb == "clean" and not clean_steps:
            raise Invalid('"clean_steps" is required when setting target provision state '
                          'to clean')
        if clean_steps is not None and verb != "clean":
            raise Invalid('"clean_steps" is only valid when setting target provision state '
                          'to clean')
        if deploy_steps is not None and verb not in ("deploy", "rebuild"):
            raise Invalid('"deploy_steps" is only valid when setting target provision state '
                          'to active or rebuild')
        with self.acquire(ident, f"provision action '{verb}'") as task:
            node = task.node
            if node.maintenance and verb not in ("manage", "abort"):
                raise InvalidStateRequested(f"Node {node.uuid} is in maintenance mode "
                                   f"({node.maintenance_reason or 'no reason given'}); "
                                   f"unset maintenance first")
            t = states.next_state(node.provision_state, verb)
            self._validate_for(task, verb)
            phase = PHASE_OF_STATE.get(t.dest)
            plan = (self.steps.plan(task, phase, clean_steps if phase == "clean"
                                    else deploy_steps) if phase else [])
            if configdrive is not None:
                if not isinstance(configdrive, dict):
                    raise Invalid("configdrive must be an object with meta_data, user_data "
                                  "and/or network_data")
                task.save(instance_info={**(node.instance_info or {}),
                                         "configdrive": configdrive})
            task.process_event(verb)
            if verb == "abort":
                task.save(last_error=f"Aborted by request while in '{t.source}'")
                self.make_safe(task)
            elif phase is not None:
                task.spawn(lambda tk: self.steps.start(tk, phase, plan))
            elif t.dest == states.DELETING:
                task.spawn(self.steps.tear_down)
            elif t.dest in (states.VERIFYING, states.ADOPTING):
                task.spawn(self._do_read_power)

    def list_steps(self, ident: str) -> dict[str, list[dict[str, Any]]]:
        """``{"inspect_steps": [...], "clean_steps": [...], "deploy_steps": [...]}`` of node
        ``ident``'s driver (see :meth:`StepEngine.available`). Raises :class:`NotFound`,
        :class:`Invalid` for a node whose driver cannot be loaded."""
        driver = self.registry.driver_for(db_api.get_node(self.db, ident))
        return {f"{phase}_steps": [s.as_dict() for s in self.steps.available(driver, phase)]
                for phase in PHASES}

    def _validate_for(self, task: NodeTask, verb: str) -> None:
        d = task.driver
        if verb == "adopt" or (verb == "manage"
                               and task.node.provision_state == states.ENROLL):
            d.power.validate(task)
            d.management.validate(task)
        elif verb == "inspect":
            d.inspect.validate(task)
            self.networking.validate(task, (states.INSPECTING,))
        elif verb in ("provide", "clean", "deploy", "rebuild", "undeploy"):
            d.power.validate(task)
            d.deploy.validate(task)
            if verb in ("deploy", "rebuild"):
                d.deploy.validate_deploy(task)
            self.networking.validate(task, (states.CLEANING,) if verb in ("provide", "clean")
                                     else (states.DEPLOYING, states.CLEANING))

    def _do_read_power(self, task: NodeTask) -> None:
        """verifying and adopting: the BMC answers, and we learn the power state."""
        try:
            power = task.driver.power.get_power_state(task)
        except MetalplaneError as exc:
            task.fail(f"reading the power state failed: {exc.message}")
            return
        if task.node.provision_state == states.VERIFYING:  # Ironic's node_update_cache
            cache_bios_settings(self.db, task)
        task.process_event("done", power_state=power)

    # ------------------------------------------------------------------ power and boot
    def set_power_state(self, ident: str, target: str) -> None:
        """Start a power change (the API answers 202); failures land in ``last_error``.

        Raises :class:`Invalid` for an unknown target, :class:`NodeLocked`, :class:`NotFound`.
        """
        if target not in drivers_base.POWER_TARGETS:
            raise Invalid(f"target '{target}' is not one of "
                          f"{', '.join(drivers_base.POWER_TARGETS)}")
        with self.acquire(ident, f"power state change to '{target}'") as task:
            task.driver.power.validate(task)
            task.save(target_power_state=drivers_base.POWER_ON
                      if target == drivers_base.REBOOT else target, last_error=None)

            def work(t: NodeTask) -> None:
                try:
                    drivers_base.power_action(t, target)
                except MetalplaneError as exc:
                    t.save(last_error=exc.message, target_power_state=None)
                    LOG.error("Node %s: power %s failed: %s", t.node.uuid, target, exc.message)

            task.spawn(work)

    def set_boot_device(self, ident: str, device: str,
                        persistent: bool) -> concurrent.futures.Future[None]:
        """Start setting the boot device on a worker (synchronous for the API, as Ironic's:
        it waits for the future). A BMC failure is recorded in ``last_error`` and raised by
        the future as :class:`BMCError` (503); :class:`NotFound` and :class:`NodeLocked`
        also come through the future.

        Raises :class:`Invalid` at once for an unknown device."""
        if device not in drivers_base.BOOT_DEVICES:
            raise Invalid(f"boot_device '{device}' is not one of "
                          f"{', '.join(drivers_base.BOOT_DEVICES)}")

        def work(task: NodeTask) -> None:
            task.driver.management.validate(task)
            try:
                task.driver.management.set_boot_device(task, device, persistent)
            except BMCError as exc:
                task.save(last_error=exc.message)
                raise

        return self.run_locked(ident, f"setting boot device to '{device}'", work)

    def get_boot_device(self, ident: str) -> concurrent.futures.Future[dict[str, Any]]:
        """Start reading the boot device from the BMC on a worker. The future holds
        ``{"boot_device": str | None, "persistent": bool | None}`` or raises
        :class:`BMCError`, :class:`NotFound`, :class:`NodeLocked`."""
        def work(task: NodeTask) -> dict[str, Any]:
            task.driver.management.validate(task)
            return task.driver.management.get_boot_device(task)

        return self.run_locked(ident, "reading boot device", work)

    # ------------------------------------------------------------------ the ramdisk agent
    def _check_token(self, node: Node, token: str | None) -> None:
        stored = (node.driver_internal_info or {}).get(agent_mod.TOKEN_HASH_KEY)
        if not token or not stored:
            raise NotAuthorized("an agent token is required (the first lookup of this boot "
                                "of the ramdisk is issued one)")
        if not hmac.compare_digest(stored, agent_mod.token_digest(token)):
            raise NotAuthorized("the agent token does not match")

    def boot_script(self, ident: str) -> str:
        """The iPXE script of a node booting into the agent. Raises :class:`NotFound` for a
        node that should not be booting the ramdisk now."""
        node = db_api.get_node(self.db, ident)
        if not _booting_agent(node):
            raise NotFound(f"node {ident} is not booting the ramdisk agent")
        return agent_mod.ipxe_script(node, agent_mod.boot_url(self.settings),
                                     agent_mod.api_url(self.settings))

    def agent_lookup(self, macs: list[str], token: str | None) -> tuple[Node, str | None]:
        """The node whose ports have these MACs and that waits for its agent, and the agent
        token: issued to the first lookup of this boot of the ramdisk (only its SHA-256 is
        kept), ``None`` to a later one (as Ironic's lookup, which then shows ``******``).
        A ``token`` given must be this boot's. A running agent is a node powered on: a
        reboot into it still pending (``target_power_state``) is recorded as done.

        Raises :class:`NotFound`, :class:`NodeLocked` (409, retry: the node is not in its
        wait state yet, or busy), :class:`NotAuthorized` (a wrong token)."""
        found = {p.node_id for p in db_api.rows_where(self.db, Port,
                                                      address=[m.lower() for m in macs])}
        if len(found) != 1:
            raise NotFound(f"no single node has ports {', '.join(macs)}")
        node = db_api.node_by_id(self.db, found.pop())
        if not _booting_agent(node):
            raise NotFound(f"node {node.uuid} is not waiting for an agent "
                           f"(it is {node.provision_state})")
        if node.provision_state not in states.WAIT_STATES:
            raise NodeLocked(f"node {node.uuid} is still {node.provision_state}; look up "
                             "again once it waits for its agent")
        with self.acquire(node.uuid, "agent lookup") as task:
            node = task.node
            if node.provision_state not in states.WAIT_STATES:
                raise NotFound(f"node {node.uuid} is not waiting for an agent "
                               f"(it is {node.provision_state})")
            internal = dict(node.driver_internal_info or {})
            issued = None
            if token is not None:
                self._check_token(node, token)
            elif not internal.get(agent_mod.TOKEN_HASH_KEY):
                # hex: a token starting with "-" would read as an option on a command line
                issued = secrets.token_hex(32)
                internal[agent_mod.TOKEN_HASH_KEY] = agent_mod.token_digest(issued)
                task.stage(driver_internal_info=internal)
                LOG.info("Node %s: agent token issued to the lookup of this boot", node.uuid)
            if node.target_power_state == drivers_base.POWER_ON:
                task.stage(power_state=drivers_base.POWER_ON, target_power_state=None)
            return task.node, issued

    def agent_heartbeat(self, ident: str, token: str | None,
                        body: dict[str, Any]) -> dict[str, Any]:
        """Record a heartbeat; return the agent's next command, if any. A ``result`` for
        the current command continues the node's work on a worker.

        Raises :class:`NotAuthorized`, :class:`NotFound`, :class:`NodeLocked` (retry)."""
        with self.acquire(ident, "agent heartbeat") as task:
            node = task.node
            if node.provision_state not in AGENT_STATES:
                raise Conflict(f"node {node.uuid} is {node.provision_state}; it expects no "
                               "agent now")
            self._check_token(node, token)
            internal = dict(node.driver_internal_info or {})
            internal["agent_last_heartbeat"] = utcnow().isoformat()
            cmd = internal.get(agent_mod.COMMAND_KEY)
            if isinstance(body.get("progress"), dict):
                internal["agent_progress"] = body["progress"]
            result = body.get("result")
            # a result for the command in hand (one already taken is acknowledged only)
            if (cmd and isinstance(result, dict) and not cmd.get("done")
                    and result.get("command_id") == cmd["id"]):
                state = node.provision_state
                if COMMAND_STATES.get(cmd["name"]) != WAIT_OF.get(state, state):
                    raise Conflict(f"node {node.uuid} is {node.provision_state}; it expects "
                                   f"no {cmd['name']} result")
                if node.provision_state not in states.WAIT_STATES:
                    # The agent finished before the conductor reached the wait state (the
                    # reboot's power wait can outlast a fast command). Answering 200 would
                    # make the agent drop the result; a retryable 409 keeps it offered.
                    raise NodeLocked(f"node {node.uuid} is still {node.provision_state} "
                                     "(locked until it waits for the agent); offer the "
                                     "result again")
                internal[agent_mod.COMMAND_KEY] = {**cmd, "done": True}
                task.save(driver_internal_info=internal)
                task.spawn(lambda t: self.steps.agent_result(t, result))
                return {"command": None, "heartbeat_interval":
                        self.settings.agent_heartbeat_interval}
            out = None
            if cmd and not cmd.get("done"):
                internal[agent_mod.COMMAND_KEY] = {**cmd, "sent": True}
                out = {k: cmd[k] for k in ("id", "name", "params")}
            task.save(driver_internal_info=internal)
            return {"command": out, "heartbeat_interval": self.settings.agent_heartbeat_interval}

    # ------------------------------------------------------------------ VIFs
    def vif_list(self, ident: str) -> list[str]:
        node = db_api.get_node(self.db, ident)
        return self.networking.vifs(node)

    def vif_attach(self, ident: str, vif_id: str) -> None:
        """Attach network port ``vif_id`` (bound at once if the node is active)."""
        with self.acquire(ident, f"attaching VIF {vif_id}") as task:
            self.networking.vif_attach(task, vif_id)

    def vif_detach(self, ident: str, vif_id: str) -> None:
        with self.acquire(ident, f"detaching VIF {vif_id}") as task:
            self.networking.vif_detach(task, vif_id)

    # ------------------------------------------------------------------ periodic tasks
    def sync_switches(self) -> list[str]:
        """Drift repair: restore switch ports changed behind metalplane's back."""
        try:
            return self.network.switches.sync()
        except Exception:
            LOG.exception("switch drift repair failed")
            return []

    def sync_network(self, repair: bool = True) -> list[str]:
        """Drift repair of the switches and, with the ovn backend, OVN's NB database; with
        ``repair`` False, only report. Raises :class:`MetalplaneError` when OVN cannot be
        reached (the periodic run logs it)."""
        return self.network.sync(repair)

    def _sync_network_quietly(self) -> None:
        try:
            self.sync_network()
        except Exception:
            LOG.exception("network drift repair failed")

    def sync_power_states(self) -> None:
        """Read every idle node's power state from its BMC and record changes. Runs on the
        worker pool; nodes busy with other work are skipped this round."""
        excluded = states.TRANSIENT_STATES | {states.ENROLL}
        futures = []
        for node in db_api.nodes_for_power_sync(self.db, sorted(excluded)):
            try:
                futures.append(self._executor.submit(self._sync_one, node.uuid))
            except RuntimeError:
                return
        concurrent.futures.wait(futures, timeout=max(self.settings.power_sync_interval, 30))

    def _sync_one(self, uuid: str) -> None:
        try:
            with self.acquire(uuid, "power state sync") as task:
                before = task.node.power_state
                try:
                    actual = task.driver.power.get_power_state(task)
                except MetalplaneError as exc:
                    msg = f"{SYNC_ERROR_PREFIX}{exc.message}"
                    if task.node.last_error != msg:
                        task.save(last_error=msg)
                    LOG.warning("Node %s: %s", uuid, msg)
                    return
                if (task.node.last_error or "").startswith(SYNC_ERROR_PREFIX):
                    # the BMC answers again: our own complaint is stale (others' stay)
                    LOG.info("Node %s: the BMC answers the power sync again", uuid)
                    task.stage(last_error=None)
                target = task.node.target_power_state
                if target is not None:
                    # a reboot into the agent still coming up: record it once it has
                    if actual == target:
                        task.save(power_state=actual, target_power_state=None)
                elif actual != before:
                    LOG.warning("Node %s: power state changed outside metalplane: %s -> %s",
                                uuid, before, actual)
                    task.save(power_state=actual)
        except (NodeLocked, NotFound):
            return

    def check_timeouts(self) -> None:
        """Fail every node that waited in a wait state longer than its timeout, and every
        node whose reboot into the agent did not bring the power on within
        ``power_state_change_timeout`` (asking its BMC once)."""
        now = utcnow()
        for node in db_api.nodes_in_states(self.db, sorted(states.WAIT_STATES)):
            if self._power_on_overdue(node, now):
                self._check_power_on(node)
                continue
            setting = states.timeout_setting(node.provision_state)
            if setting is None:
                continue
            timeout = float(getattr(self.settings, setting))
            since = node.provision_updated_at or node.updated_at or now
            if now - since < dt.timedelta(seconds=timeout):
                continue
            try:
                with self.acquire(node.uuid, f"timeout of '{node.provision_state}'") as task:
                    if task.node.provision_state != node.provision_state:
                        continue
                    step = current_step(task.node)
                    during = (f" for step '{step['interface']}.{step['step']}'"
                              if step else "")
                    task.fail(f"Timeout reached while waiting in state "
                              f"'{node.provision_state}'{during} ({setting} = {timeout:.0f} "
                              f"s): the node did not call back")
            except (NodeLocked, NotFound):
                continue

    def poll_steps(self) -> None:
        """Poll, on a worker each, every idle node that waits in a step polling its BMC
        (:meth:`StepEngine.poll`); nodes busy with other work are polled next round."""
        for node in db_api.nodes_in_states(self.db, sorted(states.WAIT_STATES)):
            if not polling(node):
                continue
            try:
                with self.acquire(node.uuid, "polling the step under way") as task:
                    if polling(task.node):
                        task.spawn(self.steps.poll)
            except (NodeLocked, NotFound):
                continue
            except MetalplaneError as exc:  # shutting down
                LOG.warning("Node %s: not polled: %s", node.uuid, exc.message)
                return

    def _power_on_overdue(self, node: Node, now: dt.datetime) -> bool:
        if node.target_power_state != drivers_base.POWER_ON:
            return False
        since = node.provision_updated_at or node.updated_at or now
        return now - since >= dt.timedelta(seconds=self.settings.power_state_change_timeout)

    def _check_power_on(self, node: Node) -> None:
        """The reboot into the agent (see :func:`agent.boot_ramdisk`) has had its time and
        no agent reported: read the BMC. On: record it, the node keeps waiting for its
        agent. Off: fail the node, as a reboot that waited would have."""
        try:
            with self.acquire(node.uuid, "power-on check") as task:
                if (task.node.provision_state != node.provision_state
                        or task.node.target_power_state != drivers_base.POWER_ON):
                    return
                task.stage(target_power_state=None)
                try:
                    actual = task.driver.power.get_power_state(task)
                except MetalplaneError as exc:
                    task.fail(f"reboot into the agent: the BMC did not answer: {exc.message}")
                    return
                task.stage(power_state=actual)
                if actual != drivers_base.POWER_ON:
                    timeout = self.settings.power_state_change_timeout
                    task.fail(f"reboot into the agent: the node was still '{actual}' "
                              f"{timeout:.0f} s after the reboot (power_state_change_timeout)")
        except (NodeLocked, NotFound):
            return

    def _recover_dead(self) -> None:
        dead = [h for h in db_api.dead_conductors(self.db, self.settings.heartbeat_timeout)
                if h != self.host]
        if dead:
            self.recover(dead, reason="stopped heartbeating")

    def recover(self, hosts: list[str], reason: str) -> None:
        """Release locks held by ``hosts`` (dead conductors, or ourselves after a restart)
        and fail any node they left in a transient state, with a ``last_error`` that says so.
        Nodes in wait states keep waiting: their timeouts still apply."""
        for node in db_api.nodes_reserved_by(self.db, hosts):
            holder, purpose = node.reservation, node.reservation_purpose
            try:
                node = db_api.update_node(
                    self.db, node.id,
                    {"reservation": self.host, "reservation_purpose": "recovery"},
                    expect={"reservation": holder})
            except MetalplaneError:
                continue  # someone else recovered it
            task = NodeTask(self, node, f"recovery of a node held by {holder}")
            try:
                msg = (f"Conductor {holder} {reason} while it held this node for "
                       f"{purpose or 'an operation'} in state '{node.provision_state}'; "
                       f"the operation did not finish")
                if task.node.target_power_state:
                    task.save(target_power_state=None, last_error=msg)
                if node.provision_state in states.TRANSIENT_STATES:
                    task.fail(msg)  # last: making it safe may go on on a worker
                LOG.warning("Node %s: released lock of %s (%s)", node.uuid, holder, reason)
            finally:
                if not task.handed_off:  # else the worker making it safe releases it
                    task.release()
        if self.host in hosts:
            # a transient state without any lock can only be left over from a crash
            for node in db_api.nodes_in_states(self.db, sorted(states.TRANSIENT_STATES)):
                try:
                    with self.acquire(node.uuid, "recovery") as task:
                        task.fail(f"Found in transient state '{node.provision_state}' with no "
                                  f"conductor working on it (after a restart)")
                except (NodeLocked, NotFound):
                    continue

    # ------------------------------------------------------------------ helpers for the API
    def node_ports(self, node: Node) -> list[Port]:
        return db_api.list_ports(self.db, node_id=node.id)
