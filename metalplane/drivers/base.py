"""Hardware interfaces: one abstract class per concern, as Ironic's ``drivers/base.py``.

A *hardware type* (:mod:`metalplane.drivers.hardware`) lists the implementations of each
interface it supports; a node picks one per interface (``power_interface`` …) or gets the
type's default. Implementations register as entry points
(``metalplane.hardware.interfaces.<kind>``). Every method receives a :class:`Task`: the
node, its decrypted ``driver_info`` and the interfaces of its driver, while the conductor
holds the node's lock. Interfaces keep no per-node state; vendor quirks belong in their
own module, not in these bodies.

Power states are Ironic's strings: ``"power on"``, ``"power off"``, ``"rebooting"``.
Boot devices are ``"pxe"``, ``"disk"``, ``"cdrom"``, ``"bios"``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import tenacity

from metalplane.common.config import Settings
from metalplane.common.exceptions import BMCError, Invalid
from metalplane.drivers.steps import (
    DONE,
    Step,
    StepResult,
    clean_step,
    deploy_step,
    failed,
    inspect_step,
)

__all__ = [
    "BOOT_DEVICES",
    "CONFIGDRIVE_KEY",
    "INTERFACE_KINDS",
    "NOOP_INTERFACES",
    "POWER_OFF",
    "POWER_ON",
    "REBOOT",
    "BaseInterface",
    "BiosInterface",
    "BootInterface",
    "DeployInterface",
    "Driver",
    "InspectInterface",
    "InspectionResult",
    "ManagementInterface",
    "NodeNetwork",
    "PowerInterface",
    "Task",
    "bmc_call",
    "bmc_slot",
    "power_action",
    "require_keys",
]

POWER_ON = "power on"
POWER_OFF = "power off"
REBOOT = "rebooting"
POWER_TARGETS = (POWER_ON, POWER_OFF, REBOOT)
BOOT_DEVICES = ("pxe", "disk", "cdrom", "bios")
INTERFACE_KINDS = ("power", "management", "boot", "deploy", "inspect", "bios")
# ``driver_internal_info`` key of the config drive the conductor generates for a deploy
# (the user's own, if any, stays in ``instance_info/configdrive``: spec and status apart).
CONFIGDRIVE_KEY = "configdrive"
# Ironic's interfaces that every hardware type here supports only as a no-op: the node
# field ``<kind>_interface`` takes just this name (the default), and nothing is loaded.
NOOP_INTERFACES = {"rescue": "no-rescue", "console": "no-console", "vendor": "no-vendor",
                   "raid": "no-raid", "storage": "noop"}

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class NodeNetwork(Protocol):
    """The node's network interface as steps see it (Ironic's ``task.driver.network``):
    :mod:`metalplane.lifecycle.networking` implements it."""

    def add_network(self, task: Task, kind: str) -> None:
        """Put the node's ports on provider network ``kind`` (``inspection``, ``cleaning``,
        ``provisioning``, ``rescuing``)."""

    def remove_network(self, task: Task, kind: str) -> None:
        """Take the node's ports off provider network ``kind``."""

    def configure_tenant(self, task: Task) -> None:
        """Bind the node's tenant VIFs (the node must be powered off)."""

    def get_node_network_data(self, task: Task) -> dict[str, Any]:
        """The node's network configuration for its ramdisk (``network_data.json``
        format; ``{}``: none, the ramdisk asks DHCP): a virtual media boot's DHCP-less
        configuration."""


class Task(Protocol):
    """What a driver sees while the conductor holds a node's lock."""

    @property
    def node(self) -> Any: ...  # metalplane.db.models.Node, detached

    @property
    def driver(self) -> Driver: ...

    @property
    def driver_info(self) -> dict[str, Any]: ...  # secrets decrypted

    @property
    def settings(self) -> Settings: ...

    @property
    def network(self) -> NodeNetwork: ...  # the node's network interface

    @property
    def secrets(self) -> Any: ...  # metalplane.common.secrets.SecretBox

    @property
    def cache(self) -> dict[str, Any]:
        """Objects a driver keeps for the rest of this task (one holding of the lock), e.g.
        a BMC's resource, so that several calls in one task need not fetch it again.
        Emptied when the node's driver or driver_info changes."""

    def save(self, **fields: Any) -> None:
        """Persist node fields (e.g. power_state) at once."""

    def stage(self, **fields: Any) -> None:
        """Set node fields now and persist them with the task's next write (a save, a
        state change or the lock's release), for results nobody waits to see."""


