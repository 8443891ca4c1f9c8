"""Roles and project scoping (issue #17 item 3): Ironic's and Neutron's default policies.

One http_basic server for the module, with two projects (p1, p2) of three roles each
(``1a`` is p1's admin, ``1m`` its member, ``1r`` its reader; so for p2) and a system admin
(``sa``) and reader (``sr``). The fixture world, made by the system admin:

* nodes ``own`` (owner p1), ``lease`` (owner p2, lessee p1), ``own2`` (owner p2) and
  ``free`` (no owner), each with one port and one portgroup;
* allocations ``own`` (owner p1), ``p2`` and ``free``;
* networks ``own`` (p1), ``p2``, ``shared`` (the system's, shared) and ``private`` (the
  system's), each with a subnet; network ports ``own`` (p1 on own), ``p2``, ``shared-p2``
  (p2's on shared) and ``shared`` (the system's on shared); security groups and one rule
  each, ``own`` (p1), ``p2`` and ``sys``.

The matrix runs every endpoint family as every user: a user allowed gets the answer of
success, one who sees the target but may not act 403 naming the rule, one who may not see
it 404 (400 where Ironic answers so for a body naming an unseen node). Operations that
change state run on a fresh copy of their target, removed afterwards. The lists come
first, so they see the fixture world only.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from typer.testing import CliRunner

from metalplane.cli.main import app as cli_app
from tests.helpers.server import RunningServer, running_server

PASSWORD = "pw"
USERS = {"sa": (None, "admin"), "sr": (None, "reader"),
         "1a": ("p1", "admin"), "1m": ("p1", "member"), "1r": ("p1", "reader"),
         "2a": ("p2", "admin"), "2m": ("p2", "member"), "2r": ("p2", "reader")}
ALL = frozenset(USERS)
SYS = frozenset({"sa", "sr"})
P1 = frozenset({"1a", "1m", "1r"})
P2 = frozenset({"2a", "2m", "2r"})
SEEN_BY = {"own": SYS | P1, "lease": ALL, "shared": ALL, "any": ALL}  # who sees a target
_macs = itertools.count(0x10)
_cidrs = itertools.count(10)


def mac() -> str:
    n = next(_macs)
    return f"52:54:00:aa:{n >> 8:02x}:{n & 0xFF:02x}"


def cidr() -> str:
    return f"10.77.{next(_cidrs)}.0/24"


def message(r: httpx.Response) -> str:
    body = r.json()
    if "NeutronError" in body:
        return str(body["NeutronError"]["message"])
    return str(json.loads(body["error_message"])["faultstring"])


@dataclass
class World:
    server: RunningServer
    clients: dict[str, httpx.Client]
    ids: dict[str, str] = field(default_factory=dict)  # "node:own" -> its UUID or id
    trash: list[str] = field(default_factory=list)  # network ports to remove after a case

    @property
    def sa(self) -> httpx.Client:
        return self.clients["sa"]

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        r = self.sa.request(method, path, json=body)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def node(self, name: str | None, owner: str | None, lessee: str | None,
             ports: int = 0) -> dict[str, Any]:
        node = self.ok("POST", "/v1/nodes", {"driver": "fake-hardware", "name": name,
                                             "owner": owner, "lessee": lessee})
        for _ in range(ports):
            self.ok("POST", "/v1/ports", {"address": mac(), "node_uuid": node["uuid"]})
        return dict(node)

    def discard_node(self, uuid: str) -> None:
        """Delete a node once its work is done (in maintenance: any state will do)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = self.sa.get(f"/v1/nodes/{uuid}")
            if r.status_code == 404:
                return
            node = r.json()
            if (node["reservation"] is None and node["target_power_state"] is None
                    and node["target_provision_state"] is None):
                self.sa.put(f"/v1/nodes/{uuid}/maintenance", json={"reason": "test"})
                if self.sa.delete(f"/v1/nodes/{uuid}").status_code in (204, 404):
                    return
            time.sleep(0.05)
        raise AssertionError(f"node {uuid} could not be removed")

    def network_port(self, network: str, project: str, temporary: bool = False) -> str:
        port = self.ok("POST", "/v2.0/ports", {"port": {
            "network_id": self.ids[f"net:{network}"], "project_id": project}})
        if temporary:
            self.trash.append(port["port"]["id"])
        return str(port["port"]["id"])


