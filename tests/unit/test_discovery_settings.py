"""The discovery settings and the default Redfish CA bundle (``redfish_verify_ca``): what a
node's connection verifies its BMC's certificate with."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.drivers.modules import redfish


def verify_of(settings: Settings, info: dict[str, object]) -> object:
    parsed = redfish.parse_driver_info({"redfish_address": "https://127.0.10.1", **info})
    return redfish._conn_key(settings, parsed)[3]


def test_the_setting_is_the_default_bundle_a_node_can_override(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    plain, lab = Settings(), Settings(redfish_verify_ca=str(ca))
    assert verify_of(plain, {}) is True  # the system's trust store
    assert verify_of(lab, {}) == str(ca)
    assert verify_of(lab, {"redfish_verify_ca": "true"}) == str(ca)
    assert verify_of(lab, {"redfish_verify_ca": False}) is False  # that node only
    assert verify_of(lab, {"redfish_verify_ca": "/etc/other.pem"}) == "/etc/other.pem"


@pytest.mark.parametrize(("values", "message"), [
    ({"redfish_verify_ca": "/nonexistent/ca.pem"}, "redfish_verify_ca"),
    ({"discovery_provision_state": "available"}, "discovery_provision_state"),
    ({"discovery_max_per_minute": 0}, "discovery_max_per_minute"),
])
def test_bad_values_are_refused_naming_the_setting(values: dict[str, object],
                                                   message: str) -> None:
    with pytest.raises(Invalid, match=message):
        Settings(**values).validate()  # type: ignore[arg-type]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METALPLANE_DISCOVERY_ENABLED", "true")
    monkeypatch.setenv("METALPLANE_DISCOVERY_PROVISION_STATE", "manageable")
    s = Settings.from_env()
    assert s.discovery_enabled is True and s.discovery_provision_state == "manageable"
    assert Settings().discovery_enabled is False  # off by default
