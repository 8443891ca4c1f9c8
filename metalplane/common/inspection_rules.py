"""Inspection rules: their validation, the ironic-inspector format's conversion, and their
evaluation on a node's inspection data.

Pure data and functions (no I/O): the API validates with them, the CLI converts with them,
the conductor applies them (:mod:`metalplane.conductor.inspection`) and writes back what
they changed. Source: Ironic's built-in inspection rules (``ironic/common/inspection_rules``:
``operators.py``, ``actions.py``, ``engine.py``, ``validation.py``; API 1.96) and
ironic-inspector's rules (``ironic_inspector/plugins/rules.py``, the ``data://`` /
``node://`` field paths).

A rule is ``{"uuid", "description", "priority" (0-9999), "phase" ("main"), "sensitive",
"conditions": [{"op", "args", "loop"?, "multiple"?}], "actions": [{"op", "args",
"loop"?}]}``. An ``op`` of a condition may be inverted with a leading ``!``.

String arguments are Python format strings over ``data`` (ironic-inspector's introspection
data: the plugin data with the inventory under ``inventory``), ``inventory``,
``plugin_data``, ``node`` (its fields, by key or attribute) and, in a loop, ``item``. An
argument that is exactly one reference (``"{inventory[cpu][count]}"``) keeps the type of
the value it names (an integer stays one), where Ironic would give its text; a reference
that does not resolve is left as written (Ironic's behaviour), except for ``is-empty``,
for which it is None. A ``[*]`` in a condition's single reference (the ironic-inspector
``data://inventory.interfaces[*].mac_address``) checks every element, combined by
``multiple``: ``any`` (default), ``all`` or ``first``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIONS", "OPERATORS", "SENSITIVE_MASK", "NodeData", "RuleError", "RuleFailed",
           "apply_rules", "from_inspector", "is_inspector_format", "validate_rule"]

SENSITIVE_MASK = "******"
PHASES = ("main",)
MAX_PRIORITY = 9999

# op -> (required args, optional args)
OPERATORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "eq": (("values",), ("force_strings",)), "ne": (("values",), ("force_strings",)),
    "lt": (("values",), ("force_strings",)), "le": (("values",), ("force_strings",)),
    "gt": (("values",), ("force_strings",)), "ge": (("values",), ("force_strings",)),
    "is-empty": (("value",), ()), "is-none": (("value",), ()), "is-true": (("value",), ()),
    "is-false": (("value",), ()), "in-net": (("address", "subnet"), ()),
    "matches": (("value", "regex"), ()), "contains": (("value", "regex"), ()),
    "one-of": (("value",), ("values",)),
}
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fail": (("msg",), ()), "log": (("msg",), ("level",)),
    "set-attribute": (("path", "value"), ()), "extend-attribute": (("path", "value"), ("unique",)),
    "del-attribute": (("path",), ()), "add-trait": (("name",), ()),
    "remove-trait": (("name",), ()), "set-capability": (("name", "value"), ()),
    "unset-capability": (("name",), ()),
    "set-port-attribute": (("port_id", "path", "value"), ()),
}
MULTIPLE = ("any", "all", "first", "last")
ROOTS = ("data", "inventory", "plugin_data", "node", "item")
# Node fields a rule may write (Ironic lets a rule set any field its API may patch).
NODE_FIELDS = frozenset({
    "driver", "driver_info", "properties", "instance_info", "extra", "name", "description",
    "resource_class", "owner", "lessee", "conductor_group", "automated_clean",
    "boot_interface", "bios_interface", "deploy_interface", "inspect_interface",
    "management_interface", "power_interface", "network_interface", "rescue_interface",
    "console_interface", "vendor_interface", "raid_interface", "storage_interface",
})
PORT_FIELDS = frozenset({"extra", "local_link_connection", "physical_network", "pxe_enabled",
                         "name"})
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SINGLE_REF = re.compile(r"^\{([A-Za-z_]\w*)((?:\[[^\[\]{}]*\])*)\}$")


class RuleError(ValueError):
    """A rule is malformed; ``field`` names where (``conditions[0].op``), as a 400 says."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class RuleFailed(Exception):
    """Applying a rule failed (a ``fail`` action, or an action that cannot be done); the
    message names the rule and, unless it is sensitive, what failed."""