def _users_file(path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # fast
    lines = [f"{u}:{hashed}:{project or ''}:{role}" for u, (project, role) in USERS.items()]
    lines += [f"ops:{hashed}",  # a plain htpasswd line: a system admin
              f"p1user:{hashed}:p1"]  # a project without role: a member
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("policy") / "data"
    data.mkdir()
    _users_file(data / "htpasswd")
    with running_server(data, auth_strategy="http_basic") as server:
        clients = {u: httpx.Client(base_url=server.url, auth=(u, PASSWORD), timeout=30)
                   for u in [*USERS, "ops", "p1user"]}
        w = World(server, clients)
        try:
            _populate(w)
            yield w
        finally:
            for c in clients.values():
                c.close()


def _populate(w: World) -> None:
    ids = w.ids
    for name, owner, lessee in (("own", "p1", None), ("lease", "p2", "p1"),
                                ("own2", "p2", None), ("free", None, None)):
        node = w.node(name, owner, lessee)
        ids[f"node:{name}"] = node["uuid"]
        ids[f"port:{name}"] = w.ok("POST", "/v1/ports", {
            "address": mac(), "node_uuid": node["uuid"]})["uuid"]
        ids[f"pg:{name}"] = w.ok("POST", "/v1/portgroups", {
            "node_uuid": node["uuid"], "name": f"pg-{name}"})["uuid"]
    w.ok("PATCH", f"/v1/nodes/{ids['node:lease']}",
         [{"op": "add", "path": "/driver_info/fake_note", "value": "p2's"}])
    for name, owner in (("own", "p1"), ("p2", "p2"), ("free", None)):
        ids[f"alloc:{name}"] = w.ok("POST", "/v1/allocations", {
            "resource_class": "no-such-class", "name": f"alloc-{name}", "owner": owner})["uuid"]
    for name, project, shared in (("own", "p1", False), ("p2", "p2", False),
                                  ("shared", "", True), ("private", "", False)):
        net = w.ok("POST", "/v2.0/networks", {"network": {
            "name": f"net-{name}", "project_id": project, "shared": shared}})["network"]
        ids[f"net:{name}"] = net["id"]
        ids[f"subnet:{name}"] = w.ok("POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "cidr": cidr(), "ip_version": 4,
            "project_id": project}})["subnet"]["id"]
    for name, network, project in (("own", "own", "p1"), ("p2", "p2", "p2"),
                                   ("shared-p2", "shared", "p2"), ("shared", "shared", "")):
        ids[f"nport:{name}"] = w.network_port(network, project)
    for name, project in (("own", "p1"), ("p2", "p2"), ("sys", "")):
        sg = w.ok("POST", "/v2.0/security-groups", {"security_group": {
            "name": f"sg-{name}", "project_id": project}})["security_group"]
        ids[f"sg:{name}"] = sg["id"]
        ids[f"rule:{name}"] = w.ok("POST", "/v2.0/security-group-rules", {
            "security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "ethertype": "IPv4", "project_id": project}}
        )["security_group_rule"]["id"]


# ================================================================================ lists
def scoped(system: set[str], p1: set[str], p2: set[str]) -> dict[str, frozenset[str]]:
    """What each user sees: the system users ``system``, p1's ``p1``, p2's ``p2``."""
    return {u: frozenset(system if u in SYS else p1 if u in P1 else p2) for u in USERS}


NODE_LISTS = scoped({"own", "lease", "own2", "free"}, {"own", "lease"}, {"lease", "own2"})
NETWORK_LISTS = scoped({"own", "p2", "shared", "private"}, {"own", "shared"}, {"p2", "shared"})
SG_LISTS = scoped({"own", "p2", "sys"}, {"own"}, {"p2"})
LISTS: list[tuple[str, str, str, str, dict[str, frozenset[str]]]] = [
    # path, collection key, id key, kind, user -> names visible
    ("/v1/nodes", "nodes", "uuid", "node", NODE_LISTS),
    ("/v1/nodes/detail", "nodes", "uuid", "node", NODE_LISTS),
    ("/v1/nodes?fields=name", "nodes", "uuid", "node", NODE_LISTS),
    ("/v1/ports", "ports", "uuid", "port", NODE_LISTS),
    ("/v1/ports/detail", "ports", "uuid", "port", NODE_LISTS),
    ("/v1/portgroups", "portgroups", "uuid", "pg", NODE_LISTS),
    ("/v1/allocations", "allocations", "uuid", "alloc",
     scoped({"own", "p2", "free"}, {"own"}, {"p2"})),
    ("/v1/allocations?owner=p2", "allocations", "uuid", "alloc", scoped({"p2"}, set(), {"p2"})),
    ("/v2.0/networks", "networks", "id", "net", NETWORK_LISTS),
    ("/v2.0/subnets", "subnets", "id", "subnet", NETWORK_LISTS),
    ("/v2.0/ports", "ports", "id", "nport",
     scoped({"own", "p2", "shared-p2", "shared"}, {"own"}, {"p2", "shared-p2"})),
    ("/v2.0/security-groups", "security_groups", "id", "sg", SG_LISTS),
    ("/v2.0/security-group-rules", "security_group_rules", "id", "rule", SG_LISTS),
]


@pytest.mark.parametrize(("path", "key", "ident", "kind", "expected"), LISTS,
                         ids=[x[0] for x in LISTS])
@pytest.mark.parametrize("user", sorted(USERS))
def test_lists_show_exactly_what_the_user_may_see(world: World, user: str, path: str,
                                                  key: str, ident: str, kind: str,
                                                  expected: dict[str, frozenset[str]]) -> None:
    r = world.clients[user].get(path)
    assert r.status_code == 200, r.text
    names = {v: k.split(":", 1)[1] for k, v in world.ids.items() if k.startswith(f"{kind}:")}
    assert {names.get(item[ident], item[ident]) for item in r.json()[key]} == expected[user]


@pytest.mark.parametrize(("path", "key"), [
    ("/v1/conductors", "conductors"), ("/v1/conductors/test-conductor", "hostname"),
    ("/v1/drivers", "drivers"), ("/v1/drivers/fake-hardware", "name"),
    ("/v1/drivers/fake-hardware/properties", None), ("/v2.0/extensions", "extensions")])
@pytest.mark.parametrize("user", sorted(USERS))
def test_registries_are_readable_by_everyone(world: World, user: str, path: str,
                                             key: str | None) -> None:
    r = world.clients[user].get(path)
    assert r.status_code == 200, r.text
    assert key is None or r.json()[key]


def test_list_pages_follow_the_scope(world: World) -> None:
    client = world.clients["2m"]
    first = client.get("/v1/nodes", params={"limit": 1}).json()
    assert [n["uuid"] for n in first["nodes"]] == [world.ids["node:lease"]]
    rest = client.get(first["next"]).json()
    assert [n["uuid"] for n in rest["nodes"]] == [world.ids["node:own2"]]


# ================================================================================ matrix
@dataclass(frozen=True)
class Op:
    """One call: ``path`` with ``{id}``, the target (the fixture object of a template:
    ``own``, ``lease``, ``shared``; for a collection's POST, the parent it creates in) and
    ``{vif}`` (a fresh node's VIF); ``allowed``: the users it succeeds for (``ok``), by
    template (``any``: no target); others get 403 naming ``rule`` if they see the target,
    else ``hidden``."""

    method: str
    path: str
    rule: str
    allowed: dict[str, frozenset[str]]
    ok: int = 200
    body: Any = None  # or a function of (world, target id, user)
    fresh: str | None = None  # make a fresh target of this kind for each call
    creates: str | None = None  # the kind of what a success creates (then removed)
    hidden: int = 404


def _u(*users: str) -> frozenset[str]:
    return frozenset(users)


def _node_ops() -> dict[str, Op]:
    seen = {"own": SYS | P1, "lease": ALL}
    member_lessee_admin = {"own": _u("sa", "1a", "1m"), "lease": _u("sa", "2a", "2m", "1a")}
    owner_admin = {"own": _u("sa", "1a"), "lease": _u("sa", "2a")}
    owner_member = {"own": _u("sa", "1a", "1m"), "lease": _u("sa", "2a", "2m")}
    project_member = {"own": _u("sa", "1a", "1m"), "lease": _u("sa", "2a", "2m", "1a", "1m")}
    n = "/v1/nodes/{id}"
    return {
        "get": Op("GET", n, "baremetal:node:get", seen),
        "states": Op("GET", n + "/states", "baremetal:node:get_states", seen),
        "traits": Op("GET", n + "/traits", "baremetal:node:traits:list", seen),
        "vifs": Op("GET", n + "/vifs", "baremetal:node:vif:list", seen),
        "node-ports": Op("GET", n + "/ports", "baremetal:port:get", seen),
        "node-portgroups": Op("GET", n + "/portgroups", "baremetal:portgroup:get", seen),
        "validate": Op("GET", n + "/validate", "baremetal:node:validate",
                       member_lessee_admin),
        "boot-device": Op("GET", n + "/management/boot_device",
                          "baremetal:node:get_boot_device", owner_admin),
        "set-boot-device": Op("PUT", n + "/management/boot_device",
                              "baremetal:node:set_boot_device", owner_admin, 204,
                              {"boot_device": "pxe"}),
        "patch-extra": Op("PATCH", n, "baremetal:node:update_extra", project_member, 200,
                          [{"op": "add", "path": "/extra/k", "value": "v"}]),
        "patch-description": Op("PATCH", n, "baremetal:node:update", project_member, 200,
                                [{"op": "add", "path": "/description", "value": "d"}]),
        "patch-properties": Op("PATCH", n, "baremetal:node:update:properties", owner_member,
                               200, [{"op": "add", "path": "/properties/cpus", "value": 4}]),
        "patch-instance-info": Op("PATCH", n, "baremetal:node:update_instance_info",
                                  member_lessee_admin, 200, [{
                                      "op": "add", "path": "/instance_info/image_source",
                                      "value": "http://example.com/img"}]),
        "patch-interface": Op("PATCH", n, "baremetal:node:update:driver_interfaces",
                              owner_admin, 200, [{"op": "replace",
                                                  "path": "/power_interface",
                                                  "value": "fake"}]),
        "patch-owner": Op("PATCH", n, "baremetal:node:update:owner",
                          {"own": _u("sa"), "lease": _u("sa")}, 200,
                          lambda w, ident, user: [{"op": "replace", "path": "/owner",
                                                   "value": w.sa.get(f"/v1/nodes/{ident}")
                                                   .json()["owner"]}]),
        "add-trait": Op("PUT", n + "/traits/CUSTOM_X", "baremetal:node:traits:set",
                        owner_admin, 204),
        "clear-traits": Op("DELETE", n + "/traits", "baremetal:node:traits:delete",
                           owner_admin, 204),
        "provision": Op("PUT", n + "/states/provision", "baremetal:node:set_provision_state",
                        member_lessee_admin, 202, {"target": "manage"}, fresh="node"),
        "power": Op("PUT", n + "/states/power", "baremetal:node:set_power_state",
                    project_member, 202, {"target": "power on"}, fresh="node"),
        "maintenance": Op("PUT", n + "/maintenance", "baremetal:node:set_maintenance",
                          member_lessee_admin, 202, fresh="node"),
        "unmaintenance": Op("DELETE", n + "/maintenance", "baremetal:node:clear_maintenance",
                            member_lessee_admin, 202, fresh="node"),
        "delete": Op("DELETE", n, "baremetal:node:delete", owner_admin, 204, fresh="node"),
        "vif-attach": Op("POST", n + "/vifs", "baremetal:node:vif:attach",
                         member_lessee_admin, 204, _own_vif, fresh="node+port"),
        "vif-detach": Op("DELETE", n + "/vifs/{vif}", "baremetal:node:vif:detach",
                         member_lessee_admin, 204, fresh="node+vif"),
    }


def _own_vif(w: World, ident: str, user: str) -> dict[str, str]:
    """A network port the user sees (its project's, on the shared network)."""
    return {"id": w.network_port("shared", USERS[user][0] or "", temporary=True)}


def _other_ops() -> dict[str, Op]:
    seen_node = {"own": SYS | P1, "lease": ALL}
    owner_admin = {"own": _u("sa", "1a"), "lease": _u("sa", "2a")}
    own = {"own": SYS | P1}
    members = _u("sa", "1a", "1m", "2a", "2m")
    return {
        # ports and portgroups (on the node own or lease)
        "port-get": Op("GET", "/v1/ports/{id}", "baremetal:port:get", seen_node),
        "port-patch": Op("PATCH", "/v1/ports/{id}", "baremetal:port:update", owner_admin,
                         200, [{"op": "add", "path": "/extra/k", "value": "v"}]),
        "port-delete": Op("DELETE", "/v1/ports/{id}", "baremetal:port:delete", owner_admin,
                          204, fresh="port"),
        "port-create": Op("POST", "/v1/ports", "baremetal:port:create", owner_admin, 201,
                          lambda w, ident, user: {"address": mac(), "node_uuid": ident},
                          creates="port", hidden=400),
        "pg-get": Op("GET", "/v1/portgroups/{id}", "baremetal:portgroup:get", seen_node),
        "pg-ports": Op("GET", "/v1/portgroups/{id}/ports", "baremetal:port:get", seen_node),
        "pg-patch": Op("PATCH", "/v1/portgroups/{id}", "baremetal:portgroup:update",
                       owner_admin, 200, [{"op": "add", "path": "/extra/k", "value": "v"}]),
        "pg-delete": Op("DELETE", "/v1/portgroups/{id}", "baremetal:portgroup:delete",
                        owner_admin, 204, fresh="pg"),
        "pg-create": Op("POST", "/v1/portgroups", "baremetal:portgroup:create", owner_admin,
                        201, lambda w, ident, user: {"node_uuid": ident},
                        creates="pg", hidden=400),
        # allocations (the one of p1)
        "alloc-get": Op("GET", "/v1/allocations/{id}", "baremetal:allocation:get", own),
        "alloc-patch": Op("PATCH", "/v1/allocations/{id}", "baremetal:allocation:update",
                          {"own": _u("sa", "1a", "1m")}, 200,
                          [{"op": "add", "path": "/extra/k", "value": "v"}]),
        "alloc-delete": Op("DELETE", "/v1/allocations/{id}", "baremetal:allocation:delete",
                           {"own": _u("sa", "1a", "1m")}, 204, fresh="alloc"),
        "alloc-create": Op("POST", "/v1/allocations", "baremetal:allocation:create",
                           {"any": members}, 201, {"resource_class": "no-such-class"},
                           creates="alloc"),
        "alloc-create-for-p2": Op("POST", "/v1/allocations", "baremetal:allocation:create",
                                  {"any": _u("sa", "2a", "2m")}, 201,
                                  {"resource_class": "no-such-class", "owner": "p2"},
                                  creates="alloc"),
        # nodes
        "node-create": Op("POST", "/v1/nodes", "baremetal:node:create",
                          {"any": _u("sa", "1a", "2a")}, 201, {"driver": "fake-hardware"},
                          creates="node"),
        "node-create-for-p2": Op("POST", "/v1/nodes", "baremetal:node:create",
                                 {"any": _u("sa", "2a")}, 201,
                                 {"driver": "fake-hardware", "owner": "p2"}, creates="node"),
        # switches: the system admin's only
        "switches": Op("GET", "/v1/switches", "metalplane:switch:get", {"any": _u("sa")}),
        "switch-get": Op("GET", "/v1/switches/none", "metalplane:switch:get",
                         {"any": _u("sa")}, 404),
        "switch-create": Op("POST", "/v1/switches", "metalplane:switch:create",
                            {"any": _u("sa")}, 400, {}),
        "switch-delete": Op("DELETE", "/v1/switches/none", "metalplane:switch:delete",
                            {"any": _u("sa")}, 404),
        "switch-sync": Op("POST", "/v1/switches/sync", "metalplane:switch:sync",
                          {"any": _u("sa")}),
        # networks (own: p1's; shared: the system's, shared)
        "net-get": Op("GET", "/v2.0/networks/{id}", "get_network",
                      {"own": SYS | P1, "shared": ALL}),
        "net-update": Op("PUT", "/v2.0/networks/{id}", "update_network",
                         {"own": _u("sa", "1a", "1m"), "shared": _u("sa")}, 200,
                         {"network": {"description": "d"}}),
        "net-share": Op("PUT", "/v2.0/networks/{id}", "update_network",  # or :shared
                        {"own": _u("sa")}, 200, {"network": {"shared": False}}),
        "net-delete": Op("DELETE", "/v2.0/networks/{id}", "delete_network",
                         {"own": _u("sa", "1a", "1m"), "shared": _u("sa")}, 204,
                         fresh="net"),
        "net-create": Op("POST", "/v2.0/networks", "create_network", {"any": members}, 201,
                         {"network": {"name": "n"}}, creates="net"),
        "net-create-for-p2": Op("POST", "/v2.0/networks", "create_network",
                                {"any": _u("sa", "2a", "2m")}, 201,
                                {"network": {"name": "n", "tenant_id": "p2"}}, creates="net"),
        "net-create-shared": Op("POST", "/v2.0/networks", "create_network",  # or :shared
                                {"any": _u("sa")}, 201,
                                {"network": {"name": "n", "shared": True}}, creates="net"),
        "net-create-provider": Op("POST", "/v2.0/networks", "create_network",  # :provider
                                  {"any": _u("sa")}, 201,
                                  {"network": {"name": "n", "provider:network_type": "flat",
                                               "provider:physical_network": "physnet9"}},
                                  creates="net"),
        "subnet-get": Op("GET", "/v2.0/subnets/{id}", "get_subnet",
                         {"own": SYS | P1, "shared": ALL}),
        "subnet-update": Op("PUT", "/v2.0/subnets/{id}", "update_subnet",
                            {"own": _u("sa", "1a", "1m"), "shared": _u("sa")}, 200,
                            {"subnet": {"description": "d"}}),
        "subnet-delete": Op("DELETE", "/v2.0/subnets/{id}", "delete_subnet",
                            {"own": _u("sa", "1a", "1m"), "shared": _u("sa")}, 204,
                            fresh="subnet"),
        "subnet-create": Op("POST", "/v2.0/subnets", "create_subnet",
                            {"own": _u("sa", "1a", "1m"), "shared": _u("sa")}, 201,
                            lambda w, ident, user: {"subnet": {
                                "network_id": ident, "cidr": cidr(), "ip_version": 4}},
                            creates="subnet"),
        "nport-get": Op("GET", "/v2.0/ports/{id}", "get_port", own),
        "nport-update": Op("PUT", "/v2.0/ports/{id}", "update_port",
                           {"own": _u("sa", "1a", "1m")}, 200, {"port": {"name": "p"}}),
        "nport-bind": Op("PUT", "/v2.0/ports/{id}", "update_port",  # or :binding
                         {"own": _u("sa")}, 200, {"port": {"binding:host_id": ""}}),
        "nport-delete": Op("DELETE", "/v2.0/ports/{id}", "delete_port",
                           {"own": _u("sa", "1a", "1m")}, 204, fresh="nport"),
        "nport-create": Op("POST", "/v2.0/ports", "create_port",
                           {"own": _u("sa", "1a", "1m"), "shared": members}, 201,
                           lambda w, ident, user: {"port": {"network_id": ident}},
                           creates="nport"),
        "nport-create-bound": Op("POST", "/v2.0/ports", "create_port",  # or :binding
                                 {"shared": _u("sa")}, 201,
                                 lambda w, ident, user: {"port": {
                                     "network_id": ident, "binding:host_id": "h1"}},
                                 creates="nport"),
        "sg-get": Op("GET", "/v2.0/security-groups/{id}", "get_security_group", own),
        "sg-update": Op("PUT", "/v2.0/security-groups/{id}", "update_security_group",
                        {"own": _u("sa", "1a", "1m")}, 200,
                        {"security_group": {"description": "d"}}),
        "sg-delete": Op("DELETE", "/v2.0/security-groups/{id}", "delete_security_group",
                        {"own": _u("sa", "1a", "1m")}, 204, fresh="sg"),
        "sg-create": Op("POST", "/v2.0/security-groups", "create_security_group",
                        {"any": members}, 201, {"security_group": {"name": "g"}},
                        creates="sg"),
        "rule-get": Op("GET", "/v2.0/security-group-rules/{id}", "get_security_group_rule",
                       own),
        "rule-delete": Op("DELETE", "/v2.0/security-group-rules/{id}",
                          "delete_security_group_rule", {"own": _u("sa", "1a", "1m")}, 204,
                          fresh="rule"),
        "rule-create": Op("POST", "/v2.0/security-group-rules", "create_security_group_rule",
                          {"own": _u("sa", "1a", "1m")}, 201,
                          lambda w, ident, user: {"security_group_rule": {
                              "security_group_id": ident, "direction": "egress",
                              "ethertype": "IPv4"}}, creates="rule"),
    }


NODE_OPS = _node_ops()
OTHER_OPS = _other_ops()
# the fixture object an op's template names, by the op's path
_TARGET_KIND = {"/v1/nodes/": "node", "/v1/ports": "port", "/v1/portgroups": "pg",
                "/v1/allocations": "alloc", "/v2.0/networks": "net", "/v2.0/subnets": "subnet",
                "/v2.0/ports": "nport", "/v2.0/security-groups": "sg",
                "/v2.0/security-group-rules": "rule"}
# a collection POST's template names the parent it creates in
_PARENT_KIND = {"/v1/ports": "node", "/v1/portgroups": "node", "/v2.0/subnets": "net",
                "/v2.0/ports": "net", "/v2.0/security-group-rules": "sg"}


def _kind(op: Op) -> str:
    if op.method == "POST" and op.path in _PARENT_KIND:
        return _PARENT_KIND[op.path]
    return next((k for prefix, k in _TARGET_KIND.items() if op.path.startswith(prefix)), "")


def _cases(ops: dict[str, Op]) -> list[Any]:
    return [pytest.param(name, template, user, id=f"{name}-{template}-{user}")
            for name, op in ops.items() for template in op.allowed for user in sorted(USERS)]


def _fresh(w: World, kind: str, template: str) -> tuple[str, dict[str, str]]:
    """A new object of ``kind`` like the fixture's ``template`` one: its id and the extra
    path values (``vif``)."""
    ids, extra = w.ids, {}
    if kind.startswith("node"):
        owner, lessee = {"own": ("p1", None), "lease": ("p2", "p1")}[template]
        node = w.node(None, owner, lessee, ports=1 if "+" in kind else 0)
        if kind == "node+vif":
            extra["vif"] = w.network_port("shared", owner, temporary=True)
            w.ok("POST", f"/v1/nodes/{node['uuid']}/vifs", {"id": extra["vif"]})
        return node["uuid"], extra
    if kind == "port":
        return w.ok("POST", "/v1/ports", {"address": mac(),
                                          "node_uuid": ids[f"node:{template}"]})["uuid"], extra
    if kind == "pg":
        return w.ok("POST", "/v1/portgroups", {"node_uuid": ids[f"node:{template}"]})["uuid"], {}
    if kind == "alloc":
        return w.ok("POST", "/v1/allocations", {"resource_class": "no-such-class",
                                                "owner": "p1"})["uuid"], extra
    project = "p1" if template == "own" else ""
    if kind == "net":
        return w.ok("POST", "/v2.0/networks", {"network": {
            "name": "fresh", "project_id": project,
            "shared": template == "shared"}})["network"]["id"], extra
    if kind == "subnet":
        return w.ok("POST", "/v2.0/subnets", {"subnet": {
            "network_id": ids[f"net:{template}"], "cidr": cidr(), "ip_version": 4,
            "project_id": project}})["subnet"]["id"], extra
    if kind == "nport":
        return w.network_port(template, project), extra
    if kind == "sg":
        return w.ok("POST", "/v2.0/security-groups", {"security_group": {
            "name": "fresh", "project_id": project}})["security_group"]["id"], extra
    if kind == "rule":
        return w.ok("POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": ids["sg:own"], "direction": "egress", "ethertype": "IPv6",
            "project_id": project}})["security_group_rule"]["id"], extra
    raise AssertionError(kind)


