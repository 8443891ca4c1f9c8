"""The policy module's pieces: the users file's project and role, the role hierarchy, the
rules a node patch needs, and the documentation of the rules kept equal to the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalplane.api import policy
from metalplane.api.auth import parse_user_line
from metalplane.api.policy import Principal, Target

HASH = "$2b$04$abcdefghijklmnopqrstuuN6qOq0m1Bl3rTT0mQfGmGB8s0u5Z0Dq"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"


@pytest.mark.parametrize(("line", "project", "role"), [
    (f"ops:{HASH}", None, "admin"),  # a plain htpasswd line: an operator
    (f"ops:{HASH}:", None, "admin"),
    (f"audit:{HASH}::reader", None, "reader"),
    (f"al:{HASH}:p1", "p1", "member"),
    (f"al:{HASH}:p1:admin", "p1", "admin"),
    (f"al:{HASH}: p1 :reader", "p1", "reader"),
])
def test_users_file_lines(line: str, project: str | None, role: str) -> None:
    who, hashed = parse_user_line(line)
    assert (who.project, who.role, hashed) == (project, role, HASH.encode())


@pytest.mark.parametrize("line", [f"al:{HASH}:p1:owner", f"al:{HASH}:p1:admin:x",
                                  "al:plain", f":{HASH}"])
def test_bad_users_file_lines(line: str) -> None:
    with pytest.raises(ValueError):
        parse_user_line(line)


def test_roles_include_the_lesser_ones() -> None:
    admin, member, reader = (Principal("u", "p1", r) for r in policy.ROLES)
    assert admin.has("member") and admin.has("reader") and member.has("reader")
    assert not member.has("admin") and not reader.has("member")
    node = Target(owner="p1")
    assert policy.may(admin, "baremetal:node:delete", node)
    assert not policy.may(member, "baremetal:node:delete", node)
    assert policy.may(reader, "baremetal:node:get", node)
    assert not policy.may(Principal("u", "p2", "admin"), "baremetal:node:get", node)


def test_a_rule_allowing_the_empty_target_allows_every_target() -> None:
    """What :func:`policy.visible` relies on to skip the per-item checks."""
    people = [Principal("u", project, role) for project in (None, "p1", "p2")
              for role in policy.ROLES]
    targets = [Target(owner=o, lessee=le, parent=pa, shared=sh) for o in (None, "p1", "p2")
               for le in (None, "p1") for pa in (None, "p2") for sh in (False, True)]
    for name in policy.RULES:
        for who in people:
            if policy.may(who, name):
                assert all(policy.may(who, name, t) for t in targets), (name, who)


def test_an_unknown_rule_allows_nothing() -> None:
    with pytest.raises(KeyError):
        policy.may(policy.NOAUTH, "baremetal:node:destroy_everything")


@pytest.mark.parametrize(("paths", "rules"), [
    (["/extra/a"], ["baremetal:node:update_extra"]),
    (["/description"], ["baremetal:node:update"]),
    (["/owner", "/name"], ["baremetal:node:update:owner", "baremetal:node:update:name"]),
    (["/deploy_interface", "/driver"], ["baremetal:node:update:driver_interfaces"]),
    (["/instance_info/x", "/resource_class"],
     ["baremetal:node:update_instance_info", "baremetal:node:update"]),
])
def test_node_patch_rules(paths: list[str], rules: list[str]) -> None:
    ops = [{"op": "add", "path": p, "value": "v"} for p in paths]
    assert policy.node_patch_rules(ops) == rules


def test_disabling_automated_cleaning_is_for_the_system_admin() -> None:
    ops = [{"op": "replace", "path": "/automated_clean", "value": False}]
    assert policy.node_patch_rules(ops) == ["baremetal:node:disable_cleaning"]
    ops[0]["value"] = True
    assert policy.node_patch_rules(ops) == ["baremetal:node:update"]


@pytest.mark.parametrize(("op", "rules"), [
    # a move changes its source too; reading a field some may not see needs its get rule
    ({"op": "move", "from": "/owner", "path": "/extra/o"},
     ["baremetal:node:update_extra", "baremetal:node:update:owner"]),
    ({"op": "copy", "from": "/driver_info/ipmi_address", "path": "/extra/a"},
     ["baremetal:node:get:driver_info", "baremetal:node:update_extra"]),
    ({"op": "test", "path": "/driver_info/ipmi_address", "value": "x"},
     ["baremetal:node:get:driver_info", "baremetal:node:update"]),
])
def test_patch_operations_that_read_or_move(op: dict[str, str], rules: list[str]) -> None:
    assert policy.node_patch_rules([op]) == rules


def test_every_patch_rule_is_a_rule() -> None:
    assert set(policy._NODE_PATCH_RULES.values()) <= set(policy.RULES)


def test_the_documented_rules_are_the_rules() -> None:
    assert policy.rules_by_persona() in (policy.__doc__ or "")
    assert policy.rules_table() in DOCS.read_text()
