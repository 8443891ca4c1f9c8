"""Who may do what: roles and project scoping, after Ironic's and Neutron's default policies.

Each user of the users file has a *project* (none: the *system* scope, the operators) and a
*role*, ``admin``, ``member`` or ``reader``; a role includes the ones after it (Keystone's
implied roles: an admin is also a member, a member also a reader). With ``noauth`` every
request is a system admin. The endpoints ask this module, and nothing else, whether a
request may go on: :func:`require` (or :func:`may`) for one resource, :func:`scope` and
:func:`visible` for lists, which show exactly what the resource's ``get`` rule allows
(filtered, never 403).

A rule is checked against a *target*, the resource acted on: a node's ``owner`` and
``lessee`` (a port's or portgroup's node's), an allocation's ``owner``, a network
resource's ``project_id`` (its *owner*), the project of its network (a subnet's or port's)
or of its security group (a rule's) as *parent*, and whether its network is ``shared`` or
external.

| persona | who (with that role or a higher one) |
|---|---|
| system admin, system member, system reader | a user without project |
| owner admin, owner member, owner reader | a user of the target's owner project |
| lessee admin, lessee member, lessee reader | a user of the node's lessee project |
| parent member, parent reader | a user of the network's (security group's) project |
| shared | anyone, when the network (of a subnet) is shared |
| external | anyone, when the network (of a subnet) is external (``router:external``) |
| anyone | any authenticated user |

A resource the caller may not see (its ``get`` rule fails) answers 404, as if it did not
exist (Ironic's and Neutron's way); one it sees but may not change answers 403 naming the
rule. The rules (Ironic's and Neutron's names), by whom they allow; :data:`RULES` says
what each guards, and docs/security.md has them as a table (:func:`rules_table`). The unit
tests check that both are what :data:`RULES` holds.

system reader, owner reader, lessee reader
    baremetal:node:get, baremetal:node:get_states, baremetal:node:vif:list,
    baremetal:node:traits:list, baremetal:port:get, baremetal:portgroup:get,
    baremetal:node:bios:get
system reader, owner reader
    baremetal:node:get:driver_info, baremetal:node:get:driver_internal_info,
    baremetal:node:get:last_error, baremetal:node:get:reservation, baremetal:allocation:get,
    baremetal:node:inventory:get, get_security_group, get_router, get_floatingip
system admin, owner admin
    baremetal:node:create, baremetal:node:delete, baremetal:port:create,
    baremetal:port:delete, baremetal:portgroup:create, baremetal:portgroup:delete
system member, owner member, lessee member
    baremetal:node:update, baremetal:node:update_extra, baremetal:node:set_power_state
system member, owner member, lessee admin
    baremetal:node:update_instance_info, baremetal:node:set_provision_state,
    baremetal:node:validate, baremetal:node:set_maintenance,
    baremetal:node:clear_maintenance, baremetal:node:vif:attach, baremetal:node:vif:detach
system member, owner member
    baremetal:node:update:driver_info, baremetal:node:update:properties,
    baremetal:node:update:instance_uuid, baremetal:node:update:lessee,
    baremetal:node:update:name, baremetal:node:update:network_data,
    baremetal:node:update:retired, baremetal:allocation:create, baremetal:allocation:update,
    baremetal:allocation:delete
system member, owner admin
    baremetal:node:update:driver_interfaces, baremetal:node:get_boot_device,
    baremetal:node:set_boot_device, baremetal:node:traits:set, baremetal:node:traits:delete,
    baremetal:port:update, baremetal:portgroup:update
system member
    baremetal:node:update:owner, baremetal:node:update:conductor_group,
    baremetal:node:update:parent_node
system admin
    baremetal:node:update:chassis_uuid, baremetal:node:update:shard,
    baremetal:node:disable_cleaning, baremetal:inspection_rule:create,
    baremetal:inspection_rule:update, baremetal:inspection_rule:delete,
    metalplane:switch:get, metalplane:switch:create, metalplane:switch:delete,
    metalplane:switch:sync, metalplane:network:sync, create_network:shared,
    create_network:provider, update_network:shared, create_network:router:external,
    update_network:router:external, create_port:binding, update_port:binding,
    create_router:external_gateway_info:enable_snat,
    create_router:external_gateway_info:external_fixed_ips,
    update_router:external_gateway_info:enable_snat,
    update_router:external_gateway_info:external_fixed_ips,
    create_floatingip:floating_ip_address
system reader
    baremetal:inspection_rule:get, get_network:provider, get_port:binding
anyone
    baremetal:conductor:get, baremetal:driver:get, baremetal:driver:get_properties
system reader, owner reader, shared, external
    get_network, get_subnet
system admin, owner member
    create_network, update_network, delete_network, create_port, update_port,
    create_security_group, update_security_group, delete_security_group,
    create_security_group_rule, create_router, update_router, delete_router,
    add_router_interface, remove_router_interface, create_floatingip, update_floatingip,
    delete_floatingip
system admin, parent member
    create_subnet, update_subnet, delete_subnet
system reader, owner reader, parent reader
    get_port, get_security_group_rule
system admin, owner member, parent member
    delete_port, delete_security_group_rule
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.requests import Request

from metalplane.common.exceptions import Forbidden, NotAuthorized, NotFound

__all__ = ["NOAUTH", "PRINCIPAL_STATE", "ROLES", "RULES", "Principal", "Rule", "Target", "may",
           "principal", "require", "rules_table", "scope", "visible"]

ROLES = ("admin", "member", "reader")  # highest first; each includes those after it
PRINCIPAL_STATE = "principal"  # request.state attribute the middleware sets


@dataclass(frozen=True)
class Principal:
    """Who sends a request: ``project`` None is the system scope."""

    user: str
    project: str | None = None
    role: str = "admin"

    @property
    def system(self) -> bool:
        return self.project is None

    def has(self, role: str) -> bool:
        """Whether this principal's role is ``role`` or includes it."""
        return ROLES.index(self.role) <= ROLES.index(role)

    def __str__(self) -> str:
        where = "system" if self.project is None else f"project {self.project}"
        return f"user {self.user} ({where}, {self.role})"


