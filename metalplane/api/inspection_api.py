"""Inspection endpoints of the Bare Metal API v1: a node's inventory and the inspection rules.

``GET /v1/nodes/{node}/inventory`` (API 1.81): ``{"inventory": ..., "plugin_data": ...}``
as Ironic's built-in inspection stored them (404 before any in-band inspection).
``/v1/inspection_rules`` (API 1.96): create (201, ``Location``), list (``fields``,
``detail``, ``limit``, ``marker``, ``sort_key``, ``sort_dir``, ``phase``), show, JSON-patch
update and delete (204), in Ironic's shapes. A sensitive rule's ``conditions`` and
``actions`` are shown as null, and the flag cannot be unset. A bad rule is a 400 naming
the field (:func:`metalplane.common.inspection_rules.validate_rule`). An older
micro-version gets Ironic's answer: 404 (405 for a write).

Source: Bare Metal API reference, "Node inventory" and "Inspection rules";
``ironic/api/controllers/v1/inspection_rule.py``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from typing import Any

import jsonpatch
from fastapi import Body, FastAPI, Request, Response

from metalplane.api import policy, views
from metalplane.api.versions import API_VERSION_STATE, MAX_VERSION
from metalplane.common.exceptions import Invalid, MetalplaneError, NotFound
from metalplane.common.inspection_rules import RuleError, validate_rule
from metalplane.conductor.manager import Conductor
from metalplane.db import api as db_api
from metalplane.db import inspection as db_inspection
from metalplane.db.models import InspectionRule

__all__ = ["INVENTORY_VERSION", "RULES_VERSION", "RULE_FIELDS", "register"]

INVENTORY_VERSION, RULES_VERSION = (1, 81), (1, 96)
RULE_FIELDS = ("uuid", "description", "priority", "phase", "sensitive", "conditions",
               "actions", "created_at", "updated_at", "links")
RULE_LIST_FIELDS = ("uuid", "priority", "phase", "description")
WRITABLE = ("uuid", "description", "priority", "phase", "sensitive", "conditions", "actions")


class _NotAllowed(MetalplaneError):
    code = 405


def _require(request: Request, minimum: tuple[int, int], what: str, code: int = 404) -> None:
    """Ironic's answer to a micro-version that predates ``what``: 404 (or 405)."""
    version: tuple[int, int] = getattr(request.state, API_VERSION_STATE, MAX_VERSION)
    if version < minimum:
        message = f"The API version does not allow {what}"
        raise (_NotAllowed(message) if code == 405 else NotFound(message))


def _fields(fields: str | None) -> list[str] | None:
    """The ``?fields=`` list. Raises :class:`Invalid` naming unknown ones."""
    if fields is None:
        return None
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    bad = [f for f in wanted if f not in RULE_FIELDS]
    if bad:
        raise Invalid(f'Field(s) "{", ".join(bad)}" are not valid')
    return wanted


def _checked(body: Any) -> dict[str, Any]:
    try:
        return validate_rule(body)
    except RuleError as exc:
        raise Invalid(f"Invalid inspection rule: {exc}") from None


def rule_view(rule: InspectionRule, base: str, fields: list[str] | None = None
              ) -> dict[str, Any]:
    """A rule as Ironic shows it; a sensitive one's conditions and actions are null."""
    doc: dict[str, Any] = {
        "uuid": rule.uuid, "description": rule.description, "priority": rule.priority,
        "phase": rule.phase, "sensitive": rule.sensitive,
        "conditions": None if rule.sensitive else [_entry(c, True) for c in rule.conditions],
        "actions": None if rule.sensitive else [_entry(a, False) for a in rule.actions],
        "created_at": rule.created_at.isoformat() if rule.created_at else None,
        "updated_at": rule.updated_at.isoformat() if rule.updated_at else None,
        "links": [{"href": f"{base}/v1/inspection_rules/{rule.uuid}", "rel": "self"},
                  {"href": f"{base}/inspection_rules/{rule.uuid}", "rel": "bookmark"}],
    }
    if fields is not None:
        doc = {k: v for k, v in doc.items() if k in fields}
    return doc


def _entry(entry: dict[str, Any], condition: bool) -> dict[str, Any]:
    """Ironic's ``convert_conditions`` / ``convert_actions``: op, args, and loop (and a
    condition's multiple) when set."""
    out = {"op": entry["op"], "args": entry.get("args", {})}
    if condition and "multiple" in entry and not entry.get("loop"):
        out["multiple"] = entry["multiple"]  # metalplane: [*] references use it too
    if entry.get("loop"):
        out["loop"] = entry["loop"]
        if condition:
            out["multiple"] = entry.get("multiple", "any")
    return out