@dataclasses.dataclass(frozen=True)
class InspectionResult:
    """What inspection learned: ``properties`` to merge into the node (cpus, cpu_arch,
    memory_mb, local_gb), the MAC addresses of its NICs (ports to create) and, from LLDP,
    the ``local_link_connection`` of each NIC wired to a switch (``{mac: {"switch_id",
    "port_id", "switch_info"?}}``), and the ``inventory`` in ironic-python-agent's shape
    with the ``plugin_data`` processed from it (:mod:`metalplane.drivers.inventory`;
    ``None``: the inspection gave none, and no rule is applied)."""

    properties: dict[str, Any]
    macs: list[str]
    wiring: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    inventory: dict[str, Any] | None = None
    plugin_data: dict[str, Any] = dataclasses.field(default_factory=dict)


class BaseInterface(abc.ABC):
    """Common to all interfaces. ``name`` is the registered implementation name."""

    name: str = ""
    kind: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_properties(self) -> dict[str, str]:
        """driver_info keys this implementation reads, mapped to a description."""
        return {}

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        """Raise :class:`Invalid` for a malformed driver_info. ``partial``: keys still
        missing are fine (a node in ``enroll`` may be incomplete); present ones must be
        well-formed."""

    def validate(self, task: Task) -> None:
        """Raise :class:`Invalid` if the node cannot use this interface as configured."""
        self.validate_driver_info(task.driver_info)

    def agent_result(self, task: Task, step: Step, result: dict[str, Any]) -> StepResult:
        """Finish ``step`` of this interface, which waited for the ramdisk agent, with the
        agent's ``result`` (``{"status": "succeeded" | "failed", "error"?, "data"?}``).
        Interfaces whose steps wait for the agent override this."""
        return failed(f"{self.kind} interface '{self.name}' expects no agent result for "
                      f"step {step.step}")

    def poll_step(self, task: Task, step: Step) -> StepResult:
        """Whether ``step`` of this interface, which returned
        :data:`~metalplane.drivers.steps.POLL`, is over: POLL again (not yet), DONE or
        failed. Called by the conductor every ``step_poll_interval`` s while the node waits.
        Interfaces whose steps poll override this."""
        return failed(f"{self.kind} interface '{self.name}' has no step to poll "
                      f"({step.step})")


class PowerInterface(BaseInterface):
    kind = "power"

    @abc.abstractmethod
    def get_power_state(self, task: Task) -> str:
        """Return ``"power on"`` or ``"power off"``. Raises :class:`BMCError`."""

    @abc.abstractmethod
    def set_power_state(self, task: Task, state: str) -> None:
        """Turn power to ``state`` and return once the BMC reports it (bounded by
        ``settings.power_state_change_timeout``). Raises :class:`BMCError`."""

    @abc.abstractmethod
    def reboot(self, task: Task, wait: bool = True) -> bool:
        """Power-cycle (or power on if off). ``wait``: return once the BMC reports on
        (bounded by ``settings.power_state_change_timeout``) and return True. Without
        ``wait``, return once the BMC took the request: True if the power is on already,
        False while the change is under way. Raises :class:`BMCError`."""


class ManagementInterface(BaseInterface):
    kind = "management"

    def get_supported_boot_devices(self, task: Task) -> list[str]:
        return list(BOOT_DEVICES)

    @abc.abstractmethod
    def set_boot_device(self, task: Task, device: str, persistent: bool = False) -> None:
        """Boot from ``device`` next time (``persistent``: every time). Raises :class:`BMCError`."""

    @abc.abstractmethod
    def get_boot_device(self, task: Task) -> dict[str, Any]:
        """Return ``{"boot_device": str | None, "persistent": bool | None}``."""


class BootInterface(BaseInterface):
    """Prepares how the node boots: the ramdisk for inspection/cleaning/deploy, then the
    instance. The fake one does nothing; PXE/iPXE comes with the ramdisk agent."""

    kind = "boot"
    # the device the node boots the ramdisk agent from once prepare_ramdisk is done
    # ("pxe", "cdrom"); "" for an interface that does not boot the agent
    agent_boot_device: str = ""

    @abc.abstractmethod
    def prepare_ramdisk(self, task: Task) -> None: ...

    @abc.abstractmethod
    def clean_up_ramdisk(self, task: Task) -> None: ...

    @abc.abstractmethod
    def prepare_instance(self, task: Task) -> None: ...

    @abc.abstractmethod
    def clean_up_instance(self, task: Task) -> None: ...

    def dhcp_options(self, task: Task) -> list[dict[str, Any]]:
        """``extra_dhcp_opts`` the node's provider-network ports need to boot this way."""
        return []