# ---------------------------------------------------------------------------- validation
def _parse_op(op: Any, where: str) -> tuple[str, bool]:
    if not isinstance(op, str) or not op.strip():
        raise RuleError(where, "must be a non-empty string")
    text = op.strip()
    if text.count("!") > 1:
        raise RuleError(where, "only one '!' may invert an operator")
    return text.lstrip("!").strip(), text.startswith("!")


def _check_format(value: Any, where: str) -> None:
    """Every string in ``value`` must be a format string whose references start with one
    of :data:`ROOTS`."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_format(k, where)
            _check_format(v, f"{where}.{k}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_format(v, f"{where}[{i}]")
        return
    if not isinstance(value, str):
        return
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise RuleError(where, f"bad format string {value!r}: {exc}") from None
    for _, name, _, _ in parts:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root not in ROOTS:
            raise RuleError(where, f"bad format string {value!r}: '{{{name}}}' does not "
                                   f"start with one of {', '.join(ROOTS)}")
        if "[*]" in name and not _SINGLE_REF.match(value):
            raise RuleError(where, f"bad format string {value!r}: [*] only in a value that "
                                   "is one reference")


def _split_path(path: str) -> list[str]:
    return [p for p in (path.strip("/").split("/") if "/" in path else path.split("."))]


def _check_path(path: Any, where: str, fields: frozenset[str]) -> None:
    if not isinstance(path, str) or not path.strip("/"):
        raise RuleError(where, "bad path: must be a non-empty string")
    if "{" in path:  # formatted per loop item: checked when applied
        _check_format(path, where)
        return
    parts = _split_path(path)
    if any(not p for p in parts):
        raise RuleError(where, f"bad path {path!r}: empty component")
    if parts[0] not in fields:
        raise RuleError(where, f"bad path {path!r}: '{parts[0]}' is not a field a rule may "
                               f"set (one of {', '.join(sorted(fields))})")


def _check_args(kind: str, op: str, args: Any, spec: tuple[tuple[str, ...], tuple[str, ...]],
                where: str) -> dict[str, Any]:
    required, optional = spec
    if isinstance(args, list):  # Ironic's deprecated positional form
        names = [*required, *optional]
        if len(args) < len(required) or len(args) > len(names):
            raise RuleError(f"{where}.args", f"{op} takes {', '.join(names)}")
        args = dict(zip(names, args, strict=False))
    if not isinstance(args, dict):
        raise RuleError(f"{where}.args", "must be an object")
    missing = [a for a in required if a not in args]
    if missing:
        raise RuleError(f"{where}.args", f"{kind} {op} needs argument(s) {', '.join(missing)}")
    extra = sorted(set(args) - set(required) - set(optional))
    if extra:
        raise RuleError(f"{where}.args", f"{kind} {op} takes no argument(s) {', '.join(extra)}")
    return args


def _check_loop(entry: dict[str, Any], where: str) -> None:
    loop = entry.get("loop")
    if loop is not None and not isinstance(loop, list | dict):
        raise RuleError(f"{where}.loop", "must be a list or an object")
    if loop is not None:
        _check_format(loop, f"{where}.loop")


def validate_rule(rule: Any) -> dict[str, Any]:
    """The rule in its stored shape (defaults filled: ``priority`` 0, ``phase`` main,
    ``sensitive`` false, ``conditions`` []). Raises :class:`RuleError` naming the field:
    an unknown field or op, a missing or unknown argument, a bad path, a bad format
    string, a bad regular expression or network, a priority out of 0-9999."""
    if not isinstance(rule, dict):
        raise RuleError("rule", "must be an object")
    known = {"uuid", "description", "priority", "phase", "sensitive", "conditions", "actions"}
    extra = sorted(set(rule) - known)
    if extra:
        raise RuleError(extra[0], "unknown field of an inspection rule")
    out: dict[str, Any] = {"uuid": rule.get("uuid"), "description": rule.get("description"),
                           "priority": rule.get("priority", 0),
                           "phase": rule.get("phase") or "main",
                           "sensitive": bool(rule.get("sensitive") or False)}
    if out["uuid"] is not None and not isinstance(out["uuid"], str):
        raise RuleError("uuid", "must be a string")
    if out["description"] is not None and (not isinstance(out["description"], str)
                                           or len(out["description"]) > 255):
        raise RuleError("description", "must be a string of at most 255 characters")
    prio = out["priority"]
    if isinstance(prio, str) and prio.strip().isdigit():  # python-ironicclient sends text
        prio = out["priority"] = int(prio)
    if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= MAX_PRIORITY:
        raise RuleError("priority", f"must be an integer from 0 to {MAX_PRIORITY}")
    if out["phase"] not in PHASES:
        raise RuleError("phase", f"invalid phase {out['phase']!r}; valid: {', '.join(PHASES)}")
    if not isinstance(rule.get("sensitive", False), bool | None):
        raise RuleError("sensitive", "must be a boolean")
    conditions, actions = rule.get("conditions") or [], rule.get("actions")
    if not isinstance(conditions, list):
        raise RuleError("conditions", "must be a list")
    if not isinstance(actions, list) or not actions:
        raise RuleError("actions", "must be a non-empty list")
    out["conditions"] = []
    for i, cond in enumerate(conditions):
        where = f"conditions[{i}]"
        if not isinstance(cond, dict):
            raise RuleError(where, "must be an object with 'op' and 'args'")
        op, _ = _parse_op(cond.get("op"), f"{where}.op")
        if op not in OPERATORS:
            raise RuleError(f"{where}.op", f"unknown operator {op!r}; known: "
                                           f"{', '.join(OPERATORS)}")
        args = _check_args("condition", op, cond.get("args", {}), OPERATORS[op], where)
        for name, value in args.items():
            _check_format(value, f"{where}.args.{name}")
        if op in ("matches", "contains") and isinstance(args["regex"], str) \
                and "{" not in args["regex"]:
            try:
                re.compile(args["regex"])
            except re.error as exc:
                raise RuleError(f"{where}.args.regex", f"bad regular expression: {exc}") from None
        if op == "in-net" and isinstance(args["subnet"], str) and "{" not in args["subnet"]:
            try:
                ipaddress.ip_network(args["subnet"], strict=False)
            except ValueError as exc:
                raise RuleError(f"{where}.args.subnet", f"bad network: {exc}") from None
        if op in ("eq", "ne", "lt", "le", "gt", "ge") and not isinstance(args["values"], list):
            raise RuleError(f"{where}.args.values", "must be a list")
        multiple = cond.get("multiple", "any")
        if multiple not in MULTIPLE:
            raise RuleError(f"{where}.multiple", f"must be one of {', '.join(MULTIPLE)}")
        _check_loop(cond, where)
        out["conditions"].append({**cond, "args": args})
    out["actions"] = []
    for i, action in enumerate(actions):
        where = f"actions[{i}]"
        if not isinstance(action, dict):
            raise RuleError(where, "must be an object with 'op' and 'args'")
        act = action.get("op")
        if not isinstance(act, str) or act not in ACTIONS:
            raise RuleError(f"{where}.op", f"unknown action {act!r}; known: "
                                           f"{', '.join(ACTIONS)}")
        op = act
        args = _check_args("action", op, action.get("args", {}), ACTIONS[op], where)
        for name, value in args.items():
            if name != "path":
                _check_format(value, f"{where}.args.{name}")
        if "path" in args:
            _check_path(args["path"], f"{where}.args.path",
                        PORT_FIELDS if op == "set-port-attribute" else NODE_FIELDS)
        if op == "log" and args.get("level", "info") not in LOG_LEVELS:
            raise RuleError(f"{where}.args.level", f"must be one of {', '.join(LOG_LEVELS)}")
        _check_loop(action, where)
        out["actions"].append({**action, "args": args})
    return out


# ---------------------------------------------------------------------------- inspector format
def is_inspector_format(rule: Any) -> bool:
    """Whether ``rule`` is in ironic-inspector's format (actions named by ``action``,
    conditions with a ``field``) rather than Ironic's (``op`` and ``args``)."""
    if not isinstance(rule, dict):
        return False
    return (any(isinstance(a, dict) and "action" in a for a in rule.get("actions") or [])
            or any(isinstance(c, dict) and "field" in c for c in rule.get("conditions") or []))


