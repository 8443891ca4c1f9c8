"""BareMetalHosts, Secrets and Namespaces of the Kubernetes-style API over the node store.

A BareMetalHost (Metal3's ``metal3.io/v1alpha1``) is a view of one node: creating one
enrolls a node (driver and driver_info from ``spec.bmc.address`` and the credentials in
the Secret ``spec.bmc.credentialsName``) with a port for ``spec.bootMACAddress``, and a
level-based reconcile (:mod:`metalplane.conductor.host_reconcile`, run by a thread) takes
one step at a time towards what the spec asks (available, provisioned, powered, deleted).
A node made through the Bare Metal API shows as a host too (:meth:`KubeStore.sync_nodes`).
Its status is computed from the node (:func:`metalplane.common.metal3.host_status`) and
stored by the status writer (:mod:`metalplane.conductor.kube_status`) whenever it
changes; every write reaches the watch hub (:mod:`metalplane.conductor.kube_watch`).

Secrets keep their ``data`` sealed (Fernet, as driver_info passwords) and decrypt it only
for the API's GET and for enrolling. This module holds the rules; HTTP shapes (Status,
Table, discovery) are the API's (:mod:`metalplane.api.k8s_api`). Sources: Metal3's
``baremetalhost_types.go``; Kubernetes API conventions (metadata, Secret ``data``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import threading
from collections import OrderedDict
from typing import Any

from metalplane.common.bmc_address import parse_bmc_address
from metalplane.common.exceptions import Conflict, Invalid, NodeLocked, NotFound
from metalplane.common.metal3 import host_status
from metalplane.conductor.host_reconcile import FINALIZER, HostReconciler, mirror_spec
from metalplane.conductor.kube_status import StatusWriter
from metalplane.conductor.kube_watch import WatchHub
from metalplane.conductor.manager import Conductor
from metalplane.conductor.pass_loop import PassLoop
from metalplane.conductor.resources import DELETE_ALLOWED, NodeResources
from metalplane.db import api as db_api
from metalplane.db.inspection import get_inventory
from metalplane.db.kube import (
    AlreadyExists,
    kube_create,
    kube_delete,
    kube_get,
    kube_list,
    kube_node_links,
    kube_revision,
    kube_snapshot,
    kube_update,
    nodes_fingerprint,
    store_fingerprint,
)
from metalplane.db.models import KubeObject, Node, Port, utcnow

__all__ = ["BMH", "NAMESPACE", "SECRET", "FieldInvalid", "KubeStore", "check_spec"]

LOG = logging.getLogger(__name__)

BMH, SECRET, NAMESPACE = "BareMetalHost", "Secret", "Namespace"
BUILTIN_NAMESPACES = ("default", "kube-system")
LIST_CACHE_SIZE = 8  # lists kept, see KubeStore.snapshot
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

_REF = {"name": str, "namespace": str}
# spec fields of Metal3's BareMetalHostSpec served here; a nested dict is an object
SPEC_FIELDS: dict[str, Any] = {
    "online": bool,
    "bmc": {"address": str, "credentialsName": str, "disableCertificateVerification": bool},
    "bootMACAddress": str,
    "image": {"url": str, "checksum": str, "checksumType": str, "format": str},
    "userData": _REF, "networkData": _REF, "metaData": _REF,
    "consumerRef": {"apiVersion": str, "kind": str, "name": str, "namespace": str,
                    "uid": str, "resourceVersion": str, "fieldPath": str},
    "externallyProvisioned": bool,
    "rootDeviceHints": {"deviceName": str, "hctl": str, "model": str, "vendor": str,
                        "serialNumber": str, "minSizeGigabytes": int, "wwn": str,
                        "wwnWithExtension": str, "wwnVendorExtension": str,
                        "rotational": bool},
    "automatedCleaningMode": str,
    "description": str,
}
_TYPE_NAMES = {bool: "boolean", str: "string", int: "integer"}
# Metal3's RootDeviceHints -> Ironic's properties/root_device keys
_ROOT_HINTS = {"deviceName": "name", "hctl": "hctl", "model": "model", "vendor": "vendor",
               "serialNumber": "serial", "minSizeGigabytes": "size", "wwn": "wwn",
               "wwnWithExtension": "wwn_with_extension",
               "wwnVendorExtension": "wwn_vendor_extension", "rotational": "rotational"}
IMMUTABLE = ("bmc.address", "bootMACAddress")  # as Metal3's webhook, once registered


class FieldInvalid(Invalid):
    """A field of a manifest is wrong (HTTP 422, reason Invalid); ``field`` is its path
    (``spec.bmc.address``) and ``cause`` Kubernetes' ``FieldValueInvalid``,
    ``FieldValueRequired``, ``FieldValueNotFound`` or ``FieldValueNotSupported``."""

    code = 422

    def __init__(self, field: str, message: str, cause: str = "FieldValueInvalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.cause, self.detail = field, cause, message


def check_spec(spec: Any, fields: dict[str, Any] = SPEC_FIELDS, path: str = "spec") -> None:
    """Check a BareMetalHost ``spec`` against Metal3's field names and types (strict: an
    unknown field is refused rather than dropped). Raises :class:`FieldInvalid` naming
    the first wrong field."""
    if not isinstance(spec, dict):
        raise FieldInvalid(path, "must be an object")
    for key, value in spec.items():
        where = f"{path}.{key}"
        if key not in fields:
            raise FieldInvalid(where, f'unknown field "{key}"', "FieldValueNotSupported")
        kind = fields[key]
        if value is None:
            continue
        if isinstance(kind, dict):
            check_spec(value, kind, where)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FieldInvalid(where, f"must be a {_TYPE_NAMES[kind]}")
    if path == "spec":
        mode = spec.get("automatedCleaningMode")
        if mode not in (None, "metadata", "disabled"):
            raise FieldInvalid("spec.automatedCleaningMode",
                               f'Unsupported value: "{mode}": supported values: '
                               '"metadata", "disabled"', "FieldValueNotSupported")


def check_name(name: Any, field: str = "metadata.name") -> str:
    """``name`` if it is a DNS-1123 subdomain (Kubernetes' object names), else raises
    :class:`FieldInvalid`."""
    if not name:
        raise FieldInvalid(field, "Required value: name is required", "FieldValueRequired")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise FieldInvalid(field, f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain "
                           "must consist of lower case alphanumeric characters, '-' or '.', "
                           "and must start and end with an alphanumeric character")
    return name


def node_name(namespace: str, name: str) -> str:
    """The node's name for host ``name`` of ``namespace`` (just ``name`` in ``default``;
    ``~`` cannot occur in a Kubernetes name, so names never collide)."""
    return name if namespace == "default" else f"{namespace}~{name}"


class KubeStore:
    """Namespaces, Secrets and BareMetalHosts over ``conductor``'s store; ``start()`` runs
    the reconcile thread (``interval`` s between passes), ``stop()`` ends it."""

    def __init__(self, conductor: Conductor, interval: float = 0.5) -> None:
        self.c, self.db, self.interval = conductor, conductor.db, interval
        self.res = NodeResources(conductor)
        self.reconciler = HostReconciler(self)
        self._mirrored: tuple[Any, ...] = ()  # nodes_fingerprint() of the last refresh
        # (kind, namespace, name) -> (resourceVersion, objects) of the latest lists
        self._lists: OrderedDict[tuple[str, str | None, str | None],
                                 tuple[int, list[KubeObject]]] = OrderedDict()
        self._lists_lock = threading.Lock()
        self._loop = PassLoop("bmh-reconcile", self.reconcile_once, interval,
                              "BareMetalHost reconcile pass",
                              fingerprint=lambda: store_fingerprint(self.db))
        self.hub = WatchHub(self.db)
        self.status_writer = StatusWriter(self.db, BMH, self.computed_status)

    def ensure_namespaces(self) -> None:
        """Create the built-in namespaces (``default``, ``kube-system``) if missing."""
        for ns in BUILTIN_NAMESPACES:
            try:
                kube_get(self.db, NAMESPACE, "", ns)
            except NotFound:
                with contextlib.suppress(Conflict):  # another process made it meanwhile
                    kube_create(self.db, NAMESPACE, "", ns)

    # ---------------------------------------------------------------- generic
    def get(self, kind: str, namespace: str, name: str) -> KubeObject:
        """Raises :class:`NotFound`. Hosts are first synced with the nodes
        (:meth:`sync_nodes`), so the two views never disagree."""
        if kind == BMH:
            self.sync_nodes((namespace, name))
        return kube_get(self.db, kind, namespace, name)

    def list_objects(self, kind: str, namespace: str | None = None,
             name: str | None = None) -> list[KubeObject]:
        """Objects of ``kind`` (hosts synced with the nodes first, as :meth:`get`)."""
        if kind == BMH:
            self.sync_nodes()
        return kube_list(self.db, kind, namespace, name)

    def snapshot(self, kind: str, namespace: str | None = None,
                 name: str | None = None) -> tuple[list[KubeObject], int]:
        """The objects and the store's ``resourceVersion`` they are at (one read; hosts
        synced with the nodes first, as :meth:`get`). The last lists are kept: while the
        store's revision has not moved, a list is answered from them (as kube-apiserver
        serves lists from its watch cache); the objects are shared, not to be changed."""
        if kind == BMH:
            self.sync_nodes()
        key = (kind, namespace, name)
        with self._lists_lock:
            cached = self._lists.get(key)
        if cached is not None and cached[0] == kube_revision(self.db):
            return list(cached[1]), cached[0]  # nothing written since: the same objects
        objs, rv = kube_snapshot(self.db, kind, namespace, name)
        if kind == BMH:
            objs = self.with_status(objs)  # a status written here moves the revision on
        with self._lists_lock:
            self._lists[key] = (rv, objs)
            self._lists.move_to_end(key)
            while len(self._lists) > LIST_CACHE_SIZE:
                self._lists.popitem(last=False)
        return list(objs), rv

    def _check_namespace(self, namespace: str) -> None:
        try:
            kube_get(self.db, NAMESPACE, "", namespace)
        except NotFound:
            raise NotFound(f'namespaces "{namespace}" not found') from None

    def create_namespace(self, name: str, meta: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, ``AlreadyExists``."""
        return kube_create(self.db, NAMESPACE, "", check_name(name), **meta)

    def delete_namespace(self, name: str) -> KubeObject:
        """Raises :class:`NotFound`, :class:`Conflict` while it holds objects or is one
        of the built-in ones."""
        if name in BUILTIN_NAMESPACES:
            raise Conflict(f'namespace "{name}" is built in and cannot be deleted')
        if self.list_objects(BMH, name) or self.list_objects(SECRET, name):
            raise Conflict(f'namespace "{name}" still holds Secrets or BareMetalHosts')
        return kube_delete(self.db, NAMESPACE, "", name)

    def update_meta(self, kind: str, namespace: str, name: str, rv: int | None,
                    meta: dict[str, Any]) -> KubeObject:
        """Replace an object's labels, annotations and finalizers (a Namespace's whole
        writable part). Raises :class:`NotFound`, ``StaleVersion``."""
        return kube_update(self.db, kind, namespace, name, rv, **meta)

    # ---------------------------------------------------------------- secrets
    def _seal(self, data: dict[str, str]) -> str:
        return str(self.c.secrets.encrypt(json.dumps(data, sort_keys=True)))

    def secret_data(self, obj: KubeObject) -> dict[str, str]:
        """A Secret's ``data`` (base64 values, as Kubernetes returns them), decrypted."""
        sealed = (obj.body or {}).get("data")
        if not sealed:
            return {}
        clear = self.c.secrets.decrypt_driver_info({"data_secret": sealed})["data_secret"]
        return dict(json.loads(clear))

    @staticmethod
    def _secret_values(body: dict[str, Any]) -> dict[str, str]:
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise FieldInvalid("data", "must be an object of base64 strings")
        out: dict[str, str] = {}
        for key, value in data.items():
            if not _SECRET_KEY.match(str(key)):
                raise FieldInvalid(f"data[{key}]", "a valid config key must consist of "
                                   "alphanumeric characters, '-', '_' or '.'")
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise FieldInvalid(f"data[{key}]", "illegal base64 data") from None
            out[str(key)] = str(value)
        string_data = body.get("stringData") or {}
        if not isinstance(string_data, dict):
            raise FieldInvalid("stringData", "must be an object of strings")
        for key, value in string_data.items():  # written into data, as Kubernetes does
            out[str(key)] = base64.b64encode(str(value).encode()).decode()
        return out

    def create_secret(self, namespace: str, name: str, meta: dict[str, Any],
                      body: dict[str, Any]) -> KubeObject:
        """A Secret from a manifest's ``type``, ``data`` (base64) and ``stringData``.
        Raises :class:`FieldInvalid`, :class:`NotFound` (namespace), ``AlreadyExists``."""
        check_name(name)
        self._check_namespace(namespace)
        data = self._secret_values(body)
        return kube_create(self.db, SECRET, namespace, name, **meta, body={
            "type": body.get("type") or "Opaque", "data": self._seal(data)})

    def replace_secret(self, namespace: str, name: str, rv: int | None,
                       meta: dict[str, Any], body: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound`, ``StaleVersion``."""
        data = self._secret_values(body)
        return kube_update(self.db, SECRET, namespace, name, rv, **meta, body={
            "type": body.get("type") or "Opaque", "data": self._seal(data)})

    def delete_secret(self, namespace: str, name: str) -> KubeObject:
        return kube_delete(self.db, SECRET, namespace, name)

    def _credentials(self, namespace: str, spec: dict[str, Any]) -> tuple[str | None,
                                                                        str | None]:
        secret_name = (spec.get("bmc") or {}).get("credentialsName")
        if not secret_name:
            return None, None
        try:
            secret = kube_get(self.db, SECRET, namespace, secret_name)
        except NotFound:
            raise FieldInvalid("spec.bmc.credentialsName", f'Secret "{secret_name}" not '
                               f'found in namespace "{namespace}"', "FieldValueNotFound"
                               ) from None
        data = self.secret_data(secret)
        try:
            username = base64.b64decode(data.get("username", "")).decode() or None
            password = base64.b64decode(data.get("password", "")).decode() or None
        except UnicodeDecodeError:
            raise FieldInvalid("spec.bmc.credentialsName", f'Secret "{secret_name}": '
                               "username and password must be UTF-8 text") from None
        if not username or not password:
            raise FieldInvalid("spec.bmc.credentialsName", f'Secret "{secret_name}" needs '
                               'both "username" and "password" in its data')
        return username, password

    # ---------------------------------------------------------------- hosts
    @staticmethod
    def _node_fields(spec: dict[str, Any]) -> dict[str, Any]:
        """The node fields a host's spec sets beyond its BMC: ``description``,
        ``automated_clean``, ``properties.root_device`` (from ``rootDeviceHints``) and
        ``extra.consumer`` (``consumerRef.name``). The image reaches ``instance_info`` only
        when the reconcile deploys it (so instance_info says what was deployed)."""
        hints = {_ROOT_HINTS[k]: v for k, v in (spec.get("rootDeviceHints") or {}).items()
                 if v is not None}
        return {"description": spec.get("description"),
                "automated_clean": False if spec.get("automatedCleaningMode") == "disabled"
                else None,
                "root_device": hints or None,
                "consumer": (spec.get("consumerRef") or {}).get("name") or None}

    @staticmethod
    def _node_values(node: Node | None, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` (:meth:`_node_fields`) as node columns, merged into ``node``'s
        properties and extra (other keys kept)."""
        props = {k: v for k, v in ((node.properties if node else None) or {}).items()
                 if k != "root_device"}
        extra = {k: v for k, v in ((node.extra if node else None) or {}).items()
                 if k != "consumer"}
        if fields["root_device"]:
            props["root_device"] = fields["root_device"]
        if fields["consumer"]:
            extra["consumer"] = fields["consumer"]
        return {"description": fields["description"],
                "automated_clean": fields["automated_clean"], "properties": props,
                "extra": extra}

    def carry_spec(self, node: Node, spec: dict[str, Any]) -> bool:
        """Write the node fields of ``spec`` (:meth:`_node_fields`) to ``node`` where they
        differ; returns whether it changed. Raises ``NodeLocked``, :class:`NotFound`."""
        fields = self._node_fields(spec)
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": f"/{k}", "value": fields[k]}
            for k in ("description", "automated_clean") if getattr(node, k) != fields[k]]
        # keys inside properties and extra, so the patch (applied under the node's lock)
        # keeps whatever else changed there meanwhile (inspection results)
        for column, key, field in (("properties", "root_device", "root_device"),
                                   ("extra", "consumer", "consumer")):
            have = (getattr(node, column) or {}).get(key)
            if fields[field] and have != fields[field]:
                ops.append({"op": "add", "path": f"/{column}/{key}", "value": fields[field]})
            elif not fields[field] and have is not None:
                ops.append({"op": "remove", "path": f"/{column}/{key}"})
        if ops:
            self.res.update_node(node.uuid, ops)
        return bool(ops)

    def create_host(self, namespace: str, name: str, meta: dict[str, Any],
                    spec: dict[str, Any]) -> KubeObject:
        """Store a new BareMetalHost (with metalplane's finalizer,
        ``baremetalhost.metal3.io``) and enroll its node (with a port for
        ``bootMACAddress``); the reconcile thread then drives the node. Raises
        :class:`FieldInvalid` naming the field (unknown field, bad BMC address or MAC,
        missing Secret), :class:`NotFound` (namespace), ``AlreadyExists``."""
        check_name(name)
        check_spec(spec)
        self._check_namespace(namespace)
        if kube_list(self.db, BMH, namespace, name):
            raise AlreadyExists(f'baremetalhosts.metal3.io "{name}" already exists')
        bmc = spec.get("bmc") or {}
        if not bmc.get("address"):
            raise FieldInvalid("spec.bmc.address", "Required value", "FieldValueRequired")
        username, password = self._credentials(namespace, spec)
        try:
            driver, info = parse_bmc_address(bmc["address"], username, password)
        except Invalid as exc:
            raise FieldInvalid("spec.bmc.address", exc.message) from None
        if bmc.get("disableCertificateVerification") and driver == "redfish":
            info["redfish_verify_ca"] = False
        values = {"name": node_name(namespace, name), "driver": driver, "driver_info": info,
                  **{k: v for k, v in self._node_values(None, self._node_fields(spec)).items()
                     if v not in (None, {})}}
        meta = {**meta, "finalizers": [*(f for f in meta.get("finalizers") or []
                                         if f != FINALIZER), FINALIZER]}
        # the host first, without a node: sync_nodes() leaves a node being made alone
        kube_create(self.db, BMH, namespace, name, **meta, body={"spec": spec})
        node = None
        try:
            node = self.res.create_node(values)
            if spec.get("bootMACAddress"):
                try:
                    self.res.create_port({"node_uuid": node.uuid, "pxe_enabled": True,
                                          "address": spec["bootMACAddress"]})
                except Invalid as exc:
                    raise FieldInvalid("spec.bootMACAddress", exc.message) from None
                except Conflict as exc:
                    raise FieldInvalid("spec.bootMACAddress", exc.message,
                                       "FieldValueDuplicate") from None
            obj = kube_update(self.db, BMH, namespace, name, None, node_uuid=node.uuid)
        except Exception:
            if node is not None:
                self.res.delete_node(node.uuid)
            with contextlib.suppress(NotFound):
                kube_delete(self.db, BMH, namespace, name)
            raise
        LOG.info("BareMetalHost %s/%s: node %s enrolled (%s)", namespace, name, node.uuid,
                 driver)
        self._loop.kick()
        return obj

    def replace_host(self, namespace: str, name: str, rv: int | None, meta: dict[str, Any],
                     spec: dict[str, Any]) -> KubeObject:
        """Replace a host's metadata and spec (``rv`` None: no version check) and carry
        the spec's node fields (:meth:`_node_fields`) to its node; the reconcile does the
        rest. A host being deleted goes once its last finalizer is removed, and takes no
        new finalizer. Raises :class:`FieldInvalid` (also for a change of
        ``spec.bmc.address`` or ``spec.bootMACAddress``, which Metal3 refuses too, or a
        new finalizer on a deleted host), :class:`NotFound`, ``StaleVersion``,
        ``NodeLocked``."""
        check_spec(spec)
        old = kube_get(self.db, BMH, namespace, name)
        old_spec = (old.body or {}).get("spec") or {}
        for path in IMMUTABLE:
            if _dig(spec, path) != _dig(old_spec, path):
                raise FieldInvalid(f"spec.{path}", "cannot be changed once the host is "
                                   "registered; delete and create the host instead")
        if old.deleted_at is not None:
            added = sorted(set(meta.get("finalizers") or []) - set(old.finalizers or []))
            if added:
                raise FieldInvalid("metadata.finalizers", "Forbidden: no new finalizers can "
                                   "be added if the object is being deleted, found new "
                                   f"finalizers {added}", "FieldValueForbidden")
        if rv is not None and rv != old.resource_version:  # before the node changes
            return kube_update(self.db, BMH, namespace, name, rv, **meta, body={"spec": spec})
        if old.node_uuid and (self._node_fields(spec) != self._node_fields(old_spec)
                              or (old.body or {}).get("mirror")):
            node = self._node(old)
            if node is not None:
                with contextlib.suppress(NodeLocked):  # busy: the reconcile carries it
                    self.carry_spec(node, spec)
        # a user's write: the spec is the user's from now on (a mirror no more)
        obj = kube_update(self.db, BMH, namespace, name, rv, **meta, body={"spec": spec})
        if obj.deleted_at is not None and not obj.finalizers:
            with contextlib.suppress(NotFound):
                kube_delete(self.db, BMH, namespace, name)
        self._loop.kick()
        return obj

    def delete_host(self, namespace: str, name: str) -> KubeObject:
        """Delete a host, as kube-apiserver does: with finalizers (metalplane's,
        ``baremetalhost.metal3.io``, is added at creation) it gets
        ``metadata.deletionTimestamp`` and stays until the reconcile has deprovisioned
        (if it holds an image) and deleted its node, and every finalizer is gone;
        without any, it goes at once with its node (an externally provisioned one
        detached first, as Metal3 does). Returns the object as it now is (or was).
        Raises :class:`NotFound`, :class:`Conflict` for a host without finalizers whose
        node is busy or deployed."""
        obj = kube_get(self.db, BMH, namespace, name)
        if obj.finalizers:
            if obj.deleted_at is None:
                obj = kube_update(self.db, BMH, namespace, name, None,
                                  deleted_at=utcnow())
                LOG.info("BareMetalHost %s/%s: deletion requested", namespace, name)
                self._loop.kick()
            return obj
        spec = (obj.body or {}).get("spec") or {}
        node = self._node(obj)
        if node is not None:
            state = node.provision_state
            if state not in DELETE_ALLOWED and not node.maintenance:
                if not (state == "active" and spec.get("externallyProvisioned")):
                    raise Conflict(
                        f'BareMetalHost "{name}" (without finalizers) cannot be deleted '
                        f"while its node is {state!r} (Metal3 state "
                        f"{host_status(node, spec)['provisioning']['state']!r}); "
                        "deprovision it first, or wait until it rests")
                self.res.set_maintenance(node.uuid, True, "BareMetalHost deleted")
            self.res.delete_node(node.uuid)
        return kube_delete(self.db, BMH, namespace, name)

    def with_status(self, objs: list[KubeObject]) -> list[KubeObject]:
        """``objs`` (hosts), those whose stored status is still empty given it now."""
        return self.status_writer.fill(objs)

    def replace_status(self, namespace: str, name: str, rv: int | None,
                       status: dict[str, Any]) -> KubeObject:
        """Write a host's status subresource as given (spec and ``generation``
        untouched; the status writer overwrites it once the node or the spec changes).
        Raises :class:`FieldInvalid`, :class:`NotFound`, ``StaleVersion``."""
        if not isinstance(status, dict):
            raise FieldInvalid("status", "must be an object")
        return kube_update(self.db, BMH, namespace, name, rv, status=status)

    def sync_nodes(self, only: tuple[str, str] | None = None) -> None:
        """One store: a host for each node made through the Bare Metal API (namespace
        ``default``, named as the node if that is a DNS-1123 subdomain not taken, else by
        its UUID; its spec mirrors the node, :func:`mirror_spec`, and is refreshed while
        no user wrote it: all of them, or only host ``only`` = (namespace, name)), and no
        host whose node was deleted. Called by the reconcile and before each read of
        hosts."""
        links = kube_node_links(self.db, BMH, only)
        pending = {node_name(ns, n) for ns, n in links.pending}
        for obj in links.orphans:
            if obj.deleted_at is not None:
                continue  # being deleted: the reconcile drops its finalizer
            with contextlib.suppress(NotFound):
                kube_delete(self.db, BMH, obj.namespace, obj.name)
                LOG.info("BareMetalHost %s/%s: its node %s was deleted", obj.namespace,
                         obj.name, obj.node_uuid)
        free_boot = self._boot_macs([n.id for n in links.free]) if links.free else {}
        for node in links.free:
            if node.name in pending:
                continue  # create_host is making it
            name = node.name if (node.name and node.name not in links.names
                                 and len(node.name) <= 253
                                 and _DNS_SUBDOMAIN.match(node.name)) else node.uuid
            try:
                kube_create(self.db, BMH, "default", name, finalizers=[FINALIZER],
                            body={"spec": mirror_spec(node, free_boot.get(node.id)),
                                  "mirror": True},
                            node_uuid=node.uuid)
            except Conflict:  # made meanwhile (another pass), or the name is taken
                continue
            links.names.add(name)
            LOG.info("BareMetalHost default/%s: shows node %s of the Bare Metal API", name,
                     node.uuid)
        if not links.mirrors:
            return
        if only is None:  # all of them: only when a node or port changed since
            seen = nodes_fingerprint(self.db)
            if seen == self._mirrored and not links.free:
                return
            self._mirrored = seen
        uuids = [o.node_uuid for o in links.mirrors if o.node_uuid]
        nodes = {n.uuid: n for n in db_api.rows_where(self.db, Node, uuid=uuids)}
        boot = self._boot_macs([n.id for n in nodes.values()])
        for obj in links.mirrors:
            shown = nodes.get(obj.node_uuid or "")
            if shown is None:
                continue
            spec = mirror_spec(shown, boot.get(shown.id))
            if spec != (obj.body or {}).get("spec"):
                with contextlib.suppress(NotFound, Conflict):
                    kube_update(self.db, BMH, obj.namespace, obj.name, obj.resource_version,
                                body={"spec": spec, "mirror": True})

    def _boot_macs(self, node_ids: list[int]) -> dict[int, str]:
        """Node id -> the MAC of its first PXE-enabled port (Metal3's bootMACAddress)."""
        boot: dict[int, str] = {}
        for port in sorted(db_api.rows_where(self.db, Port, node_id=node_ids),
                           key=lambda p: p.id):
            if port.pxe_enabled:
                boot.setdefault(port.node_id, port.address)
        return boot

    def status(self, obj: KubeObject) -> dict[str, Any]:
        """The host's stored status (computed and stored first if still empty)."""
        return dict(self.with_status([obj])[0].status or {})

    def computed_status(self, obj: KubeObject, node: Node | None) -> dict[str, Any]:
        """The host's status from its node (see :func:`host_status`; an error status
        when the node is gone)."""
        spec = (obj.body or {}).get("spec") or {}
        if node is None:
            if obj.node_uuid is None or obj.deleted_at is not None:  # being made or gone
                return {"operationalStatus": "OK", "errorType": "",
                        "provisioning": {"state": "deleting" if obj.deleted_at
                                         else "registering", "ID": obj.node_uuid or ""},
                        "poweredOn": False}
            return {"operationalStatus": "error", "errorType": "registration error",
                    "errorMessage": "its node no longer exists",
                    "provisioning": {"state": "", "ID": obj.node_uuid or ""},
                    "poweredOn": False}
        inventory = get_inventory(self.db, node.id)
        return host_status(node, spec, obj.namespace,
                           inventory.inventory_data if inventory is not None else None,
                           deleting=obj.deleted_at is not None)

    def statuses(self, objs: list[KubeObject]) -> list[dict[str, Any]]:
        """:meth:`status` of each of ``objs`` (those still empty filled at once)."""
        return [dict(o.status or {}) for o in self.with_status(objs)]

    def _node(self, obj: KubeObject) -> Node | None:
        if not obj.node_uuid:
            return None
        try:
            return db_api.get_node(self.db, obj.node_uuid)
        except NotFound:
            return None

    # ---------------------------------------------------------------- reconcile
    def reconcile_once(self) -> int:
        """One pass over every host (:class:`HostReconciler`): each takes the next step
        towards its spec. Returns how many hosts there are (0: the thread may sleep
        longer)."""
        return self.reconciler.run()

    def start(self) -> None:
        """Create the built-in namespaces, then start the reconcile thread (a migrated
        store is needed)."""
        self.ensure_namespaces()
        self.hub.start()
        self.status_writer.start()
        self._loop.start()

    def stop(self) -> None:
        self.hub.stop()
        self.status_writer.stop()
        self._loop.stop()


def _dig(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = (doc or {}).get(part) if isinstance(doc, dict) else None  # type: ignore[assignment]
    return doc
