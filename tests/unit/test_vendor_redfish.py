"""The vendor hardware types' driver_info (Ironic's keys), mapped onto Redfish's: iDRAC's
drac_* aliases and iLO's ilo_* keys, each vendor's default system."""

from __future__ import annotations

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.drivers.hardware import IDRACHardware, ILOHardware
from metalplane.drivers.modules import idrac, ilo
from metalplane.drivers.modules.redfish import parse_driver_info


def test_drac_aliases_make_the_redfish_keys() -> None:
    info = idrac.redfish_info({"drac_address": "192.0.2.31", "drac_username": "root",
                               "drac_password": "calvin"})
    assert parse_driver_info(info) == {
        "address": "https://192.0.2.31:443", "system_id": idrac.DEFAULT_SYSTEM_ID,
        "username": "root", "password": "calvin", "verify": True}
    info = idrac.redfish_info({"drac_address": "bmc.example", "drac_protocol": "http",
                               "drac_port": 8000, "redfish_system_id": "/redfish/v1/Systems/X"})
    assert parse_driver_info(info)["address"] == "http://bmc.example:8000"
    assert parse_driver_info(info)["system_id"] == "/redfish/v1/Systems/X"
    # redfish_* keys win over the aliases
    info = idrac.redfish_info({"redfish_address": "https://10.0.0.1", "drac_address": "x",
                               "redfish_username": "a", "drac_username": "b"})
    assert info["redfish_address"] == "https://10.0.0.1" and info["redfish_username"] == "a"
    assert idrac.redfish_info({"drac_address": "2001:db8::5"})["redfish_address"] == \
        "https://[2001:db8::5]:443"


def test_ilo_keys_make_the_redfish_keys() -> None:
    info = ilo.redfish_info({"ilo_address": "192.0.2.40", "ilo_username": "Administrator",
                             "ilo_password": "pw", "ilo_verify_ca": False,
                             "client_port": 8443})
    assert parse_driver_info(info) == {
        "address": "https://192.0.2.40:8443", "system_id": "/redfish/v1/Systems/1",
        "username": "Administrator", "password": "pw", "verify": False}


def test_validation_names_the_vendor_keys() -> None:
    settings = Settings()
    power = idrac.IDRACPower(settings)
    with pytest.raises(Invalid, match="drac_address"):
        power.validate_driver_info({})
    power.validate_driver_info({}, partial=True)
    power.validate_driver_info({"drac_address": "192.0.2.31", "drac_username": "root",
                                "drac_password": "calvin"})
    with pytest.raises(Invalid, match="redfish_password is required"):
        power.validate_driver_info({"drac_address": "192.0.2.31", "drac_username": "root"})
    with pytest.raises(Invalid, match="ilo_address"):
        ilo.ILOManagement(settings).validate_driver_info({"ilo_username": "x"})
    assert "drac_address" in power.get_properties()
    assert "ilo_address" in ilo.ILOInspect(settings).get_properties()


def test_hardware_types_list_their_interfaces() -> None:
    assert IDRACHardware.default("power") == "idrac-redfish"
    assert IDRACHardware.default("inspect") == "idrac-redfish"
    assert "agent" in IDRACHardware.supported["inspect"]
    assert ILOHardware.default("management") == "ilo"
