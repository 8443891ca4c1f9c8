"""Cluster API's groups on the Kubernetes-style API: ``cluster.x-k8s.io/v1beta1``
MachineSets (``ms``, with the ``scale`` subresource) and Machines (``ma``), and CAPM3's
``infrastructure.cluster.x-k8s.io/v1beta1`` Metal3MachineTemplates (``m3mt``).

Thin HTTP layer over :class:`metalplane.conductor.machines.MachineController`, with the
conventions, helpers and errors of :mod:`metalplane.api.k8s_api` (registered from
:func:`~metalplane.api.k8s_api.create_k8s_app`). Shapes: Cluster API
``api/v1beta1/machineset_types.go`` and ``machine_types.go`` (their printer columns for
the ``Table``), CAPM3 ``metal3machinetemplate_types.go``, and ``autoscaling/v1`` ``Scale``
(``k8s.io/api/autoscaling/v1/types.go``) for ``/machinesets/{name}/scale``: ``GET``,
``PUT`` (``kubectl scale --current-replicas`` or ``--resource-version``) and ``PATCH``
(plain ``kubectl scale`` sends a merge patch ``{"spec":{"replicas":N}}``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from metalplane.api.k8s_api import (
    Handlers,
    KubeError,
    _age,
    _blocking,
    _meta_values,
    _metadata,
    _table,
    _ts,
    _wants_table,
    sent,
    serve_group,
)
from metalplane.api.k8s_watch import is_watch
from metalplane.conductor.machines import (
    CAPI_GROUP,
    INFRA_GROUP,
    M3MT,
    MACHINE,
    MACHINE_SET,
    VERSION,
    MachineController,
)

__all__ = ["register"]

_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}
serve_group(CAPI_GROUP, VERSION, {MACHINE_SET: ("machinesets", _TOP),
                                  MACHINE: ("machines", _TOP)})
serve_group(INFRA_GROUP, VERSION, {M3MT: ("metal3machinetemplates", _TOP)})
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

# Cluster API's printer columns (DESIRED only with -o wide: priority 10)
_MS_COLUMNS = [("Name", "string", "name", "Name", 0),
               ("Cluster", "string", "", "Cluster", 0),
               ("Desired", "integer", "", "Total number of machines desired by this "
                "machineset", 10),
               ("Replicas", "integer", "", "Total number of non-terminated machines "
                "targeted by this machineset", 0),
               ("Ready", "integer", "", "Total number of ready machines targeted by this "
                "machineset.", 0),
               ("Available", "integer", "", "Total number of available machines (ready for "
                "at least minReadySeconds)", 0),
               ("Age", "date", "", "Time duration since creation of MachineSet", 0),
               ("Version", "string", "", "Kubernetes version associated with this "
                "MachineSet", 0)]
_MA_COLUMNS = [("Name", "string", "name", "Name", 0),
               ("Cluster", "string", "", "Cluster", 0),
               ("NodeName", "string", "", "Node name associated with this machine", 0),
               ("ProviderID", "string", "", "Provider ID", 0),
               ("Phase", "string", "", "Machine status such as Terminating/Pending/Running/"
                "Failed etc", 0),
               ("Age", "date", "", "Time duration since creation of Machine", 0),
               ("Version", "string", "", "Kubernetes version associated with this Machine",
                0)]
_M3MT_COLUMNS = [("Name", "string", "name", "Name", 0), ("Age", "date", "", "Age", 0)]


def _doc(obj: Any, kind: str, group: str, status: bool = True) -> dict[str, Any]:
    """A stored object as its manifest: metadata (with ownerReferences and
    deletionTimestamp), spec and, for the kinds that have one, the status the controller
    wrote."""
    meta = _metadata(obj)
    body = obj.body or {}
    if body.get("ownerReferences"):
        meta["ownerReferences"] = body["ownerReferences"]
    if obj.deleted_at is not None:
        meta.setdefault("deletionTimestamp", _ts(obj.deleted_at))
        meta.setdefault("deletionGracePeriodSeconds", 0)
    doc = {"apiVersion": f"{group}/{VERSION}", "kind": kind, "metadata": meta,
           "spec": body.get("spec") or {}}
    if status:
        doc["status"] = dict(obj.status or {})
    return doc


def _set_cells(obj: Any) -> list[Any]:
    spec, st = (obj.body or {}).get("spec") or {}, obj.status or {}
    return [obj.name, spec.get("clusterName"), spec.get("replicas"), st.get("replicas", 0),
            st.get("readyReplicas", 0), st.get("availableReplicas", 0), _age(obj),
            ((spec.get("template") or {}).get("spec") or {}).get("version")]


def _machine_cells(obj: Any) -> list[Any]:
    spec, st = (obj.body or {}).get("spec") or {}, obj.status or {}
    return [obj.name, spec.get("clusterName"), (st.get("nodeRef") or {}).get("name"),
            spec.get("providerID"), st.get("phase"), _age(obj), spec.get("version")]


@dataclass(frozen=True)
class _Kind:
    kind: str
    resource: str
    group: str
    columns: list[tuple[str, str, str, str, int]]
    cells: Callable[[Any], list[Any]]
    create: Callable[..., Any]
    replace: Callable[..., Any]
    status: bool = True


def _columns_table(columns: list[tuple[str, str, str, str, int]], rows: list[Any],
                   cells: Callable[[Any], list[Any]], rv: int) -> dict[str, Any]:
    """``k8s_api``'s Table, with the columns' priorities (1+ shows only with -o wide)."""
    table = _table([c[:4] for c in columns], [(o, cells(o)) for o in rows], rv)
    for definition, column in zip(table["columnDefinitions"], columns, strict=True):
        definition["priority"] = column[4]
    return table


def register(app: FastAPI, machines: MachineController, h: Handlers) -> None:
    """Add discovery, the MachineSet, Machine and Metal3MachineTemplate routes and
    MachineSets' ``scale`` subresource to ``app``."""
    store = machines.store
    kinds = [
        _Kind(MACHINE_SET, "machinesets", CAPI_GROUP, _MS_COLUMNS, _set_cells,
              machines.create_machine_set, machines.replace_machine_set),
        _Kind(MACHINE, "machines", CAPI_GROUP, _MA_COLUMNS, _machine_cells,
              machines.create_machine, machines.replace_machine),
        _Kind(M3MT, "metal3machinetemplates", INFRA_GROUP, _M3MT_COLUMNS,
              lambda o: [o.name, _age(o)], machines.create_template,
              machines.replace_template, status=False),
    ]

    def resource(name: str, kind: str, short: list[str]) -> dict[str, Any]:
        return {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind,
                "verbs": _VERBS, "shortNames": short, "categories": ["cluster-api"]}

    @app.get(f"/apis/{CAPI_GROUP}/{VERSION}")
    async def capi_resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{CAPI_GROUP}/{VERSION}", "resources": [
                    resource("machinesets", MACHINE_SET, ["ms"]),
                    {"name": "machinesets/scale", "singularName": "", "namespaced": True,
                     "group": "autoscaling", "version": "v1", "kind": "Scale",
                     "verbs": ["get", "patch", "update"]},
                    resource("machines", MACHINE, ["ma"])]}

    @app.get(f"/apis/{INFRA_GROUP}/{VERSION}")
    async def infra_resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{INFRA_GROUP}/{VERSION}", "resources": [
                    resource("metal3machinetemplates", M3MT, ["m3mt"])]}

    for k in kinds:
        _routes(app, k, machines, h)

    # ------------------------------------------------------------ scale
    base = f"/apis/{CAPI_GROUP}/{VERSION}/namespaces/{{namespace}}/machinesets/{{name}}/scale"

    def scale_doc(obj: Any) -> dict[str, Any]:
        """``autoscaling/v1`` ``Scale``: spec.replicas, status.replicas and
        status.selector (the MachineSet's, as its CRD's scale paths say)."""
        spec, st = (obj.body or {}).get("spec") or {}, obj.status or {}
        meta = {k: v for k, v in _metadata(obj).items()
                if k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": st.get("replicas", 0),
                           "selector": st.get("selector", "")}}

    async def scale_to(namespace: str, name: str, doc: Any) -> dict[str, Any]:
        if not isinstance(doc, dict) or doc.get("kind") not in (None, "Scale") or \
                doc.get("apiVersion") not in (None, "autoscaling/v1"):
            raise KubeError(400, "the body of the request must be an autoscaling/v1 Scale")
        meta = doc.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        # autoscaling/v1 omits an empty replicas: a PUT of 0 carries none
        replicas = (doc.get("spec") or {}).get("replicas", 0)
        rv = h.rv(meta) if isinstance(meta, dict) else None
        try:
            obj = await _blocking(MACHINE_SET, name, machines.scale, namespace, name,
                                  replicas, rv)
        except KubeError as exc:
            if exc.code == 422:  # the Scale is what is invalid
                detail = f"Invalid value: {replicas}: must be greater than or equal to 0"
                raise KubeError(422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                f"{detail}", "Invalid", {
                                    "name": name, "group": "autoscaling", "kind": "Scale",
                                    "causes": [{"reason": "FieldValueInvalid",
                                                "message": detail,
                                                "field": "spec.replicas"}]}) from None
            raise
        return scale_doc(obj)

    @app.get(base)
    async def get_scale(namespace: str, name: str) -> Any:
        return scale_doc(await _blocking(MACHINE_SET, name, store.get, MACHINE_SET,
                                         namespace, name))

    @app.put(base)
    async def replace_scale(namespace: str, name: str, request: Request) -> Any:
        return await scale_to(namespace, name, await h.read(request))

    @app.patch(base)
    async def patch_scale(namespace: str, name: str, request: Request) -> Any:
        current = scale_doc(await _blocking(MACHINE_SET, name, store.get, MACHINE_SET,
                                            namespace, name))
        doc = await h.patched(request, MACHINE_SET, current)  # a merge or JSON patch
        meta, now = doc.get("metadata"), current["metadata"]["resourceVersion"]
        if isinstance(meta, dict) and meta.get("resourceVersion") == now:
            meta.pop("resourceVersion")  # no precondition of the patch's own
        return await scale_to(namespace, name, doc)


