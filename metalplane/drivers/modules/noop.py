"""No-op implementations for optional interfaces (Ironic's ``no-inspect``, ``no-bios``)."""

from __future__ import annotations

from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.drivers import base
from metalplane.drivers.steps import StepResult, failed

__all__ = ["NoBios", "NoInspect"]


class NoInspect(base.InspectInterface):
    name = "no-inspect"

    def validate(self, task: base.Task) -> None:
        raise Invalid(
            f"node {task.node.uuid} has inspect_interface 'no-inspect'; set inspect_interface "
            f"to one its hardware type '{task.node.driver}' supports to inspect it"
        )

    def inspect_hardware(self, task: base.Task) -> StepResult:
        self.validate(task)
        return failed("no inspect interface")


class NoBios(base.BiosInterface):
    name = "no-bios"

    def _refuse(self, task: base.Task) -> StepResult:
        return failed(f"node {task.node.uuid} has bios_interface 'no-bios'; set "
                      f"bios_interface to one its hardware type supports")

    def apply_configuration(self, task: base.Task, settings: list[dict[str, Any]]) -> StepResult:
        return self._refuse(task)

    def factory_reset(self, task: base.Task) -> StepResult:
        return self._refuse(task)