_COLLECTIONS = {"port": "/v1/ports", "pg": "/v1/portgroups", "alloc": "/v1/allocations",
                "net": "/v2.0/networks", "subnet": "/v2.0/subnets", "nport": "/v2.0/ports",
                "sg": "/v2.0/security-groups", "rule": "/v2.0/security-group-rules"}


def _remove(w: World, kind: str, ident: str) -> None:
    if kind == "node":
        w.discard_node(ident)
    else:
        w.sa.delete(f"{_COLLECTIONS[kind]}/{ident}")


def _run(w: World, op: Op, template: str, user: str) -> None:
    kind = _kind(op)
    extra: dict[str, str] = {}
    ident = w.ids.get(f"{kind}:{template}", "")
    if op.fresh:
        ident, extra = _fresh(w, op.fresh, template)
    body = op.body(w, ident, user) if callable(op.body) else op.body
    path = op.path.format(id=ident, **extra)
    try:
        r = w.clients[user].request(op.method, path, json=body)
        allowed = user in op.allowed[template]
        expected = op.ok if allowed else (403 if user in SEEN_BY[template] else op.hidden)
        assert r.status_code == expected, f"{user} {op.method} {path}: {r.text}"
        if not allowed and expected == 403:
            assert op.rule in message(r), r.text
        elif not allowed and expected == 404:
            assert message(r).endswith("could not be found."), r.text
        if op.creates and r.status_code == 201:
            doc = r.json()
            if op.path.startswith("/v2.0"):  # Neutron wraps it: {"network": {...}}
                doc = next(iter(doc.values()))
            if user != "sa" and op.creates in ("node", "alloc", "net", "nport", "sg"):
                key = "owner" if op.creates in ("node", "alloc") else "project_id"
                assert doc[key] == USERS[user][0], doc  # made in its own project
            _remove(w, op.creates, str(doc.get("uuid") or doc.get("id")))
    finally:
        if op.fresh:
            _remove(w, op.fresh.split("+")[0], ident)
        while w.trash:
            w.sa.delete(f"/v2.0/ports/{w.trash.pop()}")


