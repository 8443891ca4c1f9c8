"""The fake implementations, for tests and benchmarks (Ironic's ``fake`` interfaces).

They touch no hardware. Each call sleeps ``settings.fake_delays[<kind>]`` seconds if set
(like Ironic's ``[fake]`` options) so tests can make work take time. :data:`STATS` counts
calls in flight, so a test can see that many nodes are worked on at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from metalplane.drivers import base
from metalplane.drivers.steps import DONE, StepResult, clean_step, done_with, failed

__all__ = ["STATS", "FakeBios", "FakeBoot", "FakeDeploy", "FakeInspect", "FakeManagement",
           "FakePower"]


class _Stats:
    """Process-wide gauge of fake calls in flight and the highest it reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    def reset(self) -> None:
        with self._lock:
            self.in_flight = self.peak = self.calls = 0

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


STATS = _Stats()


def _work(iface: base.BaseInterface) -> None:
    delay = iface.settings.fake_delays.get(iface.kind, 0.0)
    STATS.enter()
    try:
        if delay > 0:
            time.sleep(delay)
    finally:
        STATS.leave()


class FakePower(base.PowerInterface):
    """Keeps the power state in the node record itself."""

    name = "fake"

    def get_power_state(self, task: base.Task) -> str:
        _work(self)
        return str(task.node.power_state or base.POWER_OFF)

    def set_power_state(self, task: base.Task, state: str) -> None:
        _work(self)

    def reboot(self, task: base.Task, wait: bool = True) -> bool:
        _work(self)
        return True


class FakeManagement(base.ManagementInterface):
    """Remembers the boot device in ``driver_internal_info``."""

    name = "fake"

    def set_boot_device(self, task: base.Task, device: str, persistent: bool = False) -> None:
        _work(self)
        internal = dict(task.node.driver_internal_info or {})
        internal["fake_boot_device"] = {"boot_device": device, "persistent": persistent}
        task.stage(driver_internal_info=internal)

    def get_boot_device(self, task: base.Task) -> dict[str, Any]:
        _work(self)
        found = (task.node.driver_internal_info or {}).get("fake_boot_device")
        return dict(found) if found else {"boot_device": None, "persistent": None}


class FakeBoot(base.BootInterface):
    name = "fake"

    def prepare_ramdisk(self, task: base.Task) -> None:
        _work(self)

    def clean_up_ramdisk(self, task: base.Task) -> None:
        _work(self)

    def prepare_instance(self, task: base.Task) -> None:
        _work(self)

    def clean_up_instance(self, task: base.Task) -> None:
        _work(self)


class FakeDeploy(base.DeployInterface):
    """Writes no image, but drives the node's real power and boot device as a deploy
    would: powered off and set to boot from disk (the common ``boot_instance`` step powers
    it on); tear-down and cleaning power it off. With the fake hardware type those are
    fakes too; with ``redfish`` the BMC sees them."""

    name = "fake"

    def deploy(self, task: base.Task) -> StepResult:
        _work(self)
        if task.node.power_state != base.POWER_OFF:
            base.power_action(task, base.POWER_OFF)
        task.driver.boot.prepare_instance(task)
        task.driver.management.set_boot_device(task, "disk", persistent=True)
        return DONE

    def tear_down(self, task: base.Task) -> None:
        _work(self)
        base.power_action(task, base.POWER_OFF)
        task.driver.boot.clean_up_instance(task)

    @clean_step(priority=10)
    def erase_devices(self, task: base.Task) -> StepResult:
        """Erases nothing; leaves the node powered off, as a real erase does."""
        _work(self)
        if task.node.power_state != base.POWER_OFF:
            base.power_action(task, base.POWER_OFF)
        return DONE


class FakeInspect(base.InspectInterface):
    """Finds nothing new: returns the node's properties unchanged and no NICs."""

    name = "fake"

    def inspect_hardware(self, task: base.Task) -> StepResult:
        _work(self)
        return done_with(base.InspectionResult(properties={}, macs=[]))


class FakeBios(base.BiosInterface):
    """Records the settings it was asked to apply in ``driver_internal_info``
    (``fake_bios_settings``), so a test can see a manual clean step ran with its args."""

    name = "fake"

    def apply_configuration(self, task: base.Task, settings: list[dict[str, Any]]) -> StepResult:
        _work(self)
        if not isinstance(settings, list) or not all(
                isinstance(s, dict) and "name" in s and "value" in s for s in settings):
            return failed('settings must be a list of {"name": ..., "value": ...}')
        internal = dict(task.node.driver_internal_info or {})
        internal["fake_bios_settings"] = {
            **internal.get("fake_bios_settings", {}),
            **{str(s["name"]): str(s["value"]) for s in settings}}
        task.stage(driver_internal_info=internal)
        return DONE

    def factory_reset(self, task: base.Task) -> StepResult:
        _work(self)
        internal = dict(task.node.driver_internal_info or {})
        internal.pop("fake_bios_settings", None)
        task.stage(driver_internal_info=internal)
        return DONE