def _routes(app: FastAPI, k: _Kind, machines: MachineController, h: Handlers) -> None:
    """create, get, list (in a namespace and across), replace, patch and delete of one
    kind, with the conventions of the BareMetalHost routes."""
    store = machines.store
    prefix = f"/apis/{k.group}/{VERSION}"
    one = f"{prefix}/namespaces/{{namespace}}/{k.resource}/{{name}}"

    async def listed(request: Request, namespace: str | None) -> Any:
        if is_watch(request):
            return h.watch(request, k.kind, f"{k.group}/{VERSION}", namespace,
                           lambda o: _doc(o, k.kind, k.group, k.status), k.columns, k.cells)
        objs, rv = await _blocking(k.kind, "", store.snapshot, k.kind, namespace)
        objs = h.filtered(request, objs)
        if _wants_table(request):
            return sent(_columns_table(k.columns, objs, k.cells, rv))
        return sent(h.list_doc(k.kind, f"{k.group}/{VERSION}",
                               [_doc(o, k.kind, k.group, k.status) for o in objs], rv))

    async def list_all(request: Request) -> Any:
        return await listed(request, None)

    async def list_in(namespace: str, request: Request) -> Any:
        return await listed(request, namespace)

    async def create(namespace: str, request: Request) -> Any:
        name, meta, doc = await h.body(request, k.kind, k.group, namespace)
        obj = await _blocking(k.kind, name, k.create, namespace, name, _meta_values(meta),
                              doc)
        return JSONResponse(_doc(obj, k.kind, k.group, k.status), status_code=201)

    async def get(namespace: str, name: str, request: Request) -> Any:
        obj = await _blocking(k.kind, name, store.get, k.kind, namespace, name)
        if _wants_table(request):
            return _columns_table(k.columns, [obj], k.cells, obj.resource_version)
        return _doc(obj, k.kind, k.group, k.status)

    async def replaced(namespace: str, name: str, doc: dict[str, Any]) -> Any:
        meta = doc.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        obj = await _blocking(k.kind, name, k.replace, namespace, name, h.rv(meta),
                              _meta_values(meta), doc)
        return _doc(obj, k.kind, k.group, k.status)

    async def replace(namespace: str, name: str, request: Request) -> Any:
        _, _, doc = await h.body(request, k.kind, k.group, namespace)
        return await replaced(namespace, name, doc)

    def written(obj: Any) -> tuple[Any, ...]:
        return (obj.body, obj.labels, obj.annotations, obj.finalizers, obj.deleted_at)

    async def patch(namespace: str, name: str, request: Request) -> Any:
        obj = await _blocking(k.kind, name, store.get, k.kind, namespace, name)
        doc = await h.patched(request, k.kind, _doc(obj, k.kind, k.group, k.status))
        unknown = sorted(set(doc) - _TOP)
        if unknown:
            raise KubeError(422, f'{k.kind} "{name}" is invalid: {unknown[0]}: unknown field '
                            f'"{unknown[0]}"', "Invalid")
        if h.rv(doc.get("metadata") or {}) != obj.resource_version:
            return await replaced(namespace, name, doc)  # the patch's own precondition
        for _ in range(9):  # as the apiserver, a patch outlives the controller's status writes
            try:
                return await replaced(namespace, name, doc)
            except KubeError as exc:
                if exc.reason != "Conflict":
                    raise
                now = await _blocking(k.kind, name, store.get, k.kind, namespace, name)
                if written(now) != written(obj):  # a user's write: the patch is stale
                    raise
                doc["metadata"]["resourceVersion"] = str(now.resource_version)
                obj = now
        raise KubeError(409, f'{k.kind} "{name}" kept changing; try again', "Conflict")

    async def delete(namespace: str, name: str) -> Any:
        obj = await _blocking(k.kind, name, machines.delete, k.kind, namespace, name)
        return _doc(obj, k.kind, k.group, k.status)

    app.get(f"{prefix}/{k.resource}")(list_all)
    app.get(f"{prefix}/namespaces/{{namespace}}/{k.resource}")(list_in)
    app.post(f"{prefix}/namespaces/{{namespace}}/{k.resource}", status_code=201)(create)
    app.get(one)(get)
    app.put(one)(replace)
    app.patch(one)(patch)
    app.delete(one)(delete)