@pytest.mark.parametrize(("name", "template", "user"), _cases(NODE_OPS))
def test_node_endpoints(world: World, name: str, template: str, user: str) -> None:
    _run(world, NODE_OPS[name], template, user)


@pytest.mark.parametrize(("name", "template", "user"), _cases(OTHER_OPS))
def test_other_endpoints(world: World, name: str, template: str, user: str) -> None:
    _run(world, OTHER_OPS[name], template, user)


# ================================================================================ details
def test_a_hidden_node_answers_as_a_missing_one(world: World) -> None:
    hidden = world.clients["2r"].get(f"/v1/nodes/{world.ids['node:own']}")
    missing = world.clients["2r"].get("/v1/nodes/no-such-node")
    assert hidden.status_code == missing.status_code == 404
    assert message(hidden) == f"Node {world.ids['node:own']} could not be found."
    # the node's name is as unknown as its UUID
    assert world.clients["2r"].get("/v1/nodes/own").status_code == 404
    assert world.clients["1r"].get("/v1/nodes/own").status_code == 200


def test_a_lessee_reads_no_secrets_of_the_owner(world: World) -> None:
    lease = world.ids["node:lease"]
    lessee = world.clients["1a"].get(f"/v1/nodes/{lease}").json()
    owner = world.clients["2r"].get(f"/v1/nodes/{lease}").json()
    notice = "** Value Redacted - Requires baremetal:node:get:driver_info permission. **"
    assert lessee["driver_info"] == {"content": notice}
    assert lessee["last_error"].startswith("** Value Redacted")
    assert owner["driver_info"] == {"fake_note": "p2's"}
    listed = world.clients["1m"].get("/v1/nodes/detail").json()["nodes"]
    assert {n["uuid"]: n["driver_info"] for n in listed}[lease] == {"content": notice}


