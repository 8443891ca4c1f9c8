"""The Kubernetes-style API (its own listener, ``k8s_port``): discovery, Namespaces, core v1
Secrets and Metal3's ``metal3.io/v1alpha1`` BareMetalHosts, for an unmodified kubectl.

Thin HTTP layer over :class:`metalplane.conductor.hosts.KubeStore`: it speaks Kubernetes'
JSON shapes and status codes and holds no rules of its own. Shapes follow
k8s.io/apimachinery ``pkg/apis/meta/v1/types.go`` (``APIVersions``, ``APIGroupList``,
``APIResourceList``, ``ObjectMeta``, ``ListMeta``, ``Status``, ``StatusDetails``,
``StatusCause``), ``pkg/apis/meta/v1/types.go`` ``Table`` (``meta.k8s.io/v1``), the
Kubernetes API conventions (``docs/devel/sig-architecture/api-conventions.md``: errors,
concurrency control, merge patch) and Metal3's ``baremetalhost_types.go`` (its
printer columns). ``metalkube.org/v1alpha1`` (the group of Metal3's first demo) serves
the same hosts as ``metal3.io/v1alpha1``.

Not served yet (answered with a ``Status``): watch, strategic merge patch (415, as
kube-apiserver answers for custom resources), ``/openapi/v2`` (404: use
``kubectl --validate=false``), MachineSets and Machines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import re
from collections.abc import Callable
from typing import Any

import jsonpatch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from metalplane import __version__
from metalplane.api import policy
from metalplane.api.app import _BLOCKING
from metalplane.api.auth import TooManyAttempts, UsersFile
from metalplane.common.exceptions import (
    Conflict,
    Forbidden,
    Invalid,
    MetalplaneError,
    NotAuthorized,
    NotFound,
)
from metalplane.conductor.hosts import BMH, NAMESPACE, SECRET, FieldInvalid, KubeStore
from metalplane.db.kube import AlreadyExists, StaleVersion

__all__ = ["GROUPS", "KubeError", "create_k8s_app", "human_duration", "match_labels"]

GROUPS = ("metal3.io", "metalkube.org")  # the second: an alias serving the same hosts
VERSION = "v1alpha1"
_VERBS = ["create", "delete", "get", "list", "patch", "update"]
_OBJECT_META = {"name", "namespace", "labels", "annotations", "finalizers",
                "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink",
                "managedFields", "ownerReferences", "generateName", "deletionTimestamp",
                "deletionGracePeriodSeconds"}
_TOP = {BMH: {"apiVersion", "kind", "metadata", "spec", "status"},
        # no "immutable" yet: refused as unknown rather than silently not honoured
        SECRET: {"apiVersion", "kind", "metadata", "data", "stringData", "type"},
        NAMESPACE: {"apiVersion", "kind", "metadata", "spec", "status"}}
# the resource name, group and apiVersion of each kind (for Status details and documents)
_RESOURCE = {BMH: ("baremetalhosts", "metal3.io"), SECRET: ("secrets", ""),
             NAMESPACE: ("namespaces", "")}
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict",
            413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class KubeError(Exception):
    """An answer as a Kubernetes ``Status`` (``code``, ``reason``, ``message``,
    ``details``)."""

    def __init__(self, code: int, message: str, reason: str = "",
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or _REASONS.get(code, "InternalError")
        self.details = details

    def response(self) -> JSONResponse:
        return JSONResponse(status(self.code, self.message, self.reason, self.details),
                            status_code=self.code)


def status(code: int, message: str, reason: str = "", details: dict[str, Any] | None = None,
           ok: bool = False) -> dict[str, Any]:
    """A ``Status`` (metav1): ``{"kind": "Status", "apiVersion": "v1", "metadata": {},
    "status": "Failure"|"Success", "message", "reason", "details", "code"}``."""
    doc: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success" if ok else "Failure", "message": message,
                           "reason": reason or ("" if ok else _REASONS.get(code, "")),
                           "code": code}
    if details is not None:
        doc["details"] = details
    return doc


def _kube_error(exc: MetalplaneError, kind: str, name: str) -> KubeError:
    """``exc`` as Kubernetes would answer it for object ``name`` of ``kind``."""
    resource, group = _RESOURCE[kind]
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    qualified = f"{resource}.{group}" if group else resource
    if isinstance(exc, FieldInvalid):  # Invalid names the kind, the others the resource
        details["kind"] = kind
        details["causes"] = [{"reason": exc.cause, "message": exc.detail,
                              "field": exc.field}]
        label = f"{kind}.{group}" if group else kind
        return KubeError(422, f'{label} "{name}" is invalid: {exc.message}', "Invalid",
                         details)
    if isinstance(exc, AlreadyExists):
        return KubeError(409, f'{qualified} "{name}" already exists', "AlreadyExists",
                         details)
    if isinstance(exc, StaleVersion):
        return KubeError(409, f'Operation cannot be fulfilled on {qualified} "{name}": the '
                         "object has been modified; please apply your changes to the latest "
                         "version and try again", "Conflict", details)
    if isinstance(exc, NotFound):
        message = exc.message if exc.message.startswith("namespaces ") else \
            f'{qualified} "{name}" not found'
        return KubeError(404, message, "NotFound", details)
    if isinstance(exc, Conflict):
        return KubeError(409, exc.message, "Conflict", details)
    if isinstance(exc, Invalid):
        details["kind"] = kind
        return KubeError(422, f'{kind} "{name}" is invalid: {exc.message}', "Invalid",
                         details)
    return KubeError(exc.code, exc.message, details=details)


async def _blocking(kind: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` off the event loop; its metalplane errors become :class:`KubeError`."""
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _BLOCKING, functools.partial(fn, *args))
    except MetalplaneError as exc:
        raise _kube_error(exc, kind, name) from None