class DeployInterface(BaseInterface):
    """Puts an image on the node and takes it off again, in deploy steps (Ironic's: the
    implementation's ``deploy`` at 100, then, common to all, ``switch_to_tenant_network``
    at 30 and ``boot_instance`` at 20), and cleans it in clean steps.

    :meth:`prepare_cleaning` / :meth:`tear_down_cleaning` run around the clean steps when
    one of them needs the ramdisk agent.
    """

    kind = "deploy"

    def validate_deploy(self, task: Task) -> None:
        """Raise :class:`Invalid` if the node cannot be deployed as its instance_info says."""

    @deploy_step(priority=100)
    @abc.abstractmethod
    def deploy(self, task: Task) -> StepResult:
        """Start the deployment (write the image, or boot the agent that writes it)."""

    @deploy_step(priority=30)
    def switch_to_tenant_network(self, task: Task) -> StepResult:
        """Off the provisioning network, onto the tenant VIFs, the node powered off while
        its ports change network (Ironic's step of the same name)."""
        if task.node.power_state != POWER_OFF:
            power_action(task, POWER_OFF)
        task.network.remove_network(task, "provisioning")
        task.network.configure_tenant(task)
        return DONE

    @deploy_step(priority=20)
    def boot_instance(self, task: Task) -> StepResult:
        """Power the node on into its instance."""
        power_action(task, POWER_ON)
        return DONE

    @abc.abstractmethod
    def tear_down(self, task: Task) -> None:
        """Undeploy: power off and forget how the instance booted."""

    def prepare_cleaning(self, task: Task) -> None:
        """Boot what the clean steps that need the ramdisk run in."""

    def tear_down_cleaning(self, task: Task) -> None:
        """Undo :meth:`prepare_cleaning` once the clean steps are done."""


class InspectInterface(BaseInterface):
    kind = "inspect"

    @inspect_step(priority=100)
    @abc.abstractmethod
    def inspect_hardware(self, task: Task) -> StepResult:
        """Done with an :class:`InspectionResult` as ``data``, or wait for the agent."""

    def tear_down_inspection(self, task: Task) -> None:
        """Undo what the inspect steps prepared (the agent's ramdisk) once they are done."""


class BiosInterface(BaseInterface):
    """BIOS settings, applied in manual cleaning (Ironic's ``bios`` clean steps), and read
    for the conductor to keep (``GET /v1/nodes/{id}/bios``)."""

    kind = "bios"

    def get_settings(self, task: Task) -> list[dict[str, Any]] | None:
        """The node's BIOS settings now: ``[{"name": str, "value": str | None,
        "attribute_type"?, "allowable_values"?, "lower_bound"?, "upper_bound"?,
        "min_length"?, "max_length"?, "read_only"?, "reset_required"?, "unique"?}]``
        (the registry fields of Ironic's ``bios_settings``, API 1.74), or None when this
        interface cannot read them (the stored ones are then left alone). Raises
        :class:`BMCError`."""
        return None

    @clean_step(priority=0, argsinfo={"settings": {
        "description": "A list of BIOS settings to apply, each {\"name\": str, "
                       "\"value\": str}", "required": True}})
    @abc.abstractmethod
    def apply_configuration(self, task: Task, settings: list[dict[str, Any]]) -> StepResult:
        """Apply ``settings`` (``[{"name": str, "value": str}]``)."""

    @clean_step(priority=0)
    @abc.abstractmethod
    def factory_reset(self, task: Task) -> StepResult:
        """Reset the BIOS settings to their factory defaults."""


@dataclasses.dataclass(frozen=True)
class Driver:
    """The interfaces one node uses: its hardware type's composition."""

    hardware_type: str
    power: PowerInterface
    management: ManagementInterface
    boot: BootInterface
    deploy: DeployInterface
    inspect: InspectInterface
    bios: BiosInterface

    def interfaces(self) -> dict[str, BaseInterface]:
        return {k: getattr(self, k) for k in INTERFACE_KINDS}


def require_keys(info: dict[str, Any], keys: list[str], where: str,
                 partial: bool = False) -> None:
    """Raise :class:`Invalid` naming every key of ``keys`` missing from ``info`` (nothing
    when ``partial``)."""
    if partial:
        return
    missing = [k for k in keys if info.get(k) in (None, "")]
    if missing:
        raise Invalid(
            f"{where} needs driver_info/{', driver_info/'.join(missing)}, which is missing"
        )