def test_no_patch_operation_gets_round_a_rule(world: World) -> None:
    lease, own = world.ids["node:lease"], world.ids["node:own"]
    for ops, rule in (
            # the lessee may change extra, but not read driver_info through it
            ([{"op": "copy", "from": "/driver_info/fake_note", "path": "/extra/x"}],
             "baremetal:node:get:driver_info"),
            ([{"op": "test", "path": "/driver_info/fake_note", "value": "p2's"}],
             "baremetal:node:get:driver_info"),
            # nor clear the owner by moving it away
            ([{"op": "move", "from": "/owner", "path": "/extra/o"}],
             "baremetal:node:update:owner")):
        r = world.clients["1a"].patch(f"/v1/nodes/{lease}", json=ops)
        assert r.status_code == 403 and rule in message(r), r.text
    # p1's admin may change its node's port, but not move it onto a node p1 only leases
    port = world.ids["port:own"]
    world.ok("PATCH", f"/v1/ports/{port}", [{"op": "add", "path": "/extra/to",
                                             "value": lease}])
    try:
        r = world.clients["1a"].patch(f"/v1/ports/{port}", json=[
            {"op": "move", "from": "/extra/to", "path": "/node_uuid"}])
        assert r.status_code == 403 and "baremetal:port:update" in message(r), r.text
        assert world.sa.get(f"/v1/ports/{port}").json()["node_uuid"] == own
    finally:
        world.ok("PATCH", f"/v1/ports/{port}", [{"op": "remove", "path": "/extra/to"}])