def register(app: FastAPI, conductor: Conductor) -> None:
    """Add the inventory and inspection rule routes to ``app``."""
    db = conductor.db

    def _node_inventory(request: Request, ident: str) -> dict[str, Any]:
        _require(request, INVENTORY_VERSION, "node inventory")
        node = db_api.get_node(db, ident)
        policy.require_node(policy.principal(request), "baremetal:node:inventory:get", node,
                            ident)
        row = db_inspection.get_inventory(db, node.id)
        if row is None:
            raise NotFound(f"Node inventory for node {node.uuid} could not be found.")
        return {"inventory": row.inventory_data, "plugin_data": row.plugin_data}

    @app.get("/v1/nodes/{ident}/inventory", tags=["inspection"],
             summary="A node's inventory and plugin data from its last inspection")
    async def node_inventory(request: Request, ident: str) -> dict[str, Any]:
        call = functools.partial(_node_inventory, request, ident)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def _rules_allowed(request: Request, rule: str, write: bool = False) -> None:
        _require(request, RULES_VERSION, "inspection rules", 405 if write else 404)
        policy.require(policy.principal(request), rule)

    @app.get("/v1/inspection_rules", tags=["inspection"], summary="List inspection rules")
    def list_rules(request: Request, detail: bool | None = None, fields: str | None = None,
                   limit: int | None = None, marker: str | None = None,
                   sort_key: str = "id", sort_dir: str = "asc",
                   phase: str | None = None) -> dict[str, Any]:
        _rules_allowed(request, "baremetal:inspection_rule:get")
        wanted = _fields(fields)
        if wanted is not None and detail:
            raise Invalid("Can not specify ?detail=True and fields in the same request.")
        if wanted is None and not detail:
            wanted = [*RULE_LIST_FIELDS, "links"]
        if sort_key in ("actions", "conditions"):
            raise Invalid(f"The sort_key value {sort_key} is an invalid field for sorting")
        if limit is not None and limit < 0:
            raise Invalid(f"Value must be positive: limit {limit}")
        size = min(limit or views.MAX_LIMIT, views.MAX_LIMIT)
        rows = db_inspection.list_rules(db, phase, size, marker, sort_key, sort_dir)
        base = views.base_url(request)
        out: dict[str, Any] = {"inspection_rules": [rule_view(r, base, wanted) for r in rows]}
        if len(rows) == size:
            out["next"] = views.next_link(request, size, rows[-1].uuid)
        return out

    @app.get("/v1/inspection_rules/{uuid}", tags=["inspection"], summary="Show a rule")
    def show_rule(request: Request, uuid: str, fields: str | None = None) -> dict[str, Any]:
        _rules_allowed(request, "baremetal:inspection_rule:get")
        wanted = _fields(fields)
        return rule_view(db_inspection.get_rule(db, uuid), views.base_url(request), wanted)

    @app.post("/v1/inspection_rules", status_code=201, tags=["inspection"],
              summary="Create an inspection rule")
    def create_rule(request: Request, response: Response,
                    body: Any = Body(...)) -> dict[str, Any]:
        _rules_allowed(request, "baremetal:inspection_rule:create", write=True)
        values = _checked(body)
        if values["uuid"] is not None and not db_api.is_uuid_like(values["uuid"]):
            raise Invalid(f"Invalid inspection rule: uuid: '{values['uuid']}' is not a UUID")
        rule = db_inspection.create_rule(db, values)
        base = views.base_url(request)
        response.headers["Location"] = f"{base}/v1/inspection_rules/{rule.uuid}"
        return rule_view(rule, base)

    @app.patch("/v1/inspection_rules/{uuid}", tags=["inspection"],
               summary="Update an inspection rule (JSON patch)")
    def update_rule(request: Request, uuid: str, patch: Any = Body(...)) -> dict[str, Any]:
        _rules_allowed(request, "baremetal:inspection_rule:update", write=True)
        rule = db_inspection.get_rule(db, uuid)
        if not isinstance(patch, list) or not patch:
            raise Invalid("a PATCH body must be a non-empty JSON patch list")
        for op in patch:
            if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") \
                    or not isinstance(op.get("path"), str):
                raise Invalid("each patch operation needs 'op' (add, replace or remove) and "
                              "'path'")
            top = op["path"].lstrip("/").split("/")[0]
            if top not in WRITABLE or top == "uuid":
                raise Invalid(f"'/{top}' can not be updated on an inspection rule")
            if top == "sensitive" and rule.sensitive and op.get("value") is not True:
                raise Invalid("Inspection rules cannot have the sensitive flag unset.")
        doc = {k: copy.deepcopy(getattr(rule, k)) for k in WRITABLE}
        try:
            new = jsonpatch.apply_patch(doc, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise Invalid(f"patch does not apply: {exc}") from None
        values = _checked(new)
        changed = {k: v for k, v in values.items() if k != "uuid" and getattr(rule, k) != v}
        if changed:
            rule = db_inspection.update_rule(db, uuid, changed)
        return rule_view(rule, views.base_url(request))

    @app.delete("/v1/inspection_rules/{uuid}", status_code=204, tags=["inspection"],
                summary="Delete an inspection rule")
    def delete_rule(request: Request, uuid: str) -> Response:
        _rules_allowed(request, "baremetal:inspection_rule:delete", write=True)
        db_inspection.delete_rule(db, uuid)
        return Response(status_code=204)