# ---------------------------------------------------------------- selectors and times
_SET_TERM = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    return [t.strip() for t in [*terms, cur] if t.strip()]


def match_labels(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` match a Kubernetes label selector (``k=v``, ``k==v``, ``k!=v``,
    ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``, comma = and). Raises
    :class:`KubeError` (400) for one that does not parse."""
    for term in _split_terms(selector):
        if m := _SET_TERM.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            inside = key in labels and labels[key] in values
            if inside != (op == "in"):
                return False
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, _, value = (p.strip() for p in term.partition(op))
                if not key:
                    raise KubeError(400, f"unable to parse requirement: {term!r}")
                if (labels.get(key) == value) != (op != "!="):
                    return False
                break
        else:
            if term.startswith("!"):
                if term[1:].strip() in labels:
                    return False
            elif term not in labels:
                return False
    return True


def _field_filter(selector: str) -> list[tuple[str, bool, str]]:
    """``(field, equal, value)`` terms of a field selector; only ``metadata.name`` and
    ``metadata.namespace`` are supported, as for custom resources."""
    out = []
    for term in _split_terms(selector):
        op = "!=" if "!=" in term else ("==" if "==" in term else "=")
        field, _, value = (p.strip() for p in term.partition(op))
        if field not in ("metadata.name", "metadata.namespace"):
            raise KubeError(400, f'"{field}" is not a known field selector: only '
                            '"metadata.name", "metadata.namespace"')
        out.append((field, op != "!=", value))
    return out


def human_duration(seconds: float) -> str:
    """A duration as kubectl's AGE column prints it (apimachinery ``HumanDuration``:
    ``45s``, ``2m10s``, ``35m``, ``5h3m``, ``20h``, ``3d4h``, ``12d``)."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- documents
def _metadata(obj: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": obj.name}
    if obj.namespace:
        meta["namespace"] = obj.namespace
    meta.update(uid=obj.uid, resourceVersion=str(obj.resource_version),
                generation=obj.generation, creationTimestamp=_ts(obj.created_at))
    for key, value in (("labels", obj.labels), ("annotations", obj.annotations),
                       ("finalizers", obj.finalizers)):
        if value:
            meta[key] = value
    if getattr(obj, "deleted_at", None) is not None:
        meta["deletionTimestamp"] = _ts(obj.deleted_at)
        meta["deletionGracePeriodSeconds"] = 0
    return meta


def _meta_values(meta: dict[str, Any]) -> dict[str, Any]:
    """The writable metadata of a manifest, checked. Raises :class:`KubeError` (422)."""
    unknown = sorted(set(meta) - _OBJECT_META)
    if unknown:
        raise KubeError(422, f"metadata.{unknown[0]}: unknown field \"{unknown[0]}\"",
                        "Invalid", {"causes": [{"reason": "FieldValueNotSupported",
                                                "field": f"metadata.{unknown[0]}"}]})
    values: dict[str, Any] = {}
    for key, kind in (("labels", dict), ("annotations", dict), ("finalizers", list)):
        value: Any = meta.get(key) or kind()
        strings = value.values() if isinstance(value, dict) else value
        if not isinstance(value, kind) or not all(isinstance(v, str) for v in strings):
            raise KubeError(422, f"metadata.{key}: Invalid value: must be "
                            f"{'a map of strings' if kind is dict else 'a list of strings'}",
                            "Invalid", {"causes": [{"reason": "FieldValueInvalid",
                                                    "field": f"metadata.{key}"}]})
        values[key] = value
    return values


class _Docs:
    """Kubernetes documents of the store's objects, for one request's group."""

    def __init__(self, store: KubeStore) -> None:
        self.store = store

    def host(self, obj: Any, group: str, status_: dict[str, Any] | None = None
             ) -> dict[str, Any]:
        return {"apiVersion": f"{group}/{VERSION}", "kind": BMH, "metadata": _metadata(obj),
                "spec": (obj.body or {}).get("spec") or {},
                "status": status_ if status_ is not None else self.store.status(obj)}

    def secret(self, obj: Any) -> dict[str, Any]:
        doc = {"apiVersion": "v1", "kind": SECRET, "metadata": _metadata(obj),
               "type": (obj.body or {}).get("type") or "Opaque"}
        data = self.store.secret_data(obj)
        if data:
            doc["data"] = data
        return doc

    @staticmethod
    def namespace(obj: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": NAMESPACE, "metadata": _metadata(obj),
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _wants_table(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "as=Table" in accept


_BMH_COLUMNS = [  # Metal3's printer columns (and the seed demo's HARDWARE PROFILE)
    ("Name", "string", "name", "Name of the host"),
    ("Status", "string", "", "Operational status"),
    ("Provisioning Status", "string", "", "Provisioning status"),
    ("Consumer", "string", "", "Consumer using this host"),
    ("BMC", "string", "", "Address of management controller"),
    ("Hardware Profile", "string", "", "The type of hardware detected"),
    ("Online", "string", "", "Whether the host is online or not"),
    ("Error", "string", "", "Type of the most recent error"),
    ("Age", "date", "", "Time since the host was created"),
]
_SECRET_COLUMNS = [("Name", "string", "name", "Name"), ("Type", "string", "", "Type"),
                   ("Data", "string", "", "Number of keys"), ("Age", "date", "", "Age")]
_NS_COLUMNS = [("Name", "string", "name", "Name"), ("Status", "string", "", "Phase"),
               ("Age", "date", "", "Age")]


def _table(columns: list[tuple[str, str, str, str]], rows: list[tuple[Any, list[Any]]],
           rv: int) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` ``Table``, each row's object as ``PartialObjectMetadata``."""
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": [{"name": n, "type": t, "format": f, "description": d,
                                   "priority": 0} for n, t, f, d in columns],
            "rows": [{"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": _metadata(obj)}} for obj, cells in rows]}