NOAUTH = Principal("noauth", None, "admin")  # every request under auth_strategy noauth


@dataclass(frozen=True)
class Target:
    """What a rule is checked against (see the module's docstring)."""

    owner: str | None = None
    lessee: str | None = None
    parent: str | None = None
    shared: bool = False
    external: bool = False


@dataclass(frozen=True)
class _Persona:
    """A check with the words that document it; ``|`` joins two (either suffices)."""

    text: str
    check: Callable[[Principal, Target], bool] = field(compare=False)

    def __or__(self, other: _Persona) -> _Persona:
        a, b = self.check, other.check
        return _Persona(f"{self.text}, {other.text}", lambda p, t: a(p, t) or b(p, t))


def _system(role: str) -> _Persona:
    return _Persona(f"system {role}", lambda p, t: p.project is None and p.has(role))


def _of(attr: str, word: str, role: str) -> _Persona:
    def check(p: Principal, t: Target) -> bool:
        return p.project is not None and p.project == getattr(t, attr) and p.has(role)
    return _Persona(f"{word} {role}", check)


def _owner(role: str) -> _Persona:
    return _of("owner", "owner", role)


def _lessee(role: str) -> _Persona:
    return _of("lessee", "lessee", role)


def _parent(role: str) -> _Persona:
    return _of("parent", "parent", role)


SHARED = _Persona("shared", lambda p, t: t.shared)
EXTERNAL = _Persona("external", lambda p, t: t.external)
ANYONE = _Persona("anyone", lambda p, t: True)

