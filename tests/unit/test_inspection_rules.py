"""Inspection rules on a captured ironic-python-agent inventory (a Dell PowerEdge R640,
tests/unit/fixtures/ipa_inventory.json): each condition and action, ironic-inspector's
format, validation errors naming the field, sensitive rules, priority order; and the
inventory's processing (properties, plugin data, LLDP wiring)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from metalplane.common.inspection_rules import (
    NodeData,
    RuleError,
    RuleFailed,
    apply_rules,
    from_inspector,
    is_inspector_format,
    validate_rule,
)
from metalplane.drivers.inventory import parse_lldp_tlvs, process, pxe_mac

DATA = json.loads((Path(__file__).parent / "fixtures" / "ipa_inventory.json").read_text())
# the issue's rules.json, as is
SEED = json.loads((Path(__file__).parent / "fixtures" / "seed_rules.json").read_text())
PORT = "9d3f0a52-7d4e-4b55-a4a8-0d7b3c6b0001"


def node() -> NodeData:
    return NodeData(fields={"uuid": "n1", "driver": "redfish", "driver_info": {},
                            "properties": {"cpus": 80}, "extra": {}, "traits": ["CUSTOM_A"],
                            "instance_info": {}, "resource_class": None},
                    ports={PORT: {"address": "b0:7b:25:de:7a:10", "extra": {},
                                  "physical_network": None}})


def run(conditions: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None,
        plugin: dict[str, Any] | None = None, n: NodeData | None = None,
        **rule: Any) -> NodeData:
    n = n or node()
    body = validate_rule({"uuid": "r1", "conditions": conditions,
                          "actions": actions or [{"op": "add-trait",
                                                  "args": {"name": "CUSTOM_MATCH"}}], **rule})
    apply_rules([body], n, DATA["inventory"], plugin if plugin is not None else {})
    return n


def holds(op: str, args: dict[str, Any], **extra: Any) -> bool:
    return "CUSTOM_MATCH" in run([{"op": op, "args": args, **extra}]).fields["traits"]


# ---------------------------------------------------------------- conditions
@pytest.mark.parametrize(("op", "args", "want"), [
    ("eq", {"values": ["{inventory[system_vendor][manufacturer]}", "Dell Inc."]}, True),
    ("eq", {"values": ["{inventory[cpu][count]}", 80]}, True),  # the type is kept
    ("eq", {"values": ["{inventory[cpu][count]}", "80"]}, False),
    ("eq", {"values": ["{inventory[cpu][count]}", "80"], "force_strings": True}, True),
    ("ne", {"values": ["{inventory[system_vendor][manufacturer]}", "HPE"]}, True),
    ("ne", {"values": ["{inventory[bmc_address]}", "10.10.0.57"]}, False),
    ("lt", {"values": ["{inventory[memory][physical_mb]}", 262144]}, True),
    ("lt", {"values": ["{inventory[memory][physical_mb]}", 196608]}, False),
    ("le", {"values": ["{inventory[memory][physical_mb]}", 196608]}, True),
    ("gt", {"values": ["{inventory[cpu][count]}", 64]}, True),
    ("gt", {"values": ["{inventory[cpu][count]}", 80]}, False),
    ("ge", {"values": ["{inventory[cpu][count]}", 80]}, True),
    ("is-empty", {"value": "{inventory[interfaces][2][lldp]}"}, True),
    ("is-empty", {"value": "{inventory[no_such_key]}"}, True),
    ("is-empty", {"value": "{inventory[hostname]}"}, False),
    ("is-none", {"value": "{inventory[interfaces][1][ipv4_address]}"}, True),
    ("is-none", {"value": "{inventory[interfaces][0][ipv4_address]}"}, False),
    ("is-true", {"value": "{inventory[interfaces][0][has_carrier]}"}, True),
    ("is-true", {"value": "{inventory[interfaces][2][has_carrier]}"}, False),
    ("is-false", {"value": "{inventory[interfaces][2][has_carrier]}"}, True),
    ("is-false", {"value": "{inventory[disks][0][rotational]}"}, True),
    ("in-net", {"address": "{inventory[bmc_address]}", "subnet": "10.10.0.0/24"}, True),
    ("in-net", {"address": "{inventory[bmc_address]}", "subnet": "10.11.0.0/24"}, False),
    ("matches", {"value": "{inventory[system_vendor][product_name]}",
                 "regex": "PowerEdge R[0-9]+"}, True),
    ("matches", {"value": "{inventory[system_vendor][product_name]}", "regex": "R640"}, False),
    ("contains", {"value": "{inventory[system_vendor][product_name]}", "regex": "R640"}, True),
    ("contains", {"value": "{inventory[cpu][model_name]}", "regex": "AMD"}, False),
    ("one-of", {"value": "{inventory[system_vendor][manufacturer]}",
                "values": ["HPE", "Dell Inc."]}, True),
    ("one-of", {"value": "{inventory[boot][current_boot_mode]}", "values": ["bios"]}, False),
])
def test_each_condition(op: str, args: dict[str, Any], want: bool) -> None:
    assert holds(op, args) is want
    assert holds("!" + op, args) is (not want)  # invert


def test_string_formatting_and_node_references() -> None:
    assert holds("eq", {"values": ["{inventory[system_vendor][manufacturer]} "
                                   "{inventory[system_vendor][product_name]}",
                                   "Dell Inc. PowerEdge R640"]})
    assert holds("eq", {"values": ["{node.driver}", "redfish"]})
    assert holds("eq", {"values": ["{node[properties][cpus]}", 80]})
    assert holds("is-true", {"value": "{data[auto_discovered]}"}) is False


def test_multiple_over_a_wildcard_and_a_loop() -> None:
    carriers = "{inventory[interfaces][*][has_carrier]}"
    assert holds("is-true", {"value": carriers})  # any (the default)
    assert holds("is-true", {"value": carriers}, multiple="all") is False
    assert holds("is-true", {"value": carriers}, multiple="first")
    assert holds("is-false", {"value": carriers}, multiple="first") is False
    speeds = "{inventory[interfaces][*][speed_mbps]}"
    assert holds("eq", {"values": [speeds, 10000]}, multiple="any")
    assert holds("eq", {"values": [speeds, 10000]}, multiple="all") is False
    # a loop: the condition on each item, combined by multiple (values compared as text)
    loop = {"loop": ["HPE", "Dell Inc."]}
    args = {"values": ["{inventory[system_vendor][manufacturer]}", "{item}"]}
    assert holds("eq", args, **loop)
    assert holds("eq", args, multiple="all", **loop) is False
    assert holds("eq", args, multiple="first", **loop) is False


# ---------------------------------------------------------------- actions
def act(op: str, args: dict[str, Any], n: NodeData | None = None, **extra: Any) -> NodeData:
    return run([], [{"op": op, "args": args, **extra}], n=n)


def test_set_del_and_extend_attribute() -> None:
    n = act("set-attribute", {"path": "driver_info/redfish_address",
                              "value": "https://{inventory[bmc_address]}"})
    assert n.fields["driver_info"] == {"redfish_address": "https://10.10.0.57"}
    n = act("set-attribute", {"path": "/properties/cpus", "value": "{inventory[cpu][count]}"})
    assert n.fields["properties"]["cpus"] == 80
    n = act("set-attribute", {"path": "extra.rack.slot", "value": 3})
    assert n.fields["extra"] == {"rack": {"slot": 3}}
    n = act("set-attribute", {"path": "resource_class", "value": "baremetal.r640"})
    assert n.fields["resource_class"] == "baremetal.r640"
    n = act("del-attribute", {"path": "properties/cpus"})
    assert "cpus" not in n.fields["properties"]
    with pytest.raises(RuleFailed, match="del-attribute"):
        act("del-attribute", {"path": "properties/nothing_here"})
    n = act("extend-attribute", {"path": "extra/tags", "value": "gpu"})
    n = act("extend-attribute", {"path": "extra/tags", "value": "gpu", "unique": True}, n=n)
    n = act("extend-attribute", {"path": "extra/tags", "value": "nvme"}, n=n)
    assert n.fields["extra"]["tags"] == ["gpu", "nvme"]
    with pytest.raises(RuleFailed, match="not a list"):
        act("extend-attribute", {"path": "properties/cpus", "value": 1})


def test_traits_and_capabilities() -> None:
    n = act("add-trait", {"name": "CUSTOM_DELL"})
    assert n.fields["traits"] == ["CUSTOM_A", "CUSTOM_DELL"]
    n = act("remove-trait", {"name": "CUSTOM_A"}, n=n)
    assert n.fields["traits"] == ["CUSTOM_DELL"]
    n = act("set-capability", {"name": "boot_mode", "value": "{inventory[boot]"
                                                             "[current_boot_mode]}"})
    n = act("set-capability", {"name": "cpu_vt", "value": "true"}, n=n)
    assert n.fields["properties"]["capabilities"] == "boot_mode:uefi,cpu_vt:true"
    n = act("unset-capability", {"name": "boot_mode"}, n=n)
    assert n.fields["properties"]["capabilities"] == "cpu_vt:true"


def test_set_port_attribute_by_uuid_or_mac() -> None:
    n = act("set-port-attribute", {"port_id": PORT, "path": "physical_network",
                                   "value": "fabric-a"})
    assert n.ports[PORT]["physical_network"] == "fabric-a"
    n = act("set-port-attribute", {"port_id": "B0:7B:25:DE:7A:10", "path": "extra/switch",
                                   "value": "{plugin_data[parsed_lldp][eno1]"
                                            "[switch_system_name]}"})
    assert n.ports[PORT]["extra"]["switch"] == "{plugin_data[parsed_lldp][eno1]" \
                                               "[switch_system_name]}"  # no such data given
    with pytest.raises(RuleFailed, match="no port"):
        act("set-port-attribute", {"port_id": "00:00:00:00:00:01", "path": "extra/x",
                                   "value": 1})


def test_loop_over_actions() -> None:
    n = run([], [{"op": "set-attribute", "args": {"path": "{item[path]}",
                                                  "value": "{item[value]}"},
                  "loop": [{"path": "driver_info/ipmi_address",
                            "value": "{inventory[bmc_address]}"},
                           {"path": "extra/serial",
                            "value": "{inventory[system_vendor][serial_number]}"}]}])
    assert n.fields["driver_info"]["ipmi_address"] == "10.10.0.57"
    assert n.fields["extra"]["serial"] == "8XK4L33"


def test_fail_and_log() -> None:
    with pytest.raises(RuleFailed, match=r"rule r1 \(no R640s\) failed the node: "
                                         r"PowerEdge R640 is not supported"):
        run([], [{"op": "fail", "args": {"msg": "{inventory[system_vendor][product_name]} "
                                                "is not supported"}}],
            description="no R640s")
    n = run([], [{"op": "log", "args": {"msg": "BMC at {inventory[bmc_address]}",
                                        "level": "warning"}}])
    assert n.logs == [("warning", "BMC at 10.10.0.57")]


def test_sensitive_rules_keep_values_out_of_logs_and_errors() -> None:
    n = run([], [{"op": "log", "args": {"msg": "password {inventory[bmc_address]}"}}],
            sensitive=True)
    assert n.logs == [("info", "******")]
    with pytest.raises(RuleFailed) as exc:
        run([], [{"op": "fail", "args": {"msg": "secret calvin"}}], sensitive=True)
    assert "calvin" not in str(exc.value) and "r1" in str(exc.value)


def test_priority_order_and_conditions_all_needed() -> None:
    n = node()
    rules = [validate_rule({"uuid": u, "priority": p, "conditions": c, "actions": [
        {"op": "set-attribute", "args": {"path": "extra/last", "value": u}}]})
        for u, p, c in [("low", 10, []), ("high", 90, []),
                        ("never", 99, [{"op": "eq", "args": {"values": [1, 1]}},
                                       {"op": "eq", "args": {"values": [1, 2]}}])]]
    assert apply_rules(rules, n, DATA["inventory"], {}) == ["high", "low"]
    assert n.fields["extra"]["last"] == "low"


# ---------------------------------------------------------------- ironic-inspector's format
def test_seed_rule_in_inspector_format_applies_unchanged() -> None:
    assert is_inspector_format(SEED[0])
    rule = validate_rule({**from_inspector(SEED[0]), "uuid": "seed"})
    assert rule["conditions"][1] == {"op": "eq", "args": {"values": [
        "{data[inventory][system_vendor][manufacturer]}", "Dell Inc."]}}
    n = node()
    assert apply_rules([rule], n, DATA["inventory"], {"auto_discovered": False}) == []
    assert n.fields["driver"] == "redfish"
    assert apply_rules([rule], n, DATA["inventory"], {"auto_discovered": True}) == ["seed"]
    assert n.fields["driver"] == "idrac"
    assert n.fields["driver_info"] == {"drac_username": "root", "drac_password": "calvin",
                                       "drac_address": "10.10.0.57"}


def test_inspector_conditions_invert_multiple_and_node_paths() -> None:
    rule = from_inspector({"conditions": [
        {"op": "eq", "field": "node://driver", "value": "redfish"},
        {"op": "matches", "field": "data://inventory.interfaces[*].mac_address",
         "value": "b0:7b:25:.*", "multiple": "all"},
        {"op": "ge", "field": "inventory.cpu.count", "value": 8},  # no scheme: data://
        {"op": "in-net", "field": "data://inventory.bmc_address", "value": "10.0.0.0/8"},
        {"op": "is-empty", "field": "data://inventory.interfaces[2].lldp"},
        {"op": "eq", "field": "data://inventory.boot.current_boot_mode", "value": "bios",
         "invert": True}],
        "actions": [{"action": "add-trait", "name": "CUSTOM_MATCH"},
                    {"action": "set-port-attribute", "port": PORT, "path": "extra/ok",
                     "value": True},
                    {"action": "fail", "message": "stop"}]})
    assert rule["actions"][1]["args"]["port_id"] == PORT
    assert rule["actions"][2] == {"op": "fail", "args": {"msg": "stop"}}
    n = node()
    with pytest.raises(RuleFailed, match="stop"):
        apply_rules([validate_rule({**rule, "uuid": "x"})], n, DATA["inventory"], {})
    assert "CUSTOM_MATCH" in n.fields["traits"] and n.ports[PORT]["extra"] == {"ok": True}


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(("rule", "field", "text"), [
    ({"conditions": [{"op": "equals", "args": {}}]}, "conditions[0].op", "unknown operator"),
    ({"conditions": [{"op": "!!eq", "args": {"values": [1]}}]}, "conditions[0].op", "one '!'"),
    ({"actions": [{"op": "explode", "args": {}}]}, "actions[0].op", "unknown action"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "provision_state", "value": 1}}]},
     "actions[0].args.path", "bad path"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "driver_info//x", "value": 1}}]},
     "actions[0].args.path", "bad path"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "driver",
                                                   "value": "{data[inventory]"}}]},
     "actions[0].args.value", "bad format string"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "driver", "value": "{secret}"}}]},
     "actions[0].args.value", "bad format string"),
    ({"actions": [{"op": "set-attribute", "args": {"path": "driver"}}]},
     "actions[0].args", "needs argument(s) value"),
    ({"actions": [{"op": "log", "args": {"msg": "x", "colour": "red"}}]}, "actions[0].args",
     "no argument(s) colour"),
    ({"conditions": [{"op": "matches", "args": {"value": "x", "regex": "("}}]},
     "conditions[0].args.regex", "bad regular expression"),
    ({"conditions": [{"op": "in-net", "args": {"address": "x", "subnet": "10.0.0.0/33"}}]},
     "conditions[0].args.subnet", "bad network"),
    ({"conditions": [{"op": "eq", "args": {"values": [1, 1]}, "multiple": "some"}]},
     "conditions[0].multiple", "must be one of"),
    ({"priority": 10000}, "priority", "0 to 9999"),
    ({"phase": "early"}, "phase", "invalid phase"),
    ({"actions": []}, "actions", "non-empty"),
    ({"owner": "me"}, "owner", "unknown field"),
])
def test_bad_rules_name_the_field(rule: dict[str, Any], field: str, text: str) -> None:
    body = {"actions": [{"op": "log", "args": {"msg": "x"}}], **rule}
    with pytest.raises(RuleError) as exc:
        validate_rule(body)
    assert exc.value.field == field and text in str(exc.value)


def test_bad_inspector_paths_are_refused() -> None:
    with pytest.raises(RuleError, match=r"conditions\[0\].field.*scheme"):
        from_inspector({"conditions": [{"op": "eq", "field": "http://x", "value": 1}],
                        "actions": [{"action": "fail", "message": "x"}]})
    with pytest.raises(RuleError, match=r"conditions\[0\].op.*unknown operator"):
        from_inspector({"conditions": [{"op": "near", "field": "data://x"}], "actions": []})


def test_rule_inputs_are_not_changed() -> None:
    inventory = copy.deepcopy(DATA["inventory"])
    run([], [{"op": "set-attribute", "args": {"path": "extra/x", "value": "{inventory}"}}])
    assert DATA["inventory"] == inventory


# ---------------------------------------------------------------- inventory processing
def test_process_ipa_inventory() -> None:
    done = process(DATA)
    assert done.inventory is DATA["inventory"]
    assert done.properties == {"cpus": 80, "cpu_arch": "x86_64", "memory_mb": 196608,
                               "local_gb": 1600321314816 // 1024 ** 3 - 1}
    assert done.macs == ["b0:7b:25:de:7a:10", "b0:7b:25:de:7a:11", "b0:7b:25:de:7a:12"]
    pd = done.plugin_data
    assert pd["root_disk"]["name"] == "/dev/sda" and "inventory" not in pd
    assert set(pd["all_interfaces"]) == {"eno1", "eno2", "eno3"}
    assert pd["all_interfaces"]["eno1"]["pxe_enabled"] is True
    assert pd["all_interfaces"]["eno2"]["pxe_enabled"] is False
    assert pd["parsed_lldp"]["eno1"] == {
        "switch_chassis_id": "7c:fe:90:12:34:56", "switch_port_id": "Ethernet1/5",
        "switch_port_description": "server rack 12 u3 nic1",
        "switch_system_name": "tor-a12.dc1.example.net",
        "switch_system_description": "Arista Networks EOS version 4.28.3M running on an "
                                     "Arista DCS-7050SX3-48YC8"}
    assert pd["parsed_lldp"]["eno2"] == {"switch_chassis_id": "tor-a12",
                                         "switch_port_id": "7c:fe:90:12:34:99"}
    # a switch_id only from a MAC chassis ID (Ironic's local-link-connection hook)
    assert done.wiring == {"b0:7b:25:de:7a:10": {"switch_id": "7c:fe:90:12:34:56",
                                                 "port_id": "Ethernet1/5",
                                                 "switch_info": "tor-a12.dc1.example.net"}}


def test_process_tolerates_odd_input() -> None:
    assert process({}).inventory == {} and process({"inventory": "x"}).properties == {}
    odd = process({"inventory": {"cpu": "many", "interfaces": [
        {"name": "x", "mac_address": "not-a-mac"}, "junk",
        {"name": "y", "mac_address": "52:54:00:00:00:01", "lldp": [[1, "zz"], "bad"]}]}})
    assert odd.macs == ["52:54:00:00:00:01"] and odd.wiring == {}
    assert parse_lldp_tlvs("nope") == {}
    assert pxe_mac({"boot": {"pxe_interface": "B0:7B:25:DE:7A:10"}}) == "b0:7b:25:de:7a:10"
    assert pxe_mac({"boot": {"pxe_interface": "garbage"}}) is None
