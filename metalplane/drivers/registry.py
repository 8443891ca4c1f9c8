"""Finds hardware types and interface implementations through entry points.

Entry point groups: ``metalplane.hardware_types`` and
``metalplane.hardware.interfaces.<kind>``. A third-party package adds hardware by
declaring entry points in its own metadata.
"""

from __future__ import annotations

import functools
import threading
from importlib.metadata import entry_points
from typing import Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import DriverNotFound
from metalplane.drivers import base
from metalplane.drivers.hardware import HardwareType

__all__ = ["DriverRegistry", "hardware_types"]


@functools.cache
def hardware_types() -> dict[str, type[HardwareType]]:
    """Registered hardware types by name."""
    return {ep.name: ep.load() for ep in entry_points(group="metalplane.hardware_types")}


@functools.cache
def _implementations(kind: str) -> dict[str, type[base.BaseInterface]]:
    group = f"metalplane.hardware.interfaces.{kind}"
    return {ep.name: ep.load() for ep in entry_points(group=group)}


class DriverRegistry:
    """Builds the :class:`~metalplane.drivers.base.Driver` of a node; interface objects are
    stateless and shared by all nodes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._instances: dict[tuple[str, str], base.BaseInterface] = {}
        self._lock = threading.Lock()

    def hardware_type(self, name: str) -> type[HardwareType]:
        """Raises :class:`DriverNotFound` listing the known hardware types."""
        types = hardware_types()
        if name not in types:
            raise DriverNotFound(
                f"Cannot find the hardware type '{name}'; known hardware types: "
                f"{', '.join(sorted(types))}"
            )
        return types[name]

    def default_interface(self, hw: type[HardwareType], kind: str) -> str:
        """The ``kind`` interface a node of hardware type ``hw`` gets when created without
        one: the setting ``default_<kind>_interface`` if set, else the type's own default
        (Ironic's ``default_interface``). Raises :class:`DriverNotFound` when the setting
        names an interface ``hw`` does not support."""
        configured = str(getattr(self.settings, f"default_{kind}_interface", "") or "")
        if not configured:
            return hw.default(kind)
        if configured not in hw.supported[kind]:
            raise DriverNotFound(
                f"default_{kind}_interface '{configured}' is not supported by hardware "
                f"type '{hw.name}'; supported: {', '.join(hw.supported[kind])}")
        return configured

    def resolve_interfaces(self, driver: str, chosen: dict[str, Any]) -> dict[str, str]:
        """Interface names for ``driver`` given the node's ``<kind>_interface`` values (None
        means default). Raises :class:`DriverNotFound` for an unsupported choice."""
        hw = self.hardware_type(driver)
        out = {}
        for kind in base.INTERFACE_KINDS:
            name = chosen.get(f"{kind}_interface") or self.default_interface(hw, kind)
            if name not in hw.supported[kind]:
                raise DriverNotFound(
                    f"{kind}_interface '{name}' is not supported by hardware type '{driver}'; "
                    f"supported: {', '.join(hw.supported[kind])}"
                )
            out[kind] = name
        for kind, noop in base.NOOP_INTERFACES.items():
            name = chosen.get(f"{kind}_interface") or noop
            if name != noop:
                raise DriverNotFound(
                    f"{kind}_interface '{name}' is not supported by hardware type '{driver}'; "
                    f"supported: {noop}")
        return out

    def _instance(self, kind: str, name: str) -> base.BaseInterface:
        key = (kind, name)
        with self._lock:
            if key not in self._instances:
                try:
                    impls = _implementations(kind)
                except Exception as exc:  # an entry point that fails to import
                    raise DriverNotFound(f"{kind} interfaces could not be loaded: "
                                         f"{type(exc).__name__}: {exc}") from exc
                if name not in impls:
                    raise DriverNotFound(f"no {kind} interface named '{name}' is installed")
                self._instances[key] = impls[name](self.settings)
            return self._instances[key]

    def load_all(self) -> dict[str, str]:
        """Import and build every interface the installed hardware types support, so the
        first node of each type does not pay for it (the Redfish and IPMI modules import
        sushy and pyghmi: 0.15 CPU s, inside someone's first enroll otherwise) and a broken
        install shows when the server starts. Returns ``{"<kind>/<name>": error}`` for the
        ones that failed; a node using one gets :class:`DriverNotFound` with the error."""
        failed: dict[str, str] = {}
        for hw in hardware_types().values():
            for kind in base.INTERFACE_KINDS:
                for name in hw.supported[kind]:
                    try:
                        self._instance(kind, name)
                    except DriverNotFound as exc:
                        failed[f"{kind}/{name}"] = exc.message
                    except Exception as exc:  # an interface whose constructor fails
                        failed[f"{kind}/{name}"] = f"{type(exc).__name__}: {exc}"
        return failed

    def driver_for(self, node: Any) -> base.Driver:
        """The Driver (one interface object per kind) of ``node``."""
        names = self.resolve_interfaces(
            node.driver, {f"{k}_interface": getattr(node, f"{k}_interface")
                          for k in base.INTERFACE_KINDS})
        parts: dict[str, Any] = {k: self._instance(k, n) for k, n in names.items()}
        return base.Driver(hardware_type=node.driver, **parts)

    def driver_properties(self, driver: str) -> dict[str, str]:
        """driver_info keys the default interfaces of ``driver`` read (Ironic's
        ``GET /v1/drivers/{name}/properties``)."""
        hw = self.hardware_type(driver)
        props: dict[str, str] = {}
        for kind in base.INTERFACE_KINDS:
            props.update(self._instance(kind, self.default_interface(hw, kind))
                         .get_properties())
        return props