def _field_ref(field_path: Any, where: str) -> str:
    """``data://inventory.cpu.count`` -> ``{data[inventory][cpu][count]}``;
    ``node://driver_info.ipmi_address`` -> ``{node[driver_info][ipmi_address]}``. A path
    without a scheme is a ``data://`` one (ironic-inspector's default)."""
    if not isinstance(field_path, str) or not field_path:
        raise RuleError(where, "bad path: must be a non-empty string")
    scheme, sep, rest = field_path.partition("://")
    if not sep:
        scheme, rest = "data", field_path
    if scheme not in ("data", "node"):
        raise RuleError(where, f"bad path {field_path!r}: scheme must be data:// or node://")
    rest = rest.lstrip("$").lstrip(".")
    parts: list[str] = []
    for piece in re.findall(r"[^.\[\]]+|\[[^\]]*\]", rest):
        parts.append(piece[1:-1] if piece.startswith("[") else piece)
    if not parts or any(not p or re.search(r"[{}]", p) for p in parts):
        raise RuleError(where, f"bad path {field_path!r}")
    return "{" + scheme + "".join(f"[{p}]" for p in parts) + "}"


_INSPECTOR_ACTION_ARGS = {  # inspector's argument name -> Ironic's
    "fail": {"message": "msg"}, "set-port-attribute": {"port": "port_id"},
}


