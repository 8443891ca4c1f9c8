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

``/openapi/v2`` (JSON, or gnostic's protobuf that kubectl asks for first) is built from the
table of kinds in :mod:`metalplane.api.k8s_openapi`, which also gives ``fieldValidation=Strict``
its unknown fields; the patch types are :mod:`metalplane.api.k8s_patch`'s (strategic merge
patch for the built-in kinds only, 415 for BareMetalHosts as kube-apiserver answers for
custom resources). Events are listed (an empty ``EventList``: none are recorded yet).
Protobuf request bodies of Namespaces and Secrets (kubectl's typed creates) are decoded by
:mod:`metalplane.api.k8s_protobuf`. Watches (``?watch=true`` on every list) are
:mod:`metalplane.api.k8s_watch`'s; a host's ``status`` is the status subresource
(``.../baremetalhosts/{name}/status``), written by metalplane, ignored in the main
resource's PUT and PATCH as kube-apiserver does.

Cluster API's MachineSets and Machines and CAPM3's Metal3MachineTemplates are
:mod:`metalplane.api.k8s_capi`'s. Not served yet (answered with a ``Status``): server-side
apply, dry run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from metalplane import __version__
from metalplane.api import k8s_openapi, k8s_openapi_pb, k8s_patch, k8s_protobuf, policy
from metalplane.api.app import _BLOCKING
from metalplane.api.auth import TooManyAttempts, UsersFile
from metalplane.api.k8s_watch import WatchBadRequest, WatchSpec, is_watch, watch_response
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

if TYPE_CHECKING:
    from metalplane.conductor.machines import MachineController

__all__ = ["GROUPS", "Handlers", "KubeError", "create_k8s_app", "human_duration",
           "match_labels", "serve_group"]

GROUPS = ("metal3.io", "metalkube.org")  # the second: an alias serving the same hosts
VERSION = "v1alpha1"
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
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
# groups served by other modules (k8s_capi): group -> version (serve_group)
_GROUP_VERSIONS: dict[str, str] = {}
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict",
            413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


def serve_group(group: str, version: str, kinds: dict[str, tuple[str, set[str]]]) -> None:
    """Make the shared handlers know a group another module serves (discovery in
    ``/apis``, manifests' ``apiVersion``, ``Status`` details): ``kinds`` maps each kind to
    its resource name and the top-level fields of its manifests."""
    _GROUP_VERSIONS[group] = version
    for kind, (resource, top) in kinds.items():
        _RESOURCE[kind] = (resource, group)
        _TOP[kind] = top


@dataclass(frozen=True)
class Handlers:
    """The request helpers of :func:`create_k8s_app`, for the modules serving further
    groups: ``read`` (the JSON body), ``body`` (a POST/PUT manifest checked: name,
    metadata, document), ``rv`` (a metadata's resourceVersion), ``filtered`` (label and
    field selectors), ``patched`` (a patch of a kind applied), ``list_doc`` (a list at a
    ``resourceVersion``), ``watch`` (a watch of a kind: ``request, kind, apiVersion,
    namespace, render(obj), columns, cells(obj)``; see :mod:`metalplane.api.k8s_watch`)."""

    read: Callable[[Request], Awaitable[Any]]
    body: Callable[..., Awaitable[tuple[str, dict[str, Any], dict[str, Any]]]]
    rv: Callable[[dict[str, Any]], int | None]
    filtered: Callable[[Request, list[Any]], list[Any]]
    patched: Callable[[Request, str, dict[str, Any]], Awaitable[dict[str, Any]]]
    list_doc: Callable[[str, str, list[dict[str, Any]], int], dict[str, Any]]
    watch: Callable[..., Response]


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
                "status": status_ if status_ is not None else dict(obj.status or {})}

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
_EVENT_COLUMNS = [("Last Seen", "string", "", "Time"), ("Type", "string", "", "Type"),
                  ("Reason", "string", "", "Reason"), ("Object", "string", "", "Object"),
                  ("Message", "string", "", "Message")]
_NS_COLUMNS = [("Name", "string", "name", "Name"), ("Status", "string", "", "Phase"),
               ("Age", "date", "", "Age")]


def _columns(columns: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``TableColumnDefinition`` dicts of ``(name, type, format, description[,
    priority])`` tuples."""
    return [{"name": c[0], "type": c[1], "format": c[2], "description": c[3],
             "priority": c[4] if len(c) > 4 else 0} for c in columns]


def _row_object(obj: Any) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": _metadata(obj)}


def _table(columns: list[tuple[str, str, str, str]], rows: list[tuple[Any, list[Any]]],
           rv: int) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` ``Table``, each row's object as ``PartialObjectMetadata``."""
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(rv)},
            "columnDefinitions": _columns(columns),
            "rows": [{"cells": cells, "object": _row_object(obj)} for obj, cells in rows]}


