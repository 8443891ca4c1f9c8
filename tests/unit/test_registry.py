"""The driver registry loads every interface at start and reports the ones it cannot."""

from __future__ import annotations

from typing import Any

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import DriverNotFound
from metalplane.drivers import registry as registry_mod
from metalplane.drivers.registry import DriverRegistry, hardware_types


def test_load_all_builds_every_supported_interface(tmp_path: Any) -> None:
    reg = DriverRegistry(Settings(data_dir=tmp_path))
    assert reg.load_all() == {}
    wanted = {(kind, name) for hw in hardware_types().values()
              for kind, names in hw.supported.items() for name in names}
    assert ("power", "redfish") in wanted and ("power", "ipmi") in wanted
    assert set(reg._instances) == wanted


def test_load_all_reports_an_interface_that_fails_to_import(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = registry_mod._implementations.__wrapped__

    def broken(kind: str) -> Any:
        if kind == "power":
            raise ImportError("No module named 'vendor_bmc'")
        return real(kind)

    monkeypatch.setattr(registry_mod, "_implementations", broken)
    reg = DriverRegistry(Settings(data_dir=tmp_path))
    failed = reg.load_all()
    assert failed and all(k.startswith("power/") for k in failed)
    assert "vendor_bmc" in failed["power/redfish"]
    assert ("management", "redfish") in reg._instances
    with pytest.raises(DriverNotFound, match="vendor_bmc"):  # a node using it: a 4xx
        reg._instance("power", "redfish")
    monkeypatch.undo()
    with pytest.raises(DriverNotFound, match="no power interface named"):
        reg._instance("power", "no-such-interface")


def test_configured_default_interfaces_as_ironic_applies_them(tmp_path: Any) -> None:
    plain = DriverRegistry(Settings(data_dir=tmp_path))
    assert plain.resolve_interfaces("redfish", {})["boot"] == "fake"  # the type's own
    reg = DriverRegistry(Settings(data_dir=tmp_path, default_boot_interface="ipxe",
                                  default_deploy_interface="direct",
                                  default_inspect_interface="agent"))
    chosen = reg.resolve_interfaces("redfish", {})
    assert (chosen["boot"], chosen["deploy"], chosen["inspect"]) == ("ipxe", "direct", "agent")
    assert reg.resolve_interfaces("redfish", {"boot_interface": "fake"})["boot"] == "fake"
    # a default the hardware type cannot take refuses the node, naming the setting
    odd = DriverRegistry(Settings(data_dir=tmp_path, default_inspect_interface="redfish"))
    with pytest.raises(DriverNotFound, match="default_inspect_interface 'redfish'"):
        odd.resolve_interfaces("fake-hardware", {})