# Ironic's composite check strings (ironic/common/policy.py), without the service and
# manager roles metalplane does not have.
SYSTEM_ADMIN, SYSTEM_MEMBER, SYSTEM_READER = (_system(r) for r in ROLES)
SYSTEM_OR_PROJECT_READER = SYSTEM_READER | _owner("reader") | _lessee("reader")
SYSTEM_OR_PROJECT_MEMBER = SYSTEM_MEMBER | _owner("member") | _lessee("member")
SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN = SYSTEM_MEMBER | _owner("member") | _lessee("admin")
SYSTEM_ADMIN_OR_OWNER_ADMIN = SYSTEM_ADMIN | _owner("admin")
SYSTEM_MEMBER_OR_OWNER_ADMIN = SYSTEM_MEMBER | _owner("admin")
SYSTEM_MEMBER_OR_OWNER_MEMBER = SYSTEM_MEMBER | _owner("member")
SYSTEM_OR_OWNER_READER = SYSTEM_READER | _owner("reader")
# Neutron's (neutron/conf/policies, the system-scoped defaults)
ADMIN_OR_PROJECT_MEMBER = SYSTEM_ADMIN | _owner("member")
ADMIN_OR_NET_OWNER_MEMBER = SYSTEM_ADMIN | _parent("member")
ADMIN_OR_PROJECT_OR_NET_OWNER_MEMBER = ADMIN_OR_PROJECT_MEMBER | _parent("member")
READER_OR_PROJECT_READER = SYSTEM_READER | _owner("reader")

@dataclass(frozen=True)
class Rule:
    """A rule: who it allows, and what it guards (for the table)."""

    persona: _Persona
    guards: str