def from_inspector(rule: dict[str, Any]) -> dict[str, Any]:
    """An ironic-inspector rule (``{"description", "conditions": [{"op", "field",
    "value"?, "invert"?, "multiple"?}], "actions": [{"action", ...arguments}]}``) in
    Ironic's built-in shape. Raises :class:`RuleError` naming the field."""
    conditions = []
    for i, cond in enumerate(rule.get("conditions") or []):
        where = f"conditions[{i}]"
        if not isinstance(cond, dict):
            raise RuleError(where, "must be an object")
        op = cond.get("op")
        if not isinstance(op, str):
            raise RuleError(f"{where}.op", "must be a string")
        ref = _field_ref(cond.get("field"), f"{where}.field")
        value = cond.get("value")
        args: dict[str, Any]
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            args = {"values": [ref, value]}
        elif op in ("is-empty", "is-none", "is-true", "is-false"):
            args = {"value": ref}
        elif op == "in-net":
            args = {"address": ref, "subnet": value}
        elif op in ("matches", "contains"):
            args = {"value": ref, "regex": value}
        elif op == "one-of":
            args = {"value": ref, "values": cond.get("values", value)}
        else:
            raise RuleError(f"{where}.op", f"unknown operator {op!r}; known: "
                                           f"{', '.join(OPERATORS)}")
        out: dict[str, Any] = {"op": ("!" if cond.get("invert") else "") + op, "args": args}
        if "multiple" in cond:
            out["multiple"] = cond["multiple"]
        conditions.append(out)
    actions = []
    for i, action in enumerate(rule.get("actions") or []):
        where = f"actions[{i}]"
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            raise RuleError(f"{where}.action", "must be a string naming the action")
        name = action["action"]
        renames = _INSPECTOR_ACTION_ARGS.get(name, {})
        args = {renames.get(k) or k: v for k, v in action.items() if k != "action"}
        actions.append({"op": name, "args": args})
    out_rule = {k: v for k, v in rule.items() if k in ("uuid", "description", "priority",
                                                       "phase", "sensitive")}
    return {**out_rule, "conditions": conditions, "actions": actions}


# ---------------------------------------------------------------------------- evaluation
class _Missing(Exception):
    pass


