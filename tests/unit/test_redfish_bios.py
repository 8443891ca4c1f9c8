"""The redfish bios interface's checks of settings against an attribute registry, before
anything is written, on DMTF-shaped registry entries (as sushy-tools serves them)."""

from __future__ import annotations

from typing import Any

import pytest

from metalplane.drivers.modules.redfish_bios import check_settings, registry_fields, same_value

REGISTRY: dict[str, dict[str, Any]] = {
    "ProcTurboMode": {"AttributeName": "ProcTurboMode", "Type": "Enumeration",
                      "ReadOnly": False, "Value": [{"ValueName": "Enabled"},
                                                   {"ValueName": "Disabled"}]},
    "NumCores": {"AttributeName": "NumCores", "Type": "Integer", "ReadOnly": True,
                 "LowerBound": 10, "UpperBound": 20},
    "Threads": {"AttributeName": "Threads", "Type": "Integer", "LowerBound": 1,
                "UpperBound": 4},
    "QuietBoot": {"AttributeName": "QuietBoot", "Type": "Boolean", "ReadOnly": False},
    "SerialNumber": {"AttributeName": "SerialNumber", "Type": "String", "MinLength": 1,
                     "MaxLength": 8, "IsSystemUniqueProperty": True},
    "SecureBootStatus": {"AttributeName": "SecureBootStatus", "Type": "Enumeration",
                         "Immutable": True, "Value": [{"ValueDisplayName": "Enabled"}]},
}
CURRENT = {"ProcTurboMode": "Enabled", "NumCores": "10", "QuietBoot": "true"}


def test_good_settings_are_typed_as_the_registry_says() -> None:
    attrs, problems = check_settings(
        [{"name": "ProcTurboMode", "value": "Disabled"}, {"name": "Threads", "value": "2"},
         {"name": "QuietBoot", "value": "False"}, {"name": "SerialNumber", "value": "AB12"}],
        REGISTRY, CURRENT)
    assert problems == []
    assert attrs == {"ProcTurboMode": "Disabled", "Threads": 2, "QuietBoot": False,
                     "SerialNumber": "AB12"}


@pytest.mark.parametrize(("setting", "says"), [
    ({"name": "NumCores", "value": "12"}, "setting 'NumCores' is read-only"),
    ({"name": "SecureBootStatus", "value": "Enabled"}, "setting 'SecureBootStatus' is read-only"),
    ({"name": "HyperThreading", "value": "On"},
     "setting 'HyperThreading' is unknown to the BMC's attribute registry"),
    ({"name": "ProcTurboMode", "value": "Turbo"},
     "setting 'ProcTurboMode': 'Turbo' is not one of Enabled, Disabled"),
    ({"name": "Threads", "value": "many"}, "setting 'Threads': 'many' is not an integer"),
    ({"name": "Threads", "value": 9}, "setting 'Threads': 9 is outside [1, 4]"),
    ({"name": "QuietBoot", "value": "yes"}, "setting 'QuietBoot': 'yes' is not true or false"),
    ({"name": "SerialNumber", "value": "ABCDEFGHIJ"},
     "setting 'SerialNumber': its length 10 is outside [1, 8]"),
])
def test_a_bad_setting_is_refused_by_name_and_nothing_is_kept(setting: dict[str, Any],
                                                              says: str) -> None:
    good = ({"name": "QuietBoot", "value": "true"} if setting["name"] != "QuietBoot"
            else {"name": "Threads", "value": 2})
    _, problems = check_settings([good, setting], REGISTRY, CURRENT)
    assert says in problems
    assert len(problems) == 1  # the good one is not a problem, but nothing may be written


@pytest.mark.parametrize(("settings", "says"), [
    ([], "settings must be a non-empty list"),
    ({"name": "QuietBoot", "value": "true"}, "settings must be a non-empty list"),
    ([{"name": "QuietBoot"}], 'settings[0] must be {"name": <string>, "value": ...}'),
    ([{"name": "", "value": 1}], "settings[0] must be"),
    ([{"name": "QuietBoot", "value": "true", "extra": 1}], "settings[0] must be"),
    ([{"name": "QuietBoot", "value": "true"}, {"name": "QuietBoot", "value": "false"}],
     "setting 'QuietBoot' is given twice"),
])
def test_malformed_settings_are_refused(settings: Any, says: str) -> None:
    _, problems = check_settings(settings, REGISTRY, CURRENT)
    assert any(says in p for p in problems), problems


def test_without_a_registry_only_the_bios_current_names_are_known() -> None:
    attrs, problems = check_settings([{"name": "QuietBoot", "value": "false"}], None, CURRENT)
    assert (attrs, problems) == ({"QuietBoot": "false"}, [])
    _, problems = check_settings([{"name": "Nope", "value": "1"}], None, CURRENT)
    assert problems == ["setting 'Nope' is unknown to the BIOS"]


def test_registry_fields_are_ironics() -> None:
    assert registry_fields(REGISTRY["ProcTurboMode"]) == {
        "attribute_type": "Enumeration", "allowable_values": ["Enabled", "Disabled"],
        "lower_bound": None, "upper_bound": None, "min_length": None, "max_length": None,
        "read_only": False, "reset_required": None, "unique": None}
    assert registry_fields(REGISTRY["NumCores"])["lower_bound"] == 10
    assert registry_fields(REGISTRY["SerialNumber"])["unique"] is True
    assert registry_fields(REGISTRY["SecureBootStatus"])["allowable_values"] == ["Enabled"]
    assert set(registry_fields(None).values()) == {None}


def test_values_read_back_compare_as_text() -> None:
    assert same_value("true", True) and same_value("False", False)
    assert same_value("12", 12) and not same_value("12", 13)
    assert not same_value("Enabled", "enabled")  # only booleans ignore case
    assert same_value(None, None) and not same_value(None, "x")