_R = Rule
RULES: dict[str, Rule] = {
    # nodes; target: the node (create: its owner, by default the creator's project)
    "baremetal:node:get": _R(SYSTEM_OR_PROJECT_READER,
                             "GET a node, its states, steps, ports, portgroups; lists"),
    "baremetal:node:get:driver_info": _R(SYSTEM_OR_OWNER_READER, "driver_info shown"),
    "baremetal:node:get:driver_internal_info": _R(SYSTEM_OR_OWNER_READER,
                                                  "driver_internal_info shown"),
    "baremetal:node:get:last_error": _R(SYSTEM_OR_OWNER_READER, "last_error shown"),
    "baremetal:node:get:reservation": _R(SYSTEM_OR_OWNER_READER, "reservation shown"),
    "baremetal:node:get_states": _R(SYSTEM_OR_PROJECT_READER, "GET /v1/nodes/{id}/states"),
    "baremetal:node:create": _R(SYSTEM_ADMIN | _owner("admin"),
                                "POST /v1/nodes (Ironic's create and create:self_owned_node)"),
    "baremetal:node:delete": _R(SYSTEM_ADMIN | _owner("admin"),
                                "DELETE a node (Ironic's delete and delete:self_owned_node)"),
    "baremetal:node:update": _R(SYSTEM_OR_PROJECT_MEMBER,
                                "PATCH of fields no rule below names"),
    "baremetal:node:update_extra": _R(SYSTEM_OR_PROJECT_MEMBER, "PATCH /extra"),
    "baremetal:node:update_instance_info": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                              "PATCH /instance_info"),
    "baremetal:node:update:driver_info": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER,
                                            "PATCH /driver_info"),
    "baremetal:node:update:properties": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER, "PATCH /properties"),
    "baremetal:node:update:instance_uuid": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER,
                                              "PATCH /instance_uuid"),
    "baremetal:node:update:lessee": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER, "PATCH /lessee"),
    "baremetal:node:update:name": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER, "PATCH /name"),
    "baremetal:node:update:network_data": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER,
                                             "PATCH /network_data"),
    "baremetal:node:update:retired": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER, "PATCH /retired*"),
    "baremetal:node:update:driver_interfaces": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                                  "PATCH /driver, /*_interface"),
    "baremetal:node:update:owner": _R(SYSTEM_MEMBER, "PATCH /owner"),
    "baremetal:node:update:conductor_group": _R(SYSTEM_MEMBER, "PATCH /conductor_group"),
    "baremetal:node:update:parent_node": _R(SYSTEM_MEMBER, "PATCH /parent_node"),
    "baremetal:node:update:chassis_uuid": _R(SYSTEM_ADMIN, "PATCH /chassis_uuid"),
    "baremetal:node:update:shard": _R(SYSTEM_ADMIN, "PATCH /shard"),
    "baremetal:node:disable_cleaning": _R(SYSTEM_ADMIN, "PATCH /automated_clean to false"),
    "baremetal:node:set_provision_state": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                             "PUT /v1/nodes/{id}/states/provision"),
    "baremetal:node:set_power_state": _R(SYSTEM_OR_PROJECT_MEMBER,
                                         "PUT /v1/nodes/{id}/states/power"),
    "baremetal:node:validate": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                  "GET /v1/nodes/{id}/validate"),
    "baremetal:node:set_maintenance": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                         "PUT /v1/nodes/{id}/maintenance"),
    "baremetal:node:clear_maintenance": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                           "DELETE /v1/nodes/{id}/maintenance"),
    "baremetal:node:get_boot_device": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                         "GET .../management/boot_device[/supported]"),
    "baremetal:node:set_boot_device": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                         "PUT .../management/boot_device"),
    "baremetal:node:vif:list": _R(SYSTEM_OR_PROJECT_READER, "GET /v1/nodes/{id}/vifs"),
    "baremetal:node:vif:attach": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                    "POST /v1/nodes/{id}/vifs (the VIF must be visible too)"),
    "baremetal:node:vif:detach": _R(SYSTEM_OR_OWNER_MEMBER_AND_LESSEE_ADMIN,
                                    "DELETE /v1/nodes/{id}/vifs/{vif}"),
    "baremetal:node:traits:list": _R(SYSTEM_OR_PROJECT_READER, "GET /v1/nodes/{id}/traits"),
    "baremetal:node:traits:set": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN, "PUT .../traits[/{trait}]"),
    "baremetal:node:traits:delete": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                       "DELETE .../traits[/{trait}]"),
    # ports and portgroups; target: their node
    "baremetal:port:get": _R(SYSTEM_OR_PROJECT_READER, "GET a port; lists"),
    "baremetal:port:create": _R(SYSTEM_ADMIN_OR_OWNER_ADMIN, "POST /v1/ports"),
    "baremetal:port:update": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                "PATCH a port (a new node_uuid: on that node too)"),
    "baremetal:port:delete": _R(SYSTEM_ADMIN_OR_OWNER_ADMIN, "DELETE a port"),
    "baremetal:portgroup:get": _R(SYSTEM_OR_PROJECT_READER, "GET a portgroup, its ports; lists"),
    "baremetal:portgroup:create": _R(SYSTEM_ADMIN_OR_OWNER_ADMIN, "POST /v1/portgroups"),
    "baremetal:portgroup:update": _R(SYSTEM_MEMBER_OR_OWNER_ADMIN,
                                     "PATCH a portgroup (a new node_uuid: on that node too)"),
    "baremetal:portgroup:delete": _R(SYSTEM_ADMIN_OR_OWNER_ADMIN, "DELETE a portgroup"),
    # allocations; target: the allocation (create: its owner, by default the creator's)
    "baremetal:allocation:get": _R(SYSTEM_OR_OWNER_READER,
                                   "GET an allocation, a node's allocation; lists"),
    "baremetal:allocation:create": _R(SYSTEM_MEMBER | _owner("member"),
                                      "POST /v1/allocations (Ironic's create and "
                                      "create_restricted)"),
    "baremetal:allocation:update": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER, "PATCH an allocation"),
    "baremetal:allocation:delete": _R(SYSTEM_MEMBER_OR_OWNER_MEMBER,
                                      "DELETE an allocation, a node's allocation"),
    # inspection: a node's inventory (target: the node), the rules (system-wide)
    "baremetal:node:inventory:get": _R(SYSTEM_OR_OWNER_READER, "GET /v1/nodes/{id}/inventory"),
    "baremetal:node:bios:get": _R(SYSTEM_OR_PROJECT_READER,
                                  "GET /v1/nodes/{id}/bios[/{name}]"),
    "baremetal:inspection_rule:get": _R(SYSTEM_READER, "GET an inspection rule; lists"),
    "baremetal:inspection_rule:create": _R(SYSTEM_ADMIN, "POST /v1/inspection_rules"),
    "baremetal:inspection_rule:update": _R(SYSTEM_ADMIN, "PATCH an inspection rule"),
    "baremetal:inspection_rule:delete": _R(SYSTEM_ADMIN, "DELETE an inspection rule"),
    # read-only registries
    "baremetal:conductor:get": _R(ANYONE, "GET /v1/conductors[/{hostname}]"),
    "baremetal:driver:get": _R(ANYONE, "GET /v1/drivers[/{name}]"),
    "baremetal:driver:get_properties": _R(ANYONE, "GET /v1/drivers/{name}/properties"),
    # metalplane's switch registry (an extension)
    "metalplane:switch:get": _R(SYSTEM_ADMIN, "GET /v1/switches[/{id}]"),
    "metalplane:switch:create": _R(SYSTEM_ADMIN, "POST /v1/switches"),
    "metalplane:switch:delete": _R(SYSTEM_ADMIN, "DELETE /v1/switches/{id}"),
    "metalplane:switch:sync": _R(SYSTEM_ADMIN, "POST /v1/switches/sync"),
    "metalplane:network:sync": _R(SYSTEM_ADMIN, "POST /v1/network/sync"),
    # networking; target: the resource (create: the project it is created in)
    "get_network": _R(READER_OR_PROJECT_READER | SHARED | EXTERNAL, "GET a network; lists"),
    "get_network:provider": _R(SYSTEM_READER, "provider:* attributes shown"),
    "create_network": _R(ADMIN_OR_PROJECT_MEMBER, "POST /v2.0/networks"),
    "create_network:shared": _R(SYSTEM_ADMIN, "... with shared true"),
    "create_network:provider": _R(SYSTEM_ADMIN, "... with provider:* or segments"),
    "update_network": _R(ADMIN_OR_PROJECT_MEMBER, "PUT a network"),
    "update_network:shared": _R(SYSTEM_ADMIN, "... changing shared"),
    "create_network:router:external": _R(SYSTEM_ADMIN, "... with router:external true"),
    "update_network:router:external": _R(SYSTEM_ADMIN, "... changing router:external"),
    "delete_network": _R(ADMIN_OR_PROJECT_MEMBER, "DELETE a network"),
    "get_subnet": _R(READER_OR_PROJECT_READER | SHARED | EXTERNAL, "GET a subnet; lists"),
    "create_subnet": _R(ADMIN_OR_NET_OWNER_MEMBER, "POST /v2.0/subnets"),
    "update_subnet": _R(ADMIN_OR_NET_OWNER_MEMBER, "PUT a subnet"),
    "delete_subnet": _R(ADMIN_OR_NET_OWNER_MEMBER, "DELETE a subnet"),
    "get_port": _R(READER_OR_PROJECT_READER | _parent("reader"), "GET a port; lists"),
    "get_port:binding": _R(SYSTEM_READER, "binding:host_id, profile, vif_type, "
                                          "vif_details shown"),
    "create_port": _R(ADMIN_OR_PROJECT_MEMBER, "POST /v2.0/ports (on a network it sees)"),
    "create_port:binding": _R(SYSTEM_ADMIN, "... with binding:host_id or binding:profile"),
    "update_port": _R(ADMIN_OR_PROJECT_MEMBER, "PUT a port"),
    "update_port:binding": _R(SYSTEM_ADMIN, "... changing binding:host_id or profile"),
    "delete_port": _R(ADMIN_OR_PROJECT_OR_NET_OWNER_MEMBER, "DELETE a port"),
    "get_security_group": _R(READER_OR_PROJECT_READER, "GET a security group; lists"),
    "create_security_group": _R(ADMIN_OR_PROJECT_MEMBER, "POST /v2.0/security-groups"),
    "update_security_group": _R(ADMIN_OR_PROJECT_MEMBER, "PUT a security group"),
    "delete_security_group": _R(ADMIN_OR_PROJECT_MEMBER, "DELETE a security group"),
    "get_security_group_rule": _R(READER_OR_PROJECT_READER | _parent("reader"),
                                  "GET a rule; lists"),
    "create_security_group_rule": _R(ADMIN_OR_PROJECT_MEMBER,
                                     "POST /v2.0/security-group-rules (in a group it sees)"),
    "delete_security_group_rule": _R(ADMIN_OR_PROJECT_OR_NET_OWNER_MEMBER, "DELETE a rule"),
    # L3 (only when a mechanism driver realises routers); target: the router or floating IP
    "get_router": _R(READER_OR_PROJECT_READER, "GET a router; lists"),
    "create_router": _R(ADMIN_OR_PROJECT_MEMBER,
                        "POST /v2.0/routers (a gateway on an external network it sees)"),
    "create_router:external_gateway_info:enable_snat": _R(SYSTEM_ADMIN,
                                                          "... with enable_snat"),
    "create_router:external_gateway_info:external_fixed_ips": _R(
        SYSTEM_ADMIN, "... with external_fixed_ips"),
    "update_router": _R(ADMIN_OR_PROJECT_MEMBER, "PUT a router"),
    "update_router:external_gateway_info:enable_snat": _R(SYSTEM_ADMIN,
                                                          "... changing enable_snat"),
    "update_router:external_gateway_info:external_fixed_ips": _R(
        SYSTEM_ADMIN, "... changing external_fixed_ips"),
    "delete_router": _R(ADMIN_OR_PROJECT_MEMBER, "DELETE a router"),
    "add_router_interface": _R(ADMIN_OR_PROJECT_MEMBER,
                               "PUT .../add_router_interface (a subnet of its project or a "
                               "port it may update)"),
    "remove_router_interface": _R(ADMIN_OR_PROJECT_MEMBER,
                                  "PUT .../remove_router_interface"),
    "get_floatingip": _R(READER_OR_PROJECT_READER, "GET a floating IP; lists"),
    "create_floatingip": _R(ADMIN_OR_PROJECT_MEMBER,
                            "POST /v2.0/floatingips (on an external network it sees)"),
    "create_floatingip:floating_ip_address": _R(SYSTEM_ADMIN,
                                                "... with floating_ip_address"),
    "update_floatingip": _R(ADMIN_OR_PROJECT_MEMBER,
                            "PUT a floating IP (a port of its project)"),
    "delete_floatingip": _R(ADMIN_OR_PROJECT_MEMBER, "DELETE a floating IP"),
}


