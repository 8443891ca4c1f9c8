"""Node BIOS endpoints of the Bare Metal API v1: the settings the conductor last read.

``GET /v1/nodes/{node}/bios`` (API 1.40): ``{"bios": [{"name", "value", "created_at",
"updated_at", "links"}]}``; from API 1.74 ``?detail=True`` adds the attribute registry's
fields (``attribute_type``, ``allowable_values``, ``lower_bound``, ``max_length``,
``min_length``, ``read_only``, ``reset_required``, ``unique``, ``upper_bound``) and
``?fields=`` picks fields (``created_at``, ``updated_at`` and ``links`` always come).
``GET /v1/nodes/{node}/bios/{name}``: ``{"<name>": {...}}``, with the registry's fields
from 1.74. An older micro-version gets 404, ``detail``/``fields`` before 1.74 a 400, an
unknown node or setting a 404 (``Node <uuid> doesn't have a BIOS setting '<name>'``).
The settings are read from the BMC by the conductor (:mod:`metalplane.conductor.bios`),
never on a GET. Changing them is a manual cleaning's ``bios`` steps.

Source: Bare Metal API reference, "Node Bios (nodes)"; ``ironic/api/controllers/v1/bios.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from metalplane.api import policy, views
from metalplane.api.schemas_common import to_bool
from metalplane.api.versions import API_VERSION_STATE, MAX_VERSION
from metalplane.common.exceptions import Invalid, NotFound
from metalplane.conductor.manager import Conductor
from metalplane.db import api as db_api
from metalplane.db import bios as db_bios
from metalplane.db.models import BiosSetting

__all__ = ["BIOS_VERSION", "REGISTRY_VERSION", "register", "setting_view"]

BIOS_VERSION, REGISTRY_VERSION = (1, 40), (1, 74)
DEFAULT_FIELDS = ("name", "value")
DETAIL_FIELDS = ("name", "value", *db_bios.REGISTRY_FIELDS)
# ?fields= at 1.74 (Ironic's index_request_query_v74)
QUERY_FIELDS = ("allowable_values", "attribute_type", "created_at", "lower_bound", "links",
                "max_length", "min_length", "name", "node_uuid", "read_only",
                "reset_required", "unique", "updated_at", "value")


def _version(request: Request) -> tuple[int, int]:
    version: tuple[int, int] = getattr(request.state, API_VERSION_STATE, MAX_VERSION)
    return version


def setting_view(row: BiosSetting, base: str, node_ident: str, fields: tuple[str, ...],
                 node_uuid: str = "") -> dict[str, Any]:
    """One setting as Ironic's ``object_to_dict`` shows it: ``created_at``, ``updated_at``,
    ``fields`` (a null ``allowable_values`` as ``[]``) and ``links`` under
    ``nodes/<node_ident>/bios/<name>``."""
    doc: dict[str, Any] = {
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }
    for field in fields:
        if field in ("created_at", "updated_at", "links"):
            continue
        if field == "node_uuid":
            doc[field] = node_uuid
            continue
        value = getattr(row, field)
        doc[field] = [] if field == "allowable_values" and value is None else value
    path = f"nodes/{node_ident}/bios/{row.name}"
    doc["links"] = [{"href": f"{base}/v1/{path}", "rel": "self"},
                    {"href": f"{base}/{path}", "rel": "bookmark"}]
    return doc


def _fields(request: Request, detail: str | None, fields: str | None) -> tuple[str, ...]:
    """The fields a list shows (Ironic's ``get_request_return_fields``). Raises
    :class:`Invalid` for ``detail``/``fields`` before 1.74, both at once, an unknown field
    or a ``detail`` that is not a boolean."""
    registry = _version(request) >= REGISTRY_VERSION
    if detail is not None and not registry:
        raise Invalid(f"Invalid query parameter ?detail={detail} received.")
    if fields is not None and not registry:
        raise Invalid(f"Invalid query parameter ?fields={fields} received.")
    try:
        detailed = to_bool(detail) if detail is not None else False
    except ValueError as exc:
        raise Invalid(f"Invalid query parameter detail: {exc}") from None
    if fields is not None:
        if detailed:
            raise Invalid("Can not specify ?detail=True and fields in the same request.")
        wanted = tuple(f.strip() for f in fields.split(",") if f.strip())
        bad = [f for f in wanted if f not in QUERY_FIELDS]
        if bad:
            raise Invalid(f"Invalid query parameter fields: '{', '.join(bad)}' is not one "
                          f"of {', '.join(QUERY_FIELDS)}")
        return wanted
    return DETAIL_FIELDS if detailed else DEFAULT_FIELDS


def register(app: FastAPI, conductor: Conductor) -> None:
    """Add the node BIOS routes to ``app``."""
    db = conductor.db

    def _node(request: Request, ident: str) -> Any:
        if _version(request) < BIOS_VERSION:
            raise NotFound("The API version does not allow BIOS settings")
        node = db_api.get_node(db, ident)
        policy.require_node(policy.principal(request), "baremetal:node:bios:get", node,
                            ident)
        return node

    @app.get("/v1/nodes/{ident}/bios", tags=["nodes"],
             summary="The node's BIOS settings, as last read from its BMC")
    def list_bios(request: Request, ident: str, detail: str | None = None,
                  fields: str | None = None) -> dict[str, Any]:
        node = _node(request, ident)
        wanted = _fields(request, detail, fields)
        base = views.base_url(request)
        return {"bios": [setting_view(row, base, ident, wanted, node.uuid)
                         for row in db_bios.list_settings(db, node.id)]}

    @app.get("/v1/nodes/{ident}/bios/{name}", tags=["nodes"],
             summary="One BIOS setting of the node")
    def show_bios(request: Request, ident: str, name: str) -> dict[str, Any]:
        node = _node(request, ident)
        row = db_bios.get_setting(db, node.id, node.uuid, name)
        wanted = DETAIL_FIELDS if _version(request) >= REGISTRY_VERSION else DEFAULT_FIELDS
        return {name: setting_view(row, views.base_url(request), node.uuid, wanted)}