def _age(obj: Any) -> str:
    return human_duration((dt.datetime.now(dt.UTC) - obj.created_at).total_seconds())


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch``."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


# ---------------------------------------------------------------- the app
def create_k8s_app(store: KubeStore, auth_strategy: str = "noauth",
                   users_file: UsersFile | None = None,
                   server_address: str = "") -> FastAPI:
    """The Kubernetes-style API over ``store``. ``auth_strategy`` ``http_basic`` checks
    ``Authorization: Basic`` against ``users_file`` (system-scope users; ``reader`` may
    only read), and ``Authorization: Bearer <token>`` where the token is the same
    base64 of ``user:password`` (kubectl since 1.19 sends no basic credentials from a
    kubeconfig; ``metalplane kubeconfig`` writes such a token). ``server_address``
    (host:port) is what ``/api`` advertises."""
    app = FastAPI(title="metalplane Kubernetes-style API", version=__version__,
                  openapi_url=None, docs_url=None, redoc_url=None)
    docs = _Docs(store)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Response:
        if auth_strategy == "http_basic" and request.url.path not in ("/version",
                                                                      "/healthz"):
            assert users_file is not None
            address = request.client.host if request.client else "local"
            header = request.headers.get("Authorization") or ""
            if header[:7].lower() == "bearer ":  # kubectl's token: base64 of user:password
                header = "Basic " + header[7:].strip()
            try:
                who = await users_file.authenticate(header, address)
            except TooManyAttempts as exc:
                resp = KubeError(429, exc.message).response()
                resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return resp
            except NotAuthorized as exc:
                resp = KubeError(401, exc.message).response()
                resp.headers["WWW-Authenticate"] = 'Basic realm="metalplane"'
                return resp
            if not who.system:
                return KubeError(403, f'User "{who.user}" is scoped to project '
                                 f"{who.project}: the Kubernetes-style API serves "
                                 "system-scope users only").response()
            if who.role == "reader" and request.method not in ("GET", "HEAD"):
                return KubeError(403, f'User "{who.user}" (reader) cannot '
                                 f"{request.method} {request.url.path}").response()
            request.state.principal = who
        else:
            request.state.principal = policy.NOAUTH
        answer: Response = await call_next(request)
        return answer

    limit = store.c.settings.max_request_body_size

    async def _read(request: Request) -> Any:
        """The request's JSON body (at most ``max_request_body_size`` bytes, else 413).
        Raises :class:`KubeError` 415 for another media type (protobuf, CBOR), 400 for
        a body that does not parse."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype and not ctype.endswith("json"):
            raise KubeError(415, f"the body of the request was in an unknown format - "
                            f"accepted media types include: application/json, "
                            f"application/merge-patch+json, application/json-patch+json "
                            f"(not {ctype})", "UnsupportedMediaType")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise KubeError(413, f"Request entity too large: limit is {limit} bytes "
                                "(max_request_body_size)", "RequestEntityTooLarge")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KubeError(400, f"the body of the request was in an unknown format: "
                            f"{exc}") from None

    @app.exception_handler(KubeError)
    async def on_kube_error(request: Request, exc: KubeError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Forbidden)
    async def on_forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return KubeError(403, exc.message).response()

    @app.exception_handler(404)
    async def on_404(request: Request, exc: Exception) -> JSONResponse:
        return KubeError(404, "the server could not find the requested resource",
                         "NotFound").response()

    @app.exception_handler(405)
    async def on_405(request: Request, exc: Exception) -> JSONResponse:
        return KubeError(405, f"the server does not allow this method on the requested "
                         f"resource ({request.method} {request.url.path})").response()

    # ------------------------------------------------------------ discovery
    @app.get("/version")
    async def version() -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        return {"major": "1", "minor": "32", "gitVersion": f"v1.32.0+metalplane.{__version__}",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": _ts(now),
                "goVersion": "n/a (python)", "compiler": "cpython",
                "platform": "linux/amd64"}

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/api")
    async def api_versions() -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": server_address}]}

    def _resource(name: str, kind: str, namespaced: bool, short: list[str],
                  categories: list[str] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": name, "singularName": kind.lower(),
                               "namespaced": namespaced, "kind": kind, "verbs": _VERBS,
                               "shortNames": short}
        if categories:
            doc["categories"] = categories
        return doc

    @app.get("/api/v1")
    async def core_v1() -> dict[str, Any]:
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            _resource("namespaces", NAMESPACE, False, ["ns"]),
            _resource("secrets", SECRET, True, [])]}

    @app.get("/apis")
    async def api_groups() -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{VERSION}", "version": VERSION}],
             "preferredVersion": {"groupVersion": f"{g}/{VERSION}", "version": VERSION}}
            for g in GROUPS]}

    def _group(group: str) -> str:
        if group not in GROUPS:
            raise KubeError(404, "the server could not find the requested resource",
                            "NotFound")
        return group

    @app.get("/apis/{group}")
    async def api_group(group: str) -> dict[str, Any]:
        _group(group)
        gv = {"groupVersion": f"{group}/{VERSION}", "version": VERSION}
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv],
                "preferredVersion": gv}

    @app.get(f"/apis/{{group}}/{VERSION}")
    async def group_resources(group: str) -> dict[str, Any]:
        _group(group)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{VERSION}", "resources": [
                    # the alias group has no short names: "bmh" means metal3.io's
                    _resource("baremetalhosts", BMH, True,
                              ["bmh", "bmhost"] if group == GROUPS[0] else [],
                              ["metal3"] if group == GROUPS[0] else None)]}

    # ------------------------------------------------------------ shared handlers
    async def _body(request: Request, kind: str, group: str,
                    namespace: str | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(name, metadata values, manifest)`` of a POST/PUT body. Raises
        :class:`KubeError` 400 (not JSON; wrong kind or apiVersion; namespace mismatch),
        422 (unknown top-level field or metadata field)."""
        doc = await _read(request)
        if not isinstance(doc, dict):
            raise KubeError(400, "the body of the request must be a JSON object")
        want = f"{group}/{VERSION}" if group else "v1"
        if doc.get("kind") not in (None, kind) or doc.get("apiVersion") not in (None, want):
            raise KubeError(400, f"the API version in the data ({doc.get('apiVersion')}) "
                            f"and kind ({doc.get('kind')}) do not match {want} {kind}")
        unknown = sorted(set(doc) - _TOP[kind])
        if unknown:
            raise KubeError(422, f'{kind} is invalid: {unknown[0]}: unknown field '
                            f'"{unknown[0]}"', "Invalid",
                            {"kind": _RESOURCE[kind][0], "causes": [
                                {"reason": "FieldValueNotSupported",
                                 "message": f'unknown field "{unknown[0]}"',
                                 "field": unknown[0]}]})
        meta = doc.get("metadata") or {}
        if not isinstance(meta, dict):
            raise KubeError(422, "metadata: must be an object", "Invalid")
        if namespace is not None and meta.get("namespace") not in (None, "", namespace):
            raise KubeError(400, "the namespace of the provided object does not match the "
                            "namespace sent on the request")
        return str(meta.get("name") or ""), meta, doc

    def _rv(meta: dict[str, Any]) -> int | None:
        raw = meta.get("resourceVersion")
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise KubeError(400, f"metadata.resourceVersion: Invalid value: {raw!r}: must "
                            "be the resourceVersion of a GET") from None

    def _filtered(request: Request, objs: list[Any]) -> list[Any]:
        labels = request.query_params.get("labelSelector") or ""
        fields = _field_filter(request.query_params.get("fieldSelector") or "")
        if request.query_params.get("watch") in ("true", "1"):
            raise KubeError(405, "watch is not served yet by metalplane's Kubernetes-style "
                            "API (list and poll instead)", "MethodNotAllowed")
        out = []
        for obj in objs:
            if labels and not match_labels(labels, obj.labels or {}):
                continue
            values = {"metadata.name": obj.name, "metadata.namespace": obj.namespace}
            if all((values[f] == v) == eq for f, eq, v in fields):
                out.append(obj)
        return out

    def _list_doc(kind: str, api_version: str, items: list[dict[str, Any]],
                  objs: list[Any]) -> dict[str, Any]:
        rv = max((o.resource_version for o in objs), default=0)
        return {"apiVersion": api_version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    async def _patched(request: Request, current: dict[str, Any]) -> dict[str, Any]:
        """``current`` with the request's patch applied (merge or JSON patch). Raises
        :class:`KubeError` 415 for strategic merge patch and apply, 400/422 for a patch
        that does not parse or apply."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        patch = await _read(request)
        if ctype == "application/merge-patch+json":
            return dict(_merge(current, patch))
        if ctype == "application/json-patch+json":
            try:
                return dict(jsonpatch.apply_patch(current, patch))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                    TypeError) as exc:
                raise KubeError(422, f"the patch does not apply: {exc}", "Invalid") from None
        raise KubeError(415, f'the body of the request was in an unknown format - accepted '
                        f'media types include: application/json-patch+json, '
                        f'application/merge-patch+json (not {ctype or "none"}: strategic '
                        f'merge patch and server-side apply are not served yet; use '
                        f'kubectl patch --type merge)', "UnsupportedMediaType")

    # ------------------------------------------------------------ namespaces
    @app.get("/api/v1/namespaces")
    async def list_namespaces(request: Request) -> Any:
        objs = _filtered(request, await _blocking(NAMESPACE, "", store.list_objects, NAMESPACE))
        rv = max((o.resource_version for o in objs), default=0)
        if _wants_table(request):
            return _table(_NS_COLUMNS, [(o, [o.name, "Active", _age(o)]) for o in objs], rv)
        return _list_doc(NAMESPACE, "v1", [docs.namespace(o) for o in objs], objs)

    @app.get("/api/v1/namespaces/{name}")
    async def get_namespace(name: str, request: Request) -> Any:
        obj = await _blocking(NAMESPACE, name, store.get, NAMESPACE, "", name)
        if _wants_table(request):
            return _table(_NS_COLUMNS, [(obj, [obj.name, "Active", _age(obj)])],
                          obj.resource_version)
        return docs.namespace(obj)

    @app.post("/api/v1/namespaces", status_code=201)
    async def create_namespace(request: Request) -> Any:
        name, meta, _ = await _body(request, NAMESPACE, "", None)
        obj = await _blocking(NAMESPACE, name, store.create_namespace, name,
                              _meta_values(meta))
        return JSONResponse(docs.namespace(obj), status_code=201)

    @app.delete("/api/v1/namespaces/{name}")
    async def delete_namespace(name: str) -> Any:
        obj = await _blocking(NAMESPACE, name, store.delete_namespace, name)
        return docs.namespace(obj)

    # ------------------------------------------------------------ secrets
    def _secret_cells(obj: Any) -> list[Any]:
        return [obj.name, (obj.body or {}).get("type") or "Opaque",
                len(store.secret_data(obj)), _age(obj)]

    async def _list_secrets(request: Request, namespace: str | None) -> Any:
        objs = _filtered(request, await _blocking(SECRET, "", store.list_objects, SECRET,
                                                  namespace))
        if _wants_table(request):
            return _table(_SECRET_COLUMNS, [(o, _secret_cells(o)) for o in objs],
                          max((o.resource_version for o in objs), default=0))
        return _list_doc(SECRET, "v1", [docs.secret(o) for o in objs], objs)

    @app.get("/api/v1/secrets")
    async def list_all_secrets(request: Request) -> Any:
        return await _list_secrets(request, None)

    @app.get("/api/v1/namespaces/{namespace}/secrets")
    async def list_secrets(namespace: str, request: Request) -> Any:
        return await _list_secrets(request, namespace)

    @app.post("/api/v1/namespaces/{namespace}/secrets", status_code=201)
    async def create_secret(namespace: str, request: Request) -> Any:
        name, meta, doc = await _body(request, SECRET, "", namespace)
        obj = await _blocking(SECRET, name, store.create_secret, namespace, name,
                              _meta_values(meta), doc)
        return JSONResponse(docs.secret(obj), status_code=201)

    @app.get("/api/v1/namespaces/{namespace}/secrets/{name}")
    async def get_secret(namespace: str, name: str, request: Request) -> Any:
        obj = await _blocking(SECRET, name, store.get, SECRET, namespace, name)
        if _wants_table(request):
            return _table(_SECRET_COLUMNS, [(obj, _secret_cells(obj))], obj.resource_version)
        return docs.secret(obj)

    async def _replace_secret(namespace: str, name: str, doc: dict[str, Any],
                              rv: int | None) -> Any:
        meta = doc.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        obj = await _blocking(SECRET, name, store.replace_secret, namespace, name, rv,
                              _meta_values(meta), doc)
        return docs.secret(obj)

    @app.put("/api/v1/namespaces/{namespace}/secrets/{name}")
    async def replace_secret(namespace: str, name: str, request: Request) -> Any:
        _, meta, doc = await _body(request, SECRET, "", namespace)
        return await _replace_secret(namespace, name, doc, _rv(meta))

    @app.patch("/api/v1/namespaces/{namespace}/secrets/{name}")
    async def patch_secret(namespace: str, name: str, request: Request) -> Any:
        current = docs.secret(await _blocking(SECRET, name, store.get, SECRET, namespace,
                                              name))
        doc = await _patched(request, current)  # a patch may carry a resourceVersion
        return await _replace_secret(namespace, name, doc, _rv(doc.get("metadata") or {}))

    @app.delete("/api/v1/namespaces/{namespace}/secrets/{name}")
    async def delete_secret(namespace: str, name: str) -> Any:
        obj = await _blocking(SECRET, name, store.delete_secret, namespace, name)
        return {**docs.secret(obj), "data": {}}

    # ------------------------------------------------------------ baremetalhosts
    def _host_cells(obj: Any, st: dict[str, Any]) -> list[Any]:
        spec = (obj.body or {}).get("spec") or {}
        return [obj.name, st.get("operationalStatus", ""),
                (st.get("provisioning") or {}).get("state", ""),
                (spec.get("consumerRef") or {}).get("name", ""),
                (spec.get("bmc") or {}).get("address", ""), st.get("hardwareProfile", ""),
                "true" if spec.get("online") else "false", st.get("errorType", ""),
                _age(obj)]

    async def _list_hosts(request: Request, group: str, namespace: str | None) -> Any:
        _group(group)
        objs = _filtered(request, await _blocking(BMH, "", store.list_objects, BMH, namespace))
        statuses = await _blocking(BMH, "", store.statuses, objs)
        if _wants_table(request):
            return _table(_BMH_COLUMNS, [(o, _host_cells(o, s)) for o, s in
                                         zip(objs, statuses, strict=True)],
                          max((o.resource_version for o in objs), default=0))
        return _list_doc(BMH, f"{group}/{VERSION}",
                         [docs.host(o, group, s) for o, s in zip(objs, statuses, strict=True)],
                         objs)

    @app.get(f"/apis/{{group}}/{VERSION}/baremetalhosts")
    async def list_all_hosts(group: str, request: Request) -> Any:
        return await _list_hosts(request, group, None)

    @app.get(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts")
    async def list_hosts(group: str, namespace: str, request: Request) -> Any:
        return await _list_hosts(request, group, namespace)

    @app.post(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts",
              status_code=201)
    async def create_host(group: str, namespace: str, request: Request) -> Any:
        name, meta, doc = await _body(request, BMH, _group(group), namespace)
        obj = await _blocking(BMH, name, store.create_host, namespace, name,
                              _meta_values(meta), doc.get("spec") or {})
        return JSONResponse(docs.host(obj, group), status_code=201)

    @app.get(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/{{name}}")
    async def get_host(group: str, namespace: str, name: str, request: Request) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.get, BMH, namespace, name)
        st = await _blocking(BMH, name, store.status, obj)
        if _wants_table(request):
            return _table(_BMH_COLUMNS, [(obj, _host_cells(obj, st))], obj.resource_version)
        return docs.host(obj, group, st)

    async def _replace_host(group: str, namespace: str, name: str, doc: dict[str, Any],
                            rv: int | None) -> Any:
        meta = doc.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        obj = await _blocking(BMH, name, store.replace_host, namespace, name, rv,
                              _meta_values(meta), doc.get("spec") or {})
        return docs.host(obj, group)

    @app.put(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/{{name}}")
    async def replace_host(group: str, namespace: str, name: str, request: Request) -> Any:
        _, meta, doc = await _body(request, BMH, _group(group), namespace)
        return await _replace_host(group, namespace, name, doc, _rv(meta))

    @app.patch(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/{{name}}")
    async def patch_host(group: str, namespace: str, name: str, request: Request) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.get, BMH, namespace, name)
        current = docs.host(obj, group, {})
        doc = await _patched(request, current)
        unknown = sorted(set(doc) - _TOP[BMH])
        if unknown:
            raise KubeError(422, f'{BMH} "{name}" is invalid: {unknown[0]}: unknown field '
                            f'"{unknown[0]}"', "Invalid")
        # the current resourceVersion, unless the patch carries one (a precondition)
        return await _replace_host(group, namespace, name, doc,
                                   _rv(doc.get("metadata") or {}))

    @app.delete(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/{{name}}")
    async def delete_host(group: str, namespace: str, name: str) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.delete_host, namespace, name)
        if obj.deleted_at is None:  # gone at once
            return docs.host(obj, group, {})
        # held by finalizers: 200 with the object and its deletionTimestamp, as
        # kube-apiserver answers
        return docs.host(obj, group, await _blocking(BMH, name, store.status, obj))

    return app