def rules_table() -> str:
    """The rules as a Markdown table: rule, who it allows, what it guards."""
    rows = ["| rule | allowed | guards |", "|---|---|---|"]
    rows += [f"| `{name}` | {rule.persona.text} | {rule.guards} |"
             for name, rule in RULES.items()]
    return "\n".join(rows)


def rules_by_persona(width: int = 92) -> str:
    """The rules grouped by whom they allow: the persona on a line, its rules indented
    under it, wrapped at ``width``."""
    groups: dict[str, list[str]] = {}
    for name, rule in RULES.items():
        groups.setdefault(rule.persona.text, []).append(name)
    out = []
    for who, names in groups.items():
        out.append(who)
        out += textwrap.wrap(", ".join(names), width, initial_indent="    ",
                             subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(out)


def principal(request: Request) -> Principal:
    """The principal the middleware set on ``request``. Raises :class:`NotAuthorized`
    when there is none (a public path has no principal; it must not ask)."""
    found = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(found, Principal):
        raise NotAuthorized("Authentication required")
    return found


def may(p: Principal, rule: str, target: Target | None = None) -> bool:
    """Whether ``rule`` allows ``p`` on ``target``. Raises KeyError for an unknown rule
    (a typo must not allow anything)."""
    return RULES[rule].persona.check(p, target or Target())


def _read_rule(rule: str) -> str:
    """The rule that lets one see the resource ``rule`` is about."""
    if rule in ("add_router_interface", "remove_router_interface"):
        return "get_router"
    if rule.startswith("baremetal:"):
        kind = rule.split(":")[1]
        return "baremetal:node:get" if kind in ("port", "portgroup") else f"baremetal:{kind}:get"
    action_kind = rule.split(":")[0]
    return "get_" + action_kind.split("_", 1)[1]


def _denied(p: Principal, rule: str) -> Forbidden:
    if ":" in rule and rule.split(":")[0] in ("baremetal", "metalplane"):  # Ironic's text
        return Forbidden(f"Access was denied to the following resource: {rule} ({p})")
    return Forbidden(f"(rule:{rule}) is disallowed by policy for {p}")  # Neutron's


def require(p: Principal, rule: str, target: Target | None = None,
            hidden: str | None = None) -> None:
    """Go on only if ``rule`` allows ``p`` on ``target``. With ``hidden`` (the resource's
    not-found message), a target ``p`` may not even see raises :class:`NotFound` with it;
    otherwise a refusal raises :class:`Forbidden` (403) naming the rule."""
    target = target or Target()
    if hidden is not None and not may(p, _read_rule(rule), target):
        raise NotFound(hidden)
    if not may(p, rule, target):
        raise _denied(p, rule)


def scope(p: Principal) -> str | None:
    """The project a list is limited to (its own, or owned or leased nodes'), or None for
    the system scope, which sees everything."""
    return p.project


T = TypeVar("T")


def visible(p: Principal, rule: str, items: Iterable[T],
            target: Callable[[T], Target]) -> list[T]:
    """The ``items`` whose ``target`` ``rule`` (a get rule) allows ``p`` to see.
    ``target`` is not called when ``rule`` allows ``p`` on the empty target: then it
    allows every one (only the system and anyone personas match no owner nor share)."""
    if may(p, rule):
        return list(items)
    return [i for i in items if may(p, rule, target(i))]


def require_node(p: Principal, rule: str, node: Any, ident: str) -> None:
    """:func:`require` on a node: 404 ("Node <ident> could not be found.") if ``p`` may not
    see it, 403 if ``rule`` forbids it."""
    require(p, rule, node_target(node), hidden=f"Node {ident} could not be found.")


def may_see_node(p: Principal, node: Any) -> bool:
    return may(p, "baremetal:node:get", node_target(node))


def require_creation(p: Principal, rule: str, body: dict[str, Any], key: str = "owner",
                     alias: str | None = None, parent: Target | None = None) -> Target:
    """Check creating a resource whose project is ``body[key]`` (or ``body[alias]``): a
    project user creates only in its own project, which is also the default (set in
    ``body``); the system scope may name any. Returns the target ``rule`` allowed; a
    project named that is not the caller's is 403 naming ``rule``.
    ``parent``: the network (or security group) it is created in."""
    project = body.get(key) or (body.get(alias) if alias else None) or None
    if p.project is not None:
        if project is None:
            body[key] = project = p.project
        elif project != p.project:
            raise _denied(p, rule)
    target = Target(owner=project, parent=parent.owner if parent else None,
                    shared=parent.shared if parent else False)
    require(p, rule, target)
    return target


# Ironic's attribute rules of a node PATCH (ironic/api/controllers/v1/node.py,
# _authorize_patch_and_get_node), by the top-level field a path changes.
_NODE_PATCH_RULES = {
    "instance_info": "baremetal:node:update_instance_info",
    "extra": "baremetal:node:update_extra",
    "driver_info": "baremetal:node:update:driver_info",
    "properties": "baremetal:node:update:properties",
    "chassis_uuid": "baremetal:node:update:chassis_uuid",
    "instance_uuid": "baremetal:node:update:instance_uuid",
    "lessee": "baremetal:node:update:lessee",
    "owner": "baremetal:node:update:owner",
    "driver": "baremetal:node:update:driver_interfaces",
    "network_data": "baremetal:node:update:network_data",
    "conductor_group": "baremetal:node:update:conductor_group",
    "name": "baremetal:node:update:name",
    "retired": "baremetal:node:update:retired",
    "retired_reason": "baremetal:node:update:retired",
    "shard": "baremetal:node:update:shard",
    "parent_node": "baremetal:node:update:parent_node",
}


def _false(value: Any) -> bool:
    return value is False or (isinstance(value, str)
                              and value.strip().lower() in ("0", "f", "false", "n", "no", "off"))


def _top(pointer: Any) -> str:
    return str(pointer or "").lstrip("/").split("/")[0]


def node_patch_rules(patch: Iterable[dict[str, Any]]) -> list[str]:
    """The rules a node JSON patch needs, as Ironic picks them: one per attribute rule a
    changed field has (``/automated_clean`` to false: ``disable_cleaning``; a
    ``*_interface``: ``update:driver_interfaces``), plus ``baremetal:node:update`` for any
    other field (or none). Ironic takes only add, replace and remove; here a ``move``
    also changes its ``from`` field, and a ``move``, ``copy`` or ``test`` that reads a
    field hidden from some readers (``driver_info``...) needs that field's get rule."""
    rules: list[str] = []
    generic = False
    for op in patch:
        kind = op.get("op")
        changed = [] if kind == "test" else [_top(op.get("path"))]
        generic = generic or kind == "test"  # a PATCH, if one that changes nothing
        if kind == "move":
            changed.append(_top(op.get("from")))
        read = op.get("from") if kind in ("move", "copy") else (
            op.get("path") if kind == "test" else None)
        wanted = []
        if read is not None and _top(read) in REDACTED_NODE_FIELDS:
            wanted.append(f"baremetal:node:get:{_top(read)}")
        for top in changed:
            if top == "automated_clean" and _false(op.get("value")):
                wanted.append("baremetal:node:disable_cleaning")
            elif top.endswith("_interface"):
                wanted.append("baremetal:node:update:driver_interfaces")
            elif top in _NODE_PATCH_RULES:
                wanted.append(_NODE_PATCH_RULES[top])
            else:
                generic = True
        rules += [r for r in wanted if r not in rules]
    if generic or not rules:
        rules.append("baremetal:node:update")
    return rules


# ---------------------------------------------------------------- targets
def node_target(node: Any) -> Target:
    """A node's (or a port's node's) owner and lessee."""
    return Target(owner=node.owner, lessee=node.lessee)


def owner_target(owner: str | None) -> Target:
    """An allocation's (or a resource to be created) owner."""
    return Target(owner=owner)


def network_target(net: Any) -> Target:
    return Target(owner=net.project_id, shared=bool(net.shared),
                  external=bool(net.router_external))


def child_target(row: Any, parent: Any | None) -> Target:
    """A subnet or port (``parent``: its network) or security group rule (its group)."""
    if parent is None:
        return Target(owner=row.project_id)
    return Target(owner=row.project_id, parent=parent.project_id,
                  shared=bool(getattr(parent, "shared", False)),
                  external=bool(getattr(parent, "router_external", False)))


# ---------------------------------------------------------------- what a view hides
REDACTED_NODE_FIELDS = ("driver_info", "driver_internal_info", "last_error", "reservation")


def redact_node(p: Principal, target: Target, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a node's view) with the fields ``p`` may not read replaced, as Ironic's
    ``node_sanitize`` does for a lessee: text fields by a notice, objects by
    ``{"content": notice}``."""
    if p.system:  # every system user reads them (Ironic's get:filter_threshold)
        return doc
    for name in REDACTED_NODE_FIELDS:
        rule = f"baremetal:node:get:{name}"
        if name in doc and not may(p, rule, target):
            notice = f"** Value Redacted - Requires {rule} permission. **"
            doc[name] = {"content": notice} if name.startswith("driver") else notice
    return doc


NETWORK_PROVIDER_KEYS = ("provider:network_type", "provider:physical_network",
                         "provider:segmentation_id")
PORT_BINDING_KEYS = ("binding:host_id", "binding:profile", "binding:vif_type",
                     "binding:vif_details")


def strip_attributes(p: Principal, rule: str, doc: dict[str, Any],
                     keys: Iterable[str]) -> dict[str, Any]:
    """``doc`` without ``keys`` unless ``rule`` allows ``p`` to read them (Neutron leaves
    out the attributes a policy hides)."""
    if not may(p, rule):
        for key in keys:
            doc.pop(key, None)
    return doc
