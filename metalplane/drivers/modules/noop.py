"""No-op implementations for optional interfaces (Ironic's ``no-inspect``, ``no-bios``)."""

from __future__ import annotations

from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.drivers import base

__all__ = ["NoBios", "NoInspect"]


class NoInspect(base.InspectInterface):
    name = "no-inspect"

    def validate(self, task: base.Task) -> None:
        raise Invalid(
            f"node {task.node.uuid} has inspect_interface 'no-inspect'; set inspect_interface "
            f"to one its hardware type '{task.node.driver}' supports to inspect it"
        )

    def inspect_hardware(self, task: base.Task) -> base.InspectionResult | None:
        self.validate(task)
        return None


class NoBios(base.BiosInterface):
    name = "no-bios"

    def _refuse(self, task: base.Task) -> None:
        raise Invalid(f"node {task.node.uuid} has bios_interface 'no-bios'")

    def apply_configuration(self, task: base.Task, settings: list[dict[str, Any]]) -> None:
        self._refuse(task)

    def factory_reset(self, task: base.Task) -> None:
        self._refuse(task)