def test_neutron_admin_attributes_are_left_out_for_projects(world: World) -> None:
    path = f"/v2.0/networks/{world.ids['net:own']}"
    assert "provider:network_type" in world.clients["sr"].get(path).json()["network"]
    assert "provider:network_type" not in world.clients["1m"].get(path).json()["network"]
    port = world.clients["1m"].get(f"/v2.0/ports/{world.ids['nport:own']}").json()["port"]
    assert "binding:host_id" not in port and port["project_id"] == "p1"


def test_a_vif_of_another_project_is_unknown(world: World) -> None:
    node, _ = _fresh(world, "node+port", "own")
    try:
        r = world.clients["1m"].post(f"/v1/nodes/{node}/vifs",
                                     json={"id": world.ids["nport:p2"]})
        assert r.status_code == 404, r.text
        assert message(r) == f"Port {world.ids['nport:p2']} could not be found."
    finally:
        world.discard_node(node)


def test_a_project_member_allocates_only_its_nodes(world: World) -> None:
    r = world.clients["1m"].post("/v1/allocations", json={
        "resource_class": "no-such-class", "candidate_nodes": [world.ids["node:own2"]]})
    assert r.status_code == 400 and message(r) == (
        f"Node {world.ids['node:own2']} could not be found."), r.text