# One semaphore per (BMC address, limit): the registry's lock is held only to look one up,
# never while a BMC is talked to.
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@contextlib.contextmanager
def bmc_slot(settings: Settings, bmc: str) -> Iterator[None]:
    """Hold one of the ``settings.bmc_max_concurrent_calls`` slots of BMC ``bmc`` (its
    address, e.g. ``http://10.0.0.5`` or ``10.0.0.6:623``) for the ``with`` block.

    Waits at most ``settings.bmc_slot_wait`` seconds for a free slot, then raises
    :class:`BMCError` (retryable) saying the BMC is busy: a BMC that stopped answering holds
    its slots until its calls time out, and the calls queued behind them give up instead of
    holding worker threads.
    """
    limit = max(1, settings.bmc_max_concurrent_calls)
    with _slots_lock:
        slot = _slots.setdefault((bmc, limit), threading.BoundedSemaphore(limit))
    if not slot.acquire(timeout=settings.bmc_slot_wait):
        raise BMCError(f"the BMC at {bmc} is busy or slow: {limit} calls to it were still "
                       f"under way after {settings.bmc_slot_wait:g} s "
                       f"(bmc_max_concurrent_calls); try again later")
    try:
        yield
    finally:
        slot.release()


def bmc_call(
    settings: Settings,
    what: str,
    fn: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    permanent: tuple[type[BaseException], ...] = (),
    bmc: str | None = None,
) -> T:
    """Call ``fn``; retry errors of a ``transient`` class with exponential backoff
    (``settings.bmc_retries`` attempts from ``settings.bmc_retry_wait`` seconds). With
    ``bmc`` (the BMC's address), each attempt runs in one of its slots (:func:`bmc_slot`),
    none is held during the backoff.

    ``fn`` must bound its own exchanges (the drivers pass ``settings.bmc_connect_timeout``
    and ``settings.bmc_read_timeout`` to their libraries): this function cannot interrupt it.

    Raises :class:`BMCError` saying ``what`` failed, how often it was tried and why, for
    transient errors that outlived the retries and for ``permanent`` ones at once; and
    :class:`BMCError` from :func:`bmc_slot` when the BMC stays busy.
    """
    attempts = max(1, settings.bmc_retries)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=settings.bmc_retry_wait, max=30),
        retry=tenacity.retry_if_exception_type(transient),
        reraise=True,
        before_sleep=lambda rs: LOG.warning(
            "%s failed (attempt %d of %d), retrying: %s",
            what, rs.attempt_number, attempts, rs.outcome.exception() if rs.outcome else "",
        ),
    )

    def attempt() -> T:
        if bmc is None:
            return fn()
        with bmc_slot(settings, bmc):
            return fn()

    try:
        return retrying(attempt)
    except transient as exc:
        raise BMCError(f"{what} failed after {attempts} attempts: {_describe(exc)}") from exc
    except permanent as exc:
        raise BMCError(f"{what} failed: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 500 else text[:497] + "..."


def power_action(task: Task, state: str, wait: bool = True) -> None:
    """Drive the node's power to ``state`` (``POWER_ON``/``POWER_OFF``/``REBOOT``) through its
    power interface and record the resulting ``power_state``. The change in flight
    (``target_power_state``) is written at once, the result with the task's next write.

    ``wait=False`` (``REBOOT`` only): return once the BMC took the request. While the power
    comes on, ``target_power_state`` stays ``POWER_ON``; whoever sees the node up records
    it (the agent's lookup, the power sync, or the conductor's check
    ``power_state_change_timeout`` after the reboot). Raises :class:`BMCError`."""
    power = task.driver.power
    task.save(target_power_state=POWER_ON if state == REBOOT else state)
    try:
        if state == REBOOT:
            confirmed = power.reboot(task, wait=wait)
            reached = POWER_ON
        else:
            power.set_power_state(task, state)
            confirmed, reached = True, state
    except Exception:
        task.save(target_power_state=None)
        raise
    if confirmed:
        task.stage(power_state=reached, target_power_state=None)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float, what: str,
             longest: float | None = None) -> None:
    """Poll ``predicate`` until true: first after ``interval`` s, then at intervals half as
    long again each time up to ``longest`` s (default: ``interval``, no backoff), and once
    more at the deadline. Raise :class:`BMCError` after ``timeout`` s. Bounded: at most
    ``timeout / interval + 1`` polls. (Ironic waits for power the same way, backing off from
    1 s: a BMC's power change takes seconds, and asking often only loads it.)"""
    deadline = time.monotonic() + timeout
    longest = max(interval, longest or interval)
    while True:
        left = deadline - time.monotonic()
        time.sleep(max(0.0, min(interval, left)))
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise BMCError(f"timed out after {timeout:.0f} s waiting for {what}")
        interval = min(longest, interval * 1.5)