def sent(doc: dict[str, Any]) -> Response:
    """``doc`` (plain JSON types only) as the response itself, encoded by orjson (the
    stdlib's ``json`` where orjson refuses, e.g. integers beyond 64 bits): FastAPI walks a
    returned dict through ``jsonable_encoder`` first, which costs ten times the encoding
    on a list of thousands of objects."""
    try:
        return Response(orjson.dumps(doc), media_type="application/json")
    except orjson.JSONEncodeError:
        return JSONResponse(doc)


@functools.cache
def _openapi_protobuf() -> bytes:
    return k8s_openapi_pb.encode_document(k8s_openapi.openapi_v2())


def _age(obj: Any) -> str:
    return human_duration((dt.datetime.now(dt.UTC) - obj.created_at).total_seconds())


# ---------------------------------------------------------------- the app
def create_k8s_app(store: KubeStore, auth_strategy: str = "noauth",
                   users_file: UsersFile | None = None,
                   server_address: str = "",
                   machines: MachineController | None = None) -> FastAPI:
    """The Kubernetes-style API over ``store``. ``auth_strategy`` ``http_basic`` checks
    ``Authorization: Basic`` against ``users_file`` (system-scope users; ``reader`` may
    only read), and ``Authorization: Bearer <token>`` where the token is the same
    base64 of ``user:password`` (kubectl since 1.19 sends no basic credentials from a
    kubeconfig; ``metalplane kubeconfig`` writes such a token). ``server_address``
    (host:port) is what ``/api`` advertises; ``machines`` serves Cluster API's groups
    (:mod:`metalplane.api.k8s_capi`; one over ``store`` without its thread if None)."""
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
        if request.method != "GET" and request.query_params.get("dryRun"):
            # not declared in /openapi/v2 (kubectl refuses --dry-run=server itself); a
            # client that sends it anyway must not have the write done for real
            return KubeError(400, "dryRun is not supported by this server").response()
        answer: Response = await call_next(request)
        return answer

    limit = store.c.settings.max_request_body_size

    async def _read(request: Request) -> Any:
        """The request's JSON body (at most ``max_request_body_size`` bytes, else 413).
        A protobuf body (kubectl's typed creates of Namespaces and Secrets) is decoded
        into the same JSON shape. Raises :class:`KubeError` 415 for another media type
        (CBOR; protobuf for other kinds or verbs), 400 for a body that does not parse."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        protobuf = ctype == k8s_protobuf.CONTENT_TYPE  # kubectl's typed verbs
        if ctype and not ctype.endswith("json") and not protobuf:
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
        if protobuf:
            if request.method != "POST":
                raise KubeError(415, "protobuf bodies are served for create only",
                                "UnsupportedMediaType")
            try:
                return k8s_protobuf.decode_object(body)
            except k8s_protobuf.BodyError as exc:
                raise KubeError(exc.code, exc.message) from None
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

    @app.get("/openapi/v2")
    async def openapi_v2(request: Request) -> Response:
        """The Swagger 2.0 document of the served kinds: gnostic's protobuf when asked for
        it (kubectl asks for ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``
        first), else JSON."""
        accept = request.headers.get("accept", "")
        if any(media in accept for media in k8s_openapi_pb.ACCEPTED):
            return Response(_openapi_protobuf(), media_type=k8s_openapi_pb.CONTENT_TYPE)
        return JSONResponse(k8s_openapi.openapi_v2())

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
        if "/" in name:  # a subresource
            doc.update(singularName="", verbs=["get", "patch", "update"])
            del doc["shortNames"]
        if categories:
            doc["categories"] = categories
        return doc

    @app.get("/api/v1")
    async def core_v1() -> dict[str, Any]:
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            _resource("namespaces", NAMESPACE, False, ["ns"]),
            _resource("secrets", SECRET, True, []),
            {**_resource("events", "Event", True, ["ev"]), "verbs": ["get", "list"]}]}

    @app.get("/apis")
    async def api_groups() -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{VERSION}", "version": VERSION}],
             "preferredVersion": {"groupVersion": f"{g}/{VERSION}", "version": VERSION}}
            for g in GROUPS] + [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
             "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
            for g, v in _GROUP_VERSIONS.items()]}

    def _group(group: str) -> str:
        if group not in GROUPS:
            raise KubeError(404, "the server could not find the requested resource",
                            "NotFound")
        return group

    @app.get("/apis/{group}")
    async def api_group(group: str) -> dict[str, Any]:
        version = _GROUP_VERSIONS.get(group) or (_group(group) and VERSION)
        gv = {"groupVersion": f"{group}/{version}", "version": version}
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
                              ["metal3"] if group == GROUPS[0] else None),
                    _resource("baremetalhosts/status", BMH, True, [])]}

    # ------------------------------------------------------------ shared handlers
    async def _body(request: Request, kind: str, group: str,
                    namespace: str | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(name, metadata values, manifest)`` of a POST/PUT body. Raises
        :class:`KubeError` 400 (not JSON; wrong kind or apiVersion; namespace mismatch),
        422 (unknown top-level field or metadata field)."""
        doc = await _read(request)
        if not isinstance(doc, dict):
            raise KubeError(400, "the body of the request must be a JSON object")
        want = f"{group}/{_GROUP_VERSIONS.get(group, VERSION)}" if group else "v1"
        if doc.get("kind") not in (None, kind) or doc.get("apiVersion") not in (None, want):
            raise KubeError(400, f"the API version in the data ({doc.get('apiVersion')}) "
                            f"and kind ({doc.get('kind')}) do not match {want} {kind}")
        _strict(request, kind, doc, creating=True)
        unknown = sorted(set(doc) - _TOP[kind])
        if unknown:  # the server's own refusal (without fieldValidation=Strict)
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

    def _strict(request: Request, kind: str, doc: dict[str, Any], creating: bool) -> None:
        """With ``fieldValidation=Strict``, every unknown field of ``doc`` refused at once,
        as kube-apiserver's strict decoding does: 400 BadRequest ``<Kind> in version "<v>"
        cannot be handled as a <Kind>: strict decoding error: unknown field "spec.foo"``
        (a patch: without the prefix). Other values leave it to the checks of the store."""
        if request.query_params.get("fieldValidation", "").lower() != "strict":
            return
        unknown = k8s_openapi.unknown_fields(kind, doc)
        if unknown:
            message = "strict decoding error: " + ", ".join(
                f'unknown field "{f}"' for f in unknown)
            if creating:
                version = k8s_openapi.kind_info(kind).version
                message = f'{kind} in version "{version}" cannot be handled as a {kind}: ' \
                    + message
            raise KubeError(400, message, "BadRequest")

    def _rv(meta: dict[str, Any]) -> int | None:
        raw = meta.get("resourceVersion")
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise KubeError(400, f"metadata.resourceVersion: Invalid value: {raw!r}: must "
                            "be the resourceVersion of a GET") from None

    def _selector(request: Request) -> Callable[[Any, dict[str, Any]], bool]:
        """Whether an object with given labels passes the request's ``labelSelector``
        and ``fieldSelector``. Raises :class:`KubeError` 400 for one that does not
        parse."""
        labels = request.query_params.get("labelSelector") or ""
        fields = _field_filter(request.query_params.get("fieldSelector") or "")
        match_labels(labels, {})  # a selector that does not parse: 400 now, not mid-stream

        def matches(obj: Any, obj_labels: dict[str, Any]) -> bool:
            if labels and not match_labels(labels, obj_labels):
                return False
            values = {"metadata.name": obj.name, "metadata.namespace": obj.namespace}
            return all((values[f] == v) == eq for f, eq, v in fields)
        return matches

    def _filtered(request: Request, objs: list[Any]) -> list[Any]:
        matches = _selector(request)
        return [o for o in objs if matches(o, o.labels or {})]

    def _watch(request: Request, kind: str, api_version: str, namespace: str | None,
               render: Callable[[Any], dict[str, Any]],
               columns: list[tuple[Any, ...]],
               cells: Callable[[Any], list[Any]]) -> Response:
        """The watch ``request`` asks for (``?watch=true``) of ``kind``; any kind stored
        in ``kube_objects`` (see :mod:`metalplane.api.k8s_watch`)."""
        spec = WatchSpec(kind=kind, api_version=api_version, render=render,
                         columns=_columns(columns), cells=cells, row_object=_row_object,
                         matches=_selector(request),
                         snapshot=lambda ns: store.snapshot(kind, ns))
        try:
            return watch_response(request, store.hub, spec, namespace)
        except WatchBadRequest as exc:
            raise KubeError(400, str(exc), "BadRequest") from None

    def _list_doc(kind: str, api_version: str, items: list[dict[str, Any]],
                  rv: int) -> dict[str, Any]:
        return {"apiVersion": api_version, "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    async def _patched(request: Request, kind: str, current: dict[str, Any]
                       ) -> dict[str, Any]:
        """``current`` with the request's patch applied: merge patch, JSON patch, and for
        the built-in kinds strategic merge patch (:mod:`k8s_patch`). Raises
        :class:`KubeError` 415 for another media type (strategic merge patch of a custom
        resource, as kube-apiserver answers; server-side apply), 400/422 for a patch that
        does not parse or apply, 400 for unknown fields under ``fieldValidation=Strict``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        info = k8s_openapi.kind_info(kind)
        accepted = ["application/json-patch+json", "application/merge-patch+json"]
        if info.strategic:
            accepted.append("application/strategic-merge-patch+json")
        if ctype not in accepted:
            raise KubeError(415, "the body of the request was in an unknown format - "
                            "accepted media types include: " + ", ".join(accepted),
                            "UnsupportedMediaType")
        patch = await _read(request)
        try:
            if ctype == "application/merge-patch+json":
                doc = k8s_patch.merge_patch(current, patch)
            elif ctype == "application/json-patch+json":
                doc = k8s_patch.json_patch(current, patch)
            else:
                doc = k8s_patch.strategic_merge_patch(
                    current, patch, k8s_openapi.definitions()[info.definition],
                    k8s_openapi.resolve)
        except k8s_patch.PatchError as exc:  # the cause too: kubectl prints it for 422
            raise KubeError(exc.code, exc.message, details={"causes": [
                {"reason": "UnexpectedServerResponse", "message": exc.message}]}) from None
        if not isinstance(doc, dict):
            raise KubeError(422, "the patch must leave an object", "Invalid")
        _strict(request, kind, doc, creating=False)
        return dict(doc)

    # ------------------------------------------------------------ namespaces
    @app.get("/api/v1/namespaces")
    async def list_namespaces(request: Request) -> Any:
        if is_watch(request):
            return _watch(request, NAMESPACE, "v1", None, docs.namespace, _NS_COLUMNS,
                          lambda o: [o.name, "Active", _age(o)])
        objs, rv = await _blocking(NAMESPACE, "", store.snapshot, NAMESPACE)
        objs = _filtered(request, objs)
        if _wants_table(request):
            return _table(_NS_COLUMNS, [(o, [o.name, "Active", _age(o)]) for o in objs], rv)
        return _list_doc(NAMESPACE, "v1", [docs.namespace(o) for o in objs], rv)

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

    async def _update_namespace(name: str, doc: dict[str, Any]) -> Any:
        """A Namespace's writable part is its metadata (labels, annotations, finalizers)."""
        meta = doc.get("metadata") or {}
        if not isinstance(meta, dict) or meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        obj = await _blocking(NAMESPACE, name, store.update_meta, NAMESPACE, "", name,
                              _rv(meta), _meta_values(meta))
        return docs.namespace(obj)

    @app.put("/api/v1/namespaces/{name}")
    async def replace_namespace(name: str, request: Request) -> Any:
        _, _, doc = await _body(request, NAMESPACE, "", None)
        return await _update_namespace(name, doc)

    @app.patch("/api/v1/namespaces/{name}")
    async def patch_namespace(name: str, request: Request) -> Any:
        current = docs.namespace(await _blocking(NAMESPACE, name, store.get, NAMESPACE, "",
                                                 name))
        doc = await _patched(request, NAMESPACE, current)
        if doc == current:
            return current
        return await _update_namespace(name, doc)

    @app.delete("/api/v1/namespaces/{name}")
    async def delete_namespace(name: str) -> Any:
        obj = await _blocking(NAMESPACE, name, store.delete_namespace, name)
        return docs.namespace(obj)

    # ------------------------------------------------------------ events
    @app.get("/api/v1/events")
    @app.get("/api/v1/namespaces/{namespace}/events")
    async def list_events(request: Request, namespace: str = "") -> Any:
        """Events (what ``kubectl describe`` lists under an object): none are recorded
        yet, so an empty ``EventList`` (any ``fieldSelector`` on ``involvedObject.*``
        matches nothing)."""
        if namespace:
            await _blocking(NAMESPACE, namespace, store.get, NAMESPACE, "", namespace)
        if _wants_table(request):
            return _table(_EVENT_COLUMNS, [], 0)
        return {"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "0"},
                "items": []}

    # ------------------------------------------------------------ secrets
    def _secret_cells(obj: Any) -> list[Any]:
        return [obj.name, (obj.body or {}).get("type") or "Opaque",
                len(store.secret_data(obj)), _age(obj)]

    async def _list_secrets(request: Request, namespace: str | None) -> Any:
        if is_watch(request):
            return _watch(request, SECRET, "v1", namespace, docs.secret, _SECRET_COLUMNS,
                          _secret_cells)
        objs, rv = await _blocking(SECRET, "", store.snapshot, SECRET, namespace)
        objs = _filtered(request, objs)
        if _wants_table(request):
            return sent(_table(_SECRET_COLUMNS, [(o, _secret_cells(o)) for o in objs], rv))
        return sent(_list_doc(SECRET, "v1", [docs.secret(o) for o in objs], rv))

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
        doc = await _patched(request, SECRET, current)  # may carry a resourceVersion
        if doc == current:  # nothing changes: no write, the same resourceVersion
            return current
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
        if is_watch(request):
            return _watch(request, BMH, f"{group}/{VERSION}", namespace,
                          lambda o: docs.host(o, group),
                          _BMH_COLUMNS, lambda o: _host_cells(o, o.status or {}))
        objs, rv = await _blocking(BMH, "", store.snapshot, BMH, namespace)
        objs = _filtered(request, objs)
        if _wants_table(request):
            return sent(_table(_BMH_COLUMNS,
                               [(o, _host_cells(o, o.status or {})) for o in objs], rv))
        return sent(_list_doc(BMH, f"{group}/{VERSION}", [docs.host(o, group) for o in objs],
                              rv))

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
        [obj] = await _blocking(BMH, name, store.with_status, [obj])
        if _wants_table(request):
            return _table(_BMH_COLUMNS, [(obj, _host_cells(obj, obj.status or {}))],
                          obj.resource_version)
        return docs.host(obj, group)

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
        doc = await _patched(request, BMH, current)
        if doc == current:  # nothing changes: no write, the same resourceVersion
            return docs.host(obj, group)
        unknown = sorted(set(doc) - _TOP[BMH])
        if unknown:
            raise KubeError(422, f'{BMH} "{name}" is invalid: {unknown[0]}: unknown field '
                            f'"{unknown[0]}"', "Invalid")
        # the current resourceVersion, unless the patch carries one (a precondition)
        return await _replace_host(group, namespace, name, doc,
                                   _rv(doc.get("metadata") or {}))

    # the status subresource: only status is written, the rest of the body is ignored
    _status_path = (f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/"
                    "{name}/status")

    @app.get(_status_path)
    async def get_host_status(group: str, namespace: str, name: str) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.get, BMH, namespace, name)
        [obj] = await _blocking(BMH, name, store.with_status, [obj])
        return docs.host(obj, group)

    async def _write_status(group: str, namespace: str, name: str, doc: dict[str, Any]
                            ) -> Any:
        meta = doc.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise KubeError(400, "the name of the object does not match the name on the URL")
        obj = await _blocking(BMH, name, store.replace_status, namespace, name, _rv(meta),
                              doc.get("status") or {})
        return docs.host(obj, group)

    @app.put(_status_path)
    async def replace_host_status(group: str, namespace: str, name: str,
                                  request: Request) -> Any:
        _, _meta, doc = await _body(request, BMH, _group(group), namespace)
        return await _write_status(group, namespace, name, doc)

    @app.patch(_status_path)
    async def patch_host_status(group: str, namespace: str, name: str,
                                request: Request) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.get, BMH, namespace, name)
        [obj] = await _blocking(BMH, name, store.with_status, [obj])
        doc = await _patched(request, BMH, docs.host(obj, group))
        return await _write_status(group, namespace, name, doc)

    @app.delete(f"/apis/{{group}}/{VERSION}/namespaces/{{namespace}}/baremetalhosts/{{name}}")
    async def delete_host(group: str, namespace: str, name: str) -> Any:
        _group(group)
        obj = await _blocking(BMH, name, store.delete_host, namespace, name)
        if obj.deleted_at is None:  # gone at once
            return docs.host(obj, group, {})
        # held by finalizers: 200 with the object and its deletionTimestamp, as
        # kube-apiserver answers
        return docs.host(obj, group, await _blocking(BMH, name, store.status, obj))

    from metalplane.api import k8s_capi  # it imports this module
    from metalplane.conductor.machines import MachineController
    k8s_capi.register(app, machines or MachineController(store),
                      Handlers(_read, _body, _rv, _filtered, _patched, _list_doc, _watch))
    return app