def test_a_node_allocation_is_hidden_like_its_node(world: World) -> None:
    r = world.clients["2m"].get(f"/v1/nodes/{world.ids['node:own']}/allocation")
    assert r.status_code == 404 and "Node" in message(r)


def test_default_roles_of_the_users_file(world: World) -> None:
    ops, p1user = world.clients["ops"], world.clients["p1user"]
    assert ops.get("/v1/switches").status_code == 200  # no project: system admin
    assert p1user.get(f"/v1/nodes/{world.ids['node:own']}").status_code == 200
    r = p1user.post("/v1/nodes", json={"driver": "fake-hardware"})
    assert r.status_code == 403 and "baremetal:node:create" in message(r)  # a member
    r = p1user.patch(f"/v1/nodes/{world.ids['node:own']}",
                     json=[{"op": "add", "path": "/extra/by", "value": "p1user"}])
    assert r.status_code == 200, r.text


def test_user_add_takes_project_and_role(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["user", "add", "--password-stdin", "--data-dir", str(tmp_path)]
    r = runner.invoke(cli_app, [*base, "alice", "--project", "p1", "--role", "reader"],
                      input="secret\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, [*base, "bob", "--project", "p2"], input="secret\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, [*base, "root"], input="secret\n")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "htpasswd").read_text().splitlines()
    assert [ln.split(":", 2)[0] + ":" + ln.split(":", 2)[2] for ln in lines] == [
        "alice:p1:reader", "bob:p2:member", "root::admin"]
    r = runner.invoke(cli_app, [*base, "eve", "--role", "owner"], input="secret\n")
    assert r.exit_code != 0 and "admin, member, reader" in str(r.exception)  # CliError


def test_the_matrix_left_the_world_as_it_found_it(world: World) -> None:
    """Every fresh object and every creation was removed again (so the lists above saw,
    and a rerun of a single case sees, the fixture world only)."""
    for path, key, _, _, expected in LISTS:
        if "?" not in path:
            listed = world.sa.get(path).json()[key]
            assert len(listed) == len(expected["sa"]), (path, listed)