class _Fields(dict[str, Any]):
    """A node's fields, readable as ``node[driver]`` and ``node.driver``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class NodeData:
    """What rules read and change: the node's fields (:data:`NODE_FIELDS` plus ``uuid``
    and ``traits``), its ports (``{uuid: {"address", ...PORT_FIELDS}}``) and what they
    logged. The caller writes back what changed."""

    fields: dict[str, Any]
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)


def _lookup(root: Any, keys: list[str]) -> list[Any]:
    """The values ``keys`` name under ``root``; a ``*`` key fans out over a list."""
    values = [root]
    for key in keys:
        nxt: list[Any] = []
        for v in values:
            if key == "*":
                if not isinstance(v, list):
                    raise _Missing(key)
                nxt.extend(v)
            elif isinstance(v, dict):
                if key not in v:
                    raise _Missing(key)
                nxt.append(v[key])
            elif isinstance(v, list) and re.fullmatch(r"-?\d+", key):
                try:
                    nxt.append(v[int(key)])
                except IndexError:
                    raise _Missing(key) from None
            else:
                raise _Missing(key)
        values = nxt
    return values


class _Context:
    def __init__(self, node: NodeData, inventory: dict[str, Any], plugin_data: dict[str, Any],
                 item: Any = None, loop: bool = False) -> None:
        self.vars: dict[str, Any] = {
            "data": {**plugin_data, "inventory": inventory}, "inventory": inventory,
            "plugin_data": plugin_data, "node": _Fields(node.fields)}
        if loop:
            self.vars["item"] = item

    def resolve(self, value: Any, op: str = "") -> Any:
        """``value`` with its references filled (see the module's docstring). A ``[*]``
        reference gives a :class:`_Many`."""
        if isinstance(value, dict):
            return {str(self.resolve(k)): self.resolve(v, op) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, op) for v in value]
        if not isinstance(value, str):
            return value
        out = self._one(value, op)
        if "item" in self.vars and isinstance(out, str) and out != value and "{" in out:
            out = self._one(out, op)  # a loop item's own references (Ironic formats twice)
        return out

    def _one(self, value: str, op: str) -> Any:
        single = _SINGLE_REF.match(value)
        if single and single.group(1) in self.vars:
            keys = re.findall(r"\[([^\]]*)\]", single.group(2))
            try:
                found = _lookup(self.vars[single.group(1)], keys)
            except _Missing:
                return None if op == "is-empty" else value
            return _Many(found) if "*" in keys else found[0]
        try:
            return value.format(**self.vars)
        except KeyError:
            return None if op == "is-empty" else value
        except (AttributeError, ValueError, IndexError, TypeError):
            return value


class _Many(list[Any]):
    """The values of a ``[*]`` reference: the condition is checked on each."""


def _compare(op: str, values: list[Any], force: bool) -> bool:
    import operator as o
    fn = {"eq": o.eq, "ne": o.ne, "lt": o.lt, "le": o.le, "gt": o.gt, "ge": o.ge}[op]
    if force:
        values = [str(v) for v in values]
    try:
        return all(fn(values[i], values[i + 1]) for i in range(len(values) - 1))
    except TypeError:
        return False


def _truth(value: Any, want: bool) -> bool:
    if isinstance(value, bool):
        return value is want
    if isinstance(value, int | float):
        return bool(value) is want
    if isinstance(value, str):
        return value.lower() in (("yes", "true") if want else ("no", "false"))
    return value is None and not want


def _check(op: str, args: dict[str, Any]) -> bool:
    if op in ("eq", "ne", "lt", "le", "gt", "ge"):
        values = args["values"]
        if not isinstance(values, list):
            raise RuleFailed(f"{op}: 'values' is not a list")
        return _compare(op, values, bool(args.get("force_strings")))
    value = args.get("value")
    if op == "is-empty":
        return str(value) in ("", "None", "[]", "{}")
    if op == "is-none":
        return value is None
    if op in ("is-true", "is-false"):
        return _truth(value, op == "is-true")
    if op == "in-net":
        try:
            return ipaddress.ip_address(str(args["address"])) in ipaddress.ip_network(
                str(args["subnet"]), strict=False)
        except ValueError:
            return False
    if op in ("matches", "contains"):
        regex = str(args["regex"])
        try:
            if op == "matches":
                return re.match(regex if regex.endswith("$") else regex + "$", str(value)) \
                    is not None
            return re.search(regex, str(value)) is not None
        except re.error as exc:
            raise RuleFailed(f"{op}: bad regular expression: {exc}") from None
    if op == "one-of":
        return value in (args.get("values") or [])
    raise RuleFailed(f"unknown operator {op!r}")


def _condition(cond: dict[str, Any], ctx_for: Callable[[Any, bool], _Context]) -> bool:
    op, inverted = _parse_op(cond["op"], "op")
    multiple = cond.get("multiple", "any")
    loop = cond.get("loop")
    items: list[Any] = ([loop] if isinstance(loop, dict) else list(loop)) if loop else []
    results: list[bool] = []
    for item in items or [None]:
        ctx = ctx_for(item, bool(loop))
        args = ctx.resolve(cond.get("args") or {}, op)
        if loop and "values" in args and op in ("eq", "ne", "lt", "le", "gt", "ge"):
            args["force_strings"] = True
        fanned = [k for k, v in args.items() if isinstance(v, _Many)]
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            fanned_vals = [i for i, v in enumerate(args["values"]) if isinstance(v, _Many)]
            if fanned_vals:
                many = args["values"][fanned_vals[0]]
                each = [_check(op, {**args, "values": [x if isinstance(v, _Many) else v
                                                       for v in args["values"]]})
                        for x in many]
                results.append(_combine(each, multiple))
                continue
        if fanned:
            many = args[fanned[0]]
            each = [_check(op, {**args, fanned[0]: x}) for x in many]
            results.append(_combine(each, multiple))
            continue
        results.append(_check(op, args))
    result = _combine(results, multiple) if loop else results[0]
    return not result if inverted else result


def _combine(results: list[bool], multiple: str) -> bool:
    if not results:
        return False
    if multiple == "all":
        return all(results)
    if multiple == "first":
        return results[0]
    if multiple == "last":
        return results[-1]
    return any(results)


def _container(root: dict[str, Any], parts: list[str], create: bool) -> dict[str, Any]:
    current = root
    for part in parts:
        nxt = current.get(part)
        if not isinstance(nxt, dict):
            if not create or nxt is not None:
                raise RuleFailed(f"'{part}' is not an object")
            nxt = current[part] = {}
        current = nxt
    return current


def _set(target: dict[str, Any], path: str, value: Any, allowed: frozenset[str]) -> None:
    parts = _split_path(path)
    if parts[0] not in allowed:
        raise RuleFailed(f"bad path {path!r}")
    if len(parts) == 1:
        target[parts[0]] = value
        return
    base = target.get(parts[0])
    if base is None:
        base = target[parts[0]] = {}
    if not isinstance(base, dict):
        raise RuleFailed(f"'{parts[0]}' is not an object")
    _container(base, parts[1:-1], True)[parts[-1]] = value


def _capabilities(props: dict[str, Any]) -> dict[str, str]:
    caps = props.get("capabilities") or ""
    if isinstance(caps, dict):
        return {str(k): str(v) for k, v in caps.items()}
    out = {}
    for pair in str(caps).split(","):
        if ":" in pair:
            k, v = pair.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _act(op: str, args: dict[str, Any], node: NodeData, log: Callable[[str, str], None]) -> None:
    f = node.fields
    if op == "fail":
        raise RuleFailed(str(args["msg"]))
    if op == "log":
        log(str(args.get("level", "info")).lower(), str(args["msg"]))
    elif op == "set-attribute":
        _set(f, str(args["path"]), args["value"], NODE_FIELDS)
    elif op == "extend-attribute":
        parts = _split_path(str(args["path"]))
        if parts[0] not in NODE_FIELDS:
            raise RuleFailed(f"bad path {args['path']!r}")
        holder = f if len(parts) == 1 else _container(f, parts[:-1], True)
        current = holder.setdefault(parts[-1], [])
        if current is None:
            current = holder[parts[-1]] = []
        if not isinstance(current, list):
            raise RuleFailed(f"cannot extend {args['path']!r}: it is not a list")
        if not args.get("unique") or args["value"] not in current:
            current.append(args["value"])
    elif op == "del-attribute":
        parts = _split_path(str(args["path"]))
        if parts[0] not in NODE_FIELDS:
            raise RuleFailed(f"bad path {args['path']!r}")
        if len(parts) == 1:
            f[parts[0]] = None
        else:
            holder = _container(f, parts[:-1], False)
            if parts[-1] not in holder:
                raise RuleFailed(f"{args['path']!r} is not set")
            del holder[parts[-1]]
    elif op == "add-trait":
        traits = f.setdefault("traits", [])
        if args["name"] not in traits:
            traits.append(str(args["name"]))
    elif op == "remove-trait":
        traits = f.get("traits") or []
        if args["name"] in traits:
            traits.remove(args["name"])
    elif op in ("set-capability", "unset-capability"):
        props = f.setdefault("properties", {})
        caps = _capabilities(props)
        if op == "set-capability":
            caps[str(args["name"])] = str(args["value"])
        else:
            caps.pop(str(args["name"]), None)
        props["capabilities"] = ",".join(f"{k}:{v}" for k, v in caps.items())
    elif op == "set-port-attribute":
        ident = str(args["port_id"]).lower()
        port = node.ports.get(ident) or next(
            (p for p in node.ports.values() if str(p.get("address", "")).lower() == ident), None)
        if port is None:
            raise RuleFailed(f"the node has no port {args['port_id']}")
        _set(port, str(args["path"]), args["value"], PORT_FIELDS)
    else:
        raise RuleFailed(f"unknown action {op!r}")


def _mask(text: str, sensitive: bool) -> str:
    return SENSITIVE_MASK if sensitive else text


def apply_rules(rules: list[dict[str, Any]], node: NodeData, inventory: dict[str, Any],
                plugin_data: dict[str, Any]) -> list[str]:
    """Apply ``rules`` (stored shape) to ``node``, highest ``priority`` first (ties: the
    order given): each rule whose conditions all hold has its actions run, in order, on
    ``node`` (changed in place; log lines go to ``node.logs`` as ``(level, text)``, a
    sensitive rule's as ``******``). Returns the UUIDs of the rules applied.

    Raises :class:`RuleFailed` naming the rule (``uuid`` and ``description``) at the first
    failed action: a ``fail``, or one that cannot be done. The inputs are never changed:
    conditions read copies."""
    applied = []
    inv, pdata = copy.deepcopy(inventory), copy.deepcopy(plugin_data)
    for rule in sorted(rules, key=lambda r: -int(r.get("priority") or 0)):
        sensitive = bool(rule.get("sensitive"))
        name = rule.get("uuid") or "?"
        if rule.get("description"):
            name += f" ({rule['description']})"

        def ctx_for(item: Any, loop: bool) -> _Context:
            return _Context(node, inv, pdata, item, loop)

        def log(level: str, text: str, _s: bool = sensitive) -> None:
            node.logs.append((level, _mask(text, _s)))

        try:
            if not all(_condition(c, ctx_for) for c in rule.get("conditions") or []):
                continue
            for i, action in enumerate(rule.get("actions") or []):
                loop = action.get("loop")
                items = ([loop] if isinstance(loop, dict) else list(loop)) if loop else [None]
                for item in items:
                    ctx = ctx_for(item, bool(loop))
                    args = ctx.resolve(action.get("args") or {}, action["op"])
                    try:
                        _act(action["op"], args, node, log)
                    except RuleFailed as exc:
                        what = "" if sensitive else f": {exc}"
                        if action["op"] == "fail":
                            raise RuleFailed(f"inspection rule {name} failed the node{what}"
                                             ) from None
                        raise RuleFailed(f"inspection rule {name}: action {i} "
                                         f"({action['op']}) failed{what}") from None
        except RuleFailed:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            what = "" if sensitive else f": {exc}"
            raise RuleFailed(f"inspection rule {name} could not be applied{what}") from None
        applied.append(str(rule.get("uuid")))
    return applied
