from __future__ import annotations

import pytest

from metalplane.common.bmc_address import parse_bmc_address
from metalplane.common.exceptions import Invalid
from metalplane.drivers.modules import ipmi, redfish


@pytest.mark.parametrize(("address", "driver", "info"), [
    ("redfish://10.0.0.5/redfish/v1/Systems/1", "redfish",
     {"redfish_address": "https://10.0.0.5", "redfish_system_id": "/redfish/v1/Systems/1"}),
    ("redfish+http://127.0.0.1:8000/redfish/v1/Systems/abc", "redfish",
     {"redfish_address": "http://127.0.0.1:8000",
      "redfish_system_id": "/redfish/v1/Systems/abc"}),
    ("redfish+https://bmc.example:8443", "redfish",
     {"redfish_address": "https://bmc.example:8443"}),
    ("redfish://[fd00::5]:443/redfish/v1/Systems/1", "redfish",
     {"redfish_address": "https://[fd00::5]:443", "redfish_system_id": "/redfish/v1/Systems/1"}),
    ("ipmi://10.0.0.7:6230", "ipmi", {"ipmi_address": "10.0.0.7", "ipmi_port": 6230}),
    ("ipmi://10.0.0.7", "ipmi", {"ipmi_address": "10.0.0.7", "ipmi_port": 623}),
])
def test_parse(address: str, driver: str, info: dict) -> None:
    assert parse_bmc_address(address) == (driver, info)


def test_credentials_go_to_the_right_keys() -> None:
    _, info = parse_bmc_address("ipmi://h:623", "admin", "pw")
    assert info["ipmi_username"] == "admin" and info["ipmi_password"] == "pw"
    _, info = parse_bmc_address("redfish://h/redfish/v1/Systems/1", "admin", "pw")
    assert info["redfish_username"] == "admin" and info["redfish_password"] == "pw"


@pytest.mark.parametrize(("address", "fragment"), [
    ("http://10.0.0.5", "must start with"),
    ("redfish://", "no host"),
    ("redfish://h:99999", "invalid port"),
    ("redfish://h/not/a/system", "/redfish/v1/Systems/<id>"),
    ("ipmi://h/path", "takes no path"),
])
def test_malformed(address: str, fragment: str) -> None:
    with pytest.raises(Invalid, match=fragment.replace("/", ".").replace("<", ".").replace(
            ">", ".")):
        parse_bmc_address(address)


def test_username_without_password() -> None:
    with pytest.raises(Invalid, match="password is required"):
        parse_bmc_address("ipmi://h", "admin", None)


def test_parsed_addresses_satisfy_the_drivers() -> None:
    for address in ("redfish://h/redfish/v1/Systems/1", "redfish+http://h:1"):
        _, info = parse_bmc_address(address, "u", "p")
        redfish.parse_driver_info(info)
    _, info = parse_bmc_address("ipmi://h:1000", "u", "p")
    assert ipmi.parse_driver_info(info)["port"] == 1000


def test_redfish_verify_ca() -> None:
    base = {"redfish_address": "https://h"}
    assert redfish.parse_driver_info(base)["verify"] is True
    assert redfish.parse_driver_info({**base, "redfish_verify_ca": "false"})["verify"] is False
    assert redfish.parse_driver_info({**base, "redfish_verify_ca": "/etc/ca.pem"})["verify"] \
        == "/etc/ca.pem"


def test_partial_driver_info_checks_only_what_is_there() -> None:
    redfish.parse_driver_info({}, partial=True)
    with pytest.raises(Invalid, match="redfish_address"):
        redfish.parse_driver_info({})
    with pytest.raises(Invalid, match="redfish_password"):
        redfish.parse_driver_info({"redfish_username": "u"}, partial=True)
