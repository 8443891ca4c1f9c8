"""Cluster API MachineSets and Machines over BareMetalHosts, the way Metal3's CAPM3 does it.

A ``MachineSet`` (``cluster.x-k8s.io/v1beta1``) keeps ``spec.replicas`` Machines made from
its template; a ``Machine`` claims one ``available`` BareMetalHost of its namespace that
its ``Metal3MachineTemplate`` (``infrastructure.cluster.x-k8s.io/v1beta1``, named by
``spec.infrastructureRef``) selects with ``hostSelector``, through an Ironic allocation
(``candidate_nodes`` = the matching hosts' nodes, the allocation's UUID = the Machine's
uid), then writes the host's spec: ``consumerRef`` (the Machine), ``image``, ``userData``,
``online: true``. The host's own reconcile provisions it. Deleting a Machine (its finalizer
``machine.cluster.x-k8s.io``) clears the host's image, user data and ``online``, waits
until the host's node rests again (deprovisioned), then frees the allocation and the
``consumerRef``, and only then lets the Machine go.

Simplified against Cluster API and CAPM3: there are no ``Cluster`` or ``Metal3Machine``
objects (a Machine's ``infrastructureRef`` names the template itself), no bootstrap
providers (``bootstrap.dataSecretName`` or the template's ``userData`` is the user data),
and, with no workload cluster, ``Running`` stands for "provisioned and powered on" where
Cluster API waits for a ``nodeRef``.

This module holds the rules and the controller thread (:class:`MachineController`); the
HTTP shapes are :mod:`metalplane.api.k8s_capi`'s. It writes hosts through
:class:`metalplane.conductor.hosts.KubeStore`, never over HTTP. Sources: Cluster API
``api/v1beta1/machineset_types.go``, ``machine_types.go``, ``machine_phase_types.go``;
CAPM3 ``api/v1beta1/metal3machine_types.go`` and its host selection (``chooseHost``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metalplane.common.exceptions import Conflict, MetalplaneError, NotFound
from metalplane.common.metal3 import host_status
from metalplane.conductor.allocations import ACTIVE, Allocations
from metalplane.conductor.hosts import BMH, NAMESPACE, SECRET, FieldInvalid, KubeStore, check_name
from metalplane.conductor.pass_loop import PassLoop
from metalplane.db import api as db_api
from metalplane.db.kube import (
    StaleVersion,
    kube_create,
    kube_delete,
    kube_get,
    kube_list,
    kube_update,
    store_fingerprint,
)
from metalplane.db.models import KubeObject, Node, utcnow

__all__ = ["CAPI_GROUP", "FINALIZER", "INFRA_GROUP", "M3MT", "MACHINE", "MACHINE_SET",
           "MachineController", "MachineView", "check_fields", "check_selector",
           "machine_phase", "machines_to_delete", "provider_id", "selector_matches",
           "selector_string"]

LOG = logging.getLogger(__name__)

MACHINE_SET, MACHINE, M3MT = "MachineSet", "Machine", "Metal3MachineTemplate"
CAPI_GROUP, INFRA_GROUP, VERSION = "cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io", "v1beta1"
FINALIZER = "machine.cluster.x-k8s.io"  # Cluster API's MachineFinalizer
SET_NAME_LABEL = "cluster.x-k8s.io/set-name"
CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
DELETE_POLICIES = ("Random", "Newest", "Oldest")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet
# node states in which a released host's node rests again (deprovisioned, or never deployed)
_RESTED = ("available", "manageable", "enroll")

MAP = "map of strings"  # a schema marker: an object whose values are strings
_REF = {"apiVersion": str, "kind": str, "name": str, "namespace": str, "uid": str,
        "resourceVersion": str, "fieldPath": str}
_SELECTOR = {"matchLabels": MAP,
             "matchExpressions": [{"key": str, "operator": str, "values": [str]}]}
# the served subset of Cluster API's MachineSpec; what is not honoured is refused
MACHINE_SPEC: dict[str, Any] = {"clusterName": str, "bootstrap": {"dataSecretName": str},
                                "infrastructureRef": _REF, "version": str, "providerID": str}
MACHINE_SET_SPEC: dict[str, Any] = {
    "clusterName": str, "replicas": int, "minReadySeconds": int, "deletePolicy": str,
    "selector": _SELECTOR,
    "template": {"metadata": {"labels": MAP, "annotations": MAP}, "spec": MACHINE_SPEC}}
# the served subset of CAPM3's Metal3MachineTemplateSpec
M3MT_SPEC: dict[str, Any] = {"template": {"spec": {
    "image": {"url": str, "checksum": str, "checksumType": str, "format": str},
    "userData": {"name": str, "namespace": str}, "hostSelector": _SELECTOR,
    "automatedCleaningMode": str}}}
_CHECKSUM_TYPES = ("md5", "sha256", "sha512", "auto")
_FORMATS = ("raw", "qcow2", "vdi", "vmdk", "live-iso")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_TYPE_NAMES = {bool: "boolean", str: "string", int: "integer"}


# ---------------------------------------------------------------- pure rules
def check_fields(value: Any, schema: Any, path: str) -> None:
    """Check ``value`` against ``schema`` (a dict: an object with those fields, strictly;
    ``[s]``: a list of ``s``; :data:`MAP`; ``str``/``int``/``bool``). Null values pass.
    Raises :class:`FieldInvalid` naming the first wrong field (``spec.template.spec.x``)."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise FieldInvalid(path, "must be an object")
        for key, item in value.items():
            where = f"{path}.{key}"
            if key not in schema:
                raise FieldInvalid(where, f'unknown field "{key}"', "FieldValueNotSupported")
            if item is not None:
                check_fields(item, schema[key], where)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise FieldInvalid(path, "must be a list")
        for i, item in enumerate(value):
            check_fields(item, schema[0], f"{path}[{i}]")
    elif schema == MAP:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise FieldInvalid(path, "must be a map of strings")
    elif not isinstance(value, schema) or (schema is int and isinstance(value, bool)):
        raise FieldInvalid(path, f"must be a {_TYPE_NAMES[schema]}")


def check_selector(selector: dict[str, Any], path: str) -> None:
    """A ``metav1.LabelSelector``'s expressions: a key, an operator of ``In``, ``NotIn``,
    ``Exists``, ``DoesNotExist``, values exactly for ``In``/``NotIn``. Raises
    :class:`FieldInvalid`."""
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        if not expr.get("key"):
            raise FieldInvalid(f"{where}.key", "Required value", "FieldValueRequired")
        op = expr.get("operator")
        if op not in _OPERATORS:
            raise FieldInvalid(f"{where}.operator", f'Unsupported value: "{op}": supported '
                               'values: "In", "NotIn", "Exists", "DoesNotExist"',
                               "FieldValueNotSupported")
        if op in ("In", "NotIn") and not expr.get("values"):
            raise FieldInvalid(f"{where}.values", "Required value: must be specified when "
                               "`operator` is 'In' or 'NotIn'", "FieldValueRequired")
        if op in ("Exists", "DoesNotExist") and expr.get("values"):
            raise FieldInvalid(f"{where}.values", "Forbidden: may not be specified when "
                               "`operator` is 'Exists' or 'DoesNotExist'")


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether ``labels`` match a ``metav1.LabelSelector`` (``matchLabels`` and
    ``matchExpressions``, all of them; an empty selector matches everything, as
    ``LabelSelectorAsSelector`` makes it)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def selector_string(selector: dict[str, Any] | None) -> str:
    """A ``LabelSelector`` in the query-parameter syntax (``status.selector``, what
    ``metav1.FormatLabelSelector`` prints): ``k=v``, ``k in (a,b)``, ``k notin (a,b)``,
    ``k``, ``!k``, sorted by key, comma-separated."""
    selector = selector or {}
    terms = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator")
        values = ",".join(sorted(expr.get("values") or []))
        terms.append((key, {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                            "Exists": key, "DoesNotExist": f"!{key}"}.get(op, key)))
    return ",".join(t for _, t in sorted(terms))


@dataclass(frozen=True)
class MachineView:
    """What the scale-down order looks at: ``marked`` (annotation
    ``cluster.x-k8s.io/delete-machine``), ``failed``, ``provisioned`` (its host is)."""

    name: str
    created: dt.datetime
    provisioned: bool = False
    failed: bool = False
    marked: bool = False


def machines_to_delete(machines: Sequence[MachineView], count: int,
                       policy: str | None = None) -> list[str]:
    """The names of the ``count`` Machines a scale-down deletes: those marked for deletion
    first, then failed ones, then those not yet provisioned, then by ``policy``
    (``Newest`` first, the default; ``Oldest`` first; ``Random``), as Cluster API's
    deletion priorities with a host's cost in mind (a provisioned host is the last to
    give up)."""
    def rank(m: MachineView) -> int:
        return 0 if m.marked else 1 if m.failed else 2 if not m.provisioned else 3

    shuffled = list(machines)
    random.shuffle(shuffled)
    order = {m.name: i for i, m in enumerate(shuffled)}

    def key(m: MachineView) -> tuple[Any, ...]:
        if policy == "Random":
            return (rank(m), order[m.name])
        age = m.created.timestamp()
        return (rank(m), age if policy == "Oldest" else -age, m.name)

    return [m.name for m in sorted(machines, key=key)[:max(count, 0)]]


def provider_id(namespace: str, host: str, machine: str) -> str:
    """CAPM3's provider ID: ``metal3://<namespace>/<host>/<machine>``."""
    return f"metal3://{namespace}/{host}/{machine}"


def machine_phase(deleting: bool, bootstrap_ready: bool, host_state: str, failed: bool,
                  powered_on: bool) -> str:
    """Cluster API's Machine phase: ``Deleting``; ``Failed`` (the host failed to
    provision); ``Pending`` until the user data is ready; ``Provisioning`` until the host
    is ``provisioned``; then ``Running`` when powered on (standing for the nodeRef Cluster
    API waits for), else ``Provisioned``."""
    if deleting:
        return "Deleting"
    if failed:
        return "Failed"
    if not bootstrap_ready:
        return "Pending"
    if host_state != "provisioned":
        return "Provisioning"
    return "Running" if powered_on else "Provisioned"


def _owner(obj: KubeObject) -> dict[str, Any] | None:
    for ref in (obj.body or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == MACHINE_SET:
            return dict(ref)
    return None


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- manifests
def _check_ref(ref: Any, path: str) -> None:
    ref = ref or {}
    if not ref.get("name"):
        raise FieldInvalid(f"{path}.name", "Required value", "FieldValueRequired")
    if ref.get("kind") != M3MT:
        raise FieldInvalid(f"{path}.kind", f'Unsupported value: "{ref.get("kind") or ""}": '
                           f'supported values: "{M3MT}"', "FieldValueNotSupported")
    if ref.get("apiVersion") not in (None, f"{INFRA_GROUP}/{VERSION}"):
        raise FieldInvalid(f"{path}.apiVersion", f'Unsupported value: "{ref["apiVersion"]}": '
                           f'supported values: "{INFRA_GROUP}/{VERSION}"',
                           "FieldValueNotSupported")


def _check_machine_spec(spec: Any, path: str) -> None:
    check_fields(spec, MACHINE_SPEC, path)
    if not spec.get("clusterName"):
        raise FieldInvalid(f"{path}.clusterName", "Required value", "FieldValueRequired")
    _check_ref(spec.get("infrastructureRef"), f"{path}.infrastructureRef")


def check_machine_set(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A MachineSet's spec checked and defaulted as Cluster API's webhook does (replicas
    1; an empty selector selects ``cluster.x-k8s.io/set-name: <name>``, which the
    template's labels get; the template's clusterName is the set's). Raises
    :class:`FieldInvalid` naming the field."""
    check_fields(spec, MACHINE_SET_SPEC, "spec")
    spec = dict(spec)
    if not spec.get("clusterName"):
        raise FieldInvalid("spec.clusterName", "Required value", "FieldValueRequired")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec["replicas"] < 0:
        raise FieldInvalid("spec.replicas", f"Invalid value: {spec['replicas']}: must be "
                           "greater than or equal to 0")
    if spec.get("deletePolicy") not in (None, *DELETE_POLICIES):
        raise FieldInvalid("spec.deletePolicy", f'Unsupported value: "{spec["deletePolicy"]}"'
                           ': supported values: "Random", "Newest", "Oldest"',
                           "FieldValueNotSupported")
    template = {**(spec.get("template") or {})}
    meta = {**(template.get("metadata") or {})}
    labels = {**(meta.get("labels") or {})}
    selector = {**(spec.get("selector") or {})}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        selector = {"matchLabels": {SET_NAME_LABEL: name}}
        labels.setdefault(SET_NAME_LABEL, name)
    check_selector(selector, "spec.selector")
    if not selector_matches(selector, labels):
        raise FieldInvalid("spec.template.metadata.labels", f"Invalid value: {labels}: "
                           "`selector` does not match template `labels`")
    mspec = {**(template.get("spec") or {})}
    mspec.setdefault("clusterName", spec["clusterName"])
    _check_machine_spec(mspec, "spec.template.spec")
    spec.update(selector=selector,
                template={**template, "metadata": {**meta, "labels": labels}, "spec": mspec})
    return spec


def check_template(spec: Any) -> None:
    """A Metal3MachineTemplate's spec: ``template.spec.image.url`` (and ``checksum``, but
    for a ``live-iso``) required, CAPM3's checksum types and formats, a valid host
    selector, ``automatedCleaningMode`` ``metadata`` or ``disabled``. Raises
    :class:`FieldInvalid`."""
    check_fields(spec, M3MT_SPEC, "spec")
    m3 = (spec.get("template") or {}).get("spec") or {}
    image = m3.get("image") or {}
    where = "spec.template.spec.image"
    if not image.get("url"):
        raise FieldInvalid(f"{where}.url", "Required value", "FieldValueRequired")
    if not image.get("checksum") and image.get("format") != "live-iso":
        raise FieldInvalid(f"{where}.checksum", "Required value", "FieldValueRequired")
    for field, allowed in (("checksumType", _CHECKSUM_TYPES), ("format", _FORMATS)):
        if image.get(field) not in (None, *allowed):
            raise FieldInvalid(f"{where}.{field}", f'Unsupported value: "{image[field]}": '
                               "supported values: " + ", ".join(f'"{a}"' for a in allowed),
                               "FieldValueNotSupported")
    check_selector(m3.get("hostSelector") or {}, "spec.template.spec.hostSelector")
    if m3.get("automatedCleaningMode") not in (None, "metadata", "disabled"):
        raise FieldInvalid("spec.template.spec.automatedCleaningMode",
                           f'Unsupported value: "{m3["automatedCleaningMode"]}": supported '
                           'values: "metadata", "disabled"', "FieldValueNotSupported")


def _owner_refs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    refs = meta.get("ownerReferences") or []
    fields = {"apiVersion": str, "kind": str, "name": str, "uid": str, "controller": bool,
              "blockOwnerDeletion": bool}
    check_fields(refs, [fields], "metadata.ownerReferences")
    return [dict(r) for r in refs]


# ---------------------------------------------------------------- the controller
class MachineController:
    """MachineSets, Machines and Metal3MachineTemplates over ``store``: the writes of the
    API (checked, kicking the loop) and a level-based loop (:meth:`reconcile_once`,
    every ``interval`` s on a thread between :meth:`start` and :meth:`stop`)."""

    def __init__(self, store: KubeStore, interval: float = 0.5) -> None:
        self.store, self.db, self.interval = store, store.db, interval
        self.allocations = Allocations(store.c)
        self._loop = PassLoop("machine-reconcile", self.reconcile_once, interval,
                              "Machine reconcile pass",
                              fingerprint=lambda: store_fingerprint(self.db))

    # ------------------------------------------------------------ API writes
    def _namespace(self, namespace: str) -> None:
        try:
            kube_get(self.db, NAMESPACE, "", namespace)
        except NotFound:
            raise NotFound(f'namespaces "{namespace}" not found') from None

    def _written(self, obj: KubeObject) -> KubeObject:
        self._loop.kick()
        return obj

    def create_template(self, namespace: str, name: str, meta: dict[str, Any],
                        doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound` (namespace), ``AlreadyExists``."""
        check_name(name)
        spec = doc.get("spec") or {}
        check_template(spec)
        self._namespace(namespace)
        return self._written(kube_create(self.db, M3MT, namespace, name, **meta, body={
            "spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})}))

    def replace_template(self, namespace: str, name: str, rv: int | None,
                         meta: dict[str, Any], doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound`, ``StaleVersion``."""
        spec = doc.get("spec") or {}
        check_template(spec)
        return self._written(kube_update(self.db, M3MT, namespace, name, rv, **meta, body={
            "spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})}))

    def create_machine_set(self, namespace: str, name: str, meta: dict[str, Any],
                           doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound` (namespace), ``AlreadyExists``."""
        check_name(name)
        spec = check_machine_set(name, doc.get("spec") or {})
        self._namespace(namespace)
        labels = {**meta.get("labels", {}), CLUSTER_NAME_LABEL: spec["clusterName"]}
        return self._written(kube_create(
            self.db, MACHINE_SET, namespace, name, **{**meta, "labels": labels},
            body={"spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})}))

    def replace_machine_set(self, namespace: str, name: str, rv: int | None,
                            meta: dict[str, Any], doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound`, ``StaleVersion``."""
        spec = check_machine_set(name, doc.get("spec") or {})
        return self._written(kube_update(
            self.db, MACHINE_SET, namespace, name, rv, **meta,
            body={"spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})}))

    def scale(self, namespace: str, name: str, replicas: Any, rv: int | None) -> KubeObject:
        """Set a MachineSet's ``spec.replicas`` (the scale subresource; ``rv`` is a
        precondition). Raises :class:`FieldInvalid` (``spec.replicas`` not an integer
        >= 0), :class:`NotFound`, ``StaleVersion``."""
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise FieldInvalid("spec.replicas", f"Invalid value: {replicas}: must be greater "
                               "than or equal to 0")
        for _ in range(9):  # without a precondition, retried over the status writes
            obj = kube_get(self.db, MACHINE_SET, namespace, name)
            body = dict(obj.body or {})
            body["spec"] = {**body.get("spec", {}), "replicas": replicas}
            try:
                return self._written(kube_update(self.db, MACHINE_SET, namespace, name,
                                                 obj.resource_version if rv is None else rv,
                                                 body=body))
            except StaleVersion:
                if rv is not None:
                    raise
        raise Conflict(f'MachineSet "{name}" kept changing; try again')

    def create_machine(self, namespace: str, name: str, meta: dict[str, Any],
                       doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound` (namespace), ``AlreadyExists``."""
        check_name(name)
        spec = doc.get("spec") or {}
        _check_machine_spec(spec, "spec")
        self._namespace(namespace)
        finalizers = [*meta.get("finalizers", [])]
        if FINALIZER not in finalizers:
            finalizers.append(FINALIZER)
        return self._written(kube_create(
            self.db, MACHINE, namespace, name, **{**meta, "finalizers": finalizers},
            body={"spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})}))

    def replace_machine(self, namespace: str, name: str, rv: int | None,
                        meta: dict[str, Any], doc: dict[str, Any]) -> KubeObject:
        """Raises :class:`FieldInvalid`, :class:`NotFound`, ``StaleVersion``. A Machine
        being deleted whose last finalizer goes is deleted."""
        spec = doc.get("spec") or {}
        _check_machine_spec(spec, "spec")
        obj = kube_update(self.db, MACHINE, namespace, name, rv, **meta, body={
            "spec": spec, "ownerReferences": _owner_refs(doc.get("metadata") or {})})
        if obj.deleted_at is not None and not obj.finalizers:
            kube_delete(self.db, MACHINE, namespace, name)
        return self._written(obj)

    def delete(self, kind: str, namespace: str, name: str) -> KubeObject:
        """Delete an object; one with finalizers (a Machine) gets its deletionTimestamp
        and stays until the controller has released its host. A MachineSet's Machines go
        after it (the garbage collector's background deletion). Raises :class:`NotFound`."""
        obj = kube_get(self.db, kind, namespace, name)
        if obj.finalizers:
            if obj.deleted_at is None:
                obj = kube_update(self.db, kind, namespace, name, None, deleted_at=utcnow())
            return self._written(obj)
        return self._written(kube_delete(self.db, kind, namespace, name))

    # ------------------------------------------------------------ the loop
    def reconcile_once(self) -> int:
        """One pass: each MachineSet's Machines made or deleted to its replicas, orphaned
        Machines deleted, each Machine's host claimed or released, then the statuses.
        Returns how many MachineSets and Machines there are (0: the thread may sleep
        longer)."""
        sets = kube_list(self.db, MACHINE_SET)
        machines = kube_list(self.db, MACHINE)
        if not sets and not machines:
            return 0
        pass_ = _Pass(self, machines)
        set_uids = {s.uid for s in sets}
        for m in machines:  # the garbage collector: a Machine whose set is gone goes too
            owner = _owner(m)
            if owner and owner.get("uid") not in set_uids and m.deleted_at is None:
                self._guard(m, self.delete, MACHINE, m.namespace, m.name)
        for ms in sets:
            self._guard(ms, pass_.scale_set, ms)
        pass_.machines = kube_list(self.db, MACHINE)  # with the new ones
        for m in pass_.machines:
            self._guard(m, pass_.machine, m)
        for ms in sets:
            self._guard(ms, pass_.set_status, ms)
        return len(sets) + len(machines)

    @staticmethod
    def _guard(obj: KubeObject, fn: Any, *args: Any) -> None:
        """``fn(*args)``; a metalplane error (a conflict with a concurrent write, a locked
        node) waits for the next pass."""
        try:
            fn(*args)
        except MetalplaneError as exc:
            LOG.debug("%s %s/%s: retried on the next pass: %s", obj.kind, obj.namespace,
                      obj.name, exc.message)

    def start(self) -> None:
        """Start the controller's thread (a migrated store is needed)."""
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


class _Pass:
    """One reconcile pass: the Machines, hosts, nodes, templates and Secrets read once
    (a pass costs a few queries, not a few per Machine), the Machines' new statuses."""

    def __init__(self, ctl: MachineController, machines: list[KubeObject]) -> None:
        self.ctl, self.db, self.store = ctl, ctl.db, ctl.store
        self.machines = machines
        self.hosts = kube_list(self.db, BMH)
        self.nodes = {n.uuid: n for n in db_api.rows_where(self.db, Node)}
        self.statuses: dict[str, dict[str, Any]] = {}  # Machine uid -> its status
        self.taken: set[str] = set()  # nodes claimed in this pass
        self._templates = {(t.namespace, t.name): dict(
            ((t.body or {}).get("spec") or {}).get("template", {}).get("spec") or {})
            for t in kube_list(self.db, M3MT)}
        self._secrets = {(o.namespace, o.name) for o in kube_list(self.db, SECRET)}
        self._free: list[tuple[KubeObject, Node]] | None = None

    # ------------------------------------------------------------ MachineSets
    def owned(self, ms: KubeObject) -> list[KubeObject]:
        return [m for m in self.machines if (_owner(m) or {}).get("uid") == ms.uid]

    def scale_set(self, ms: KubeObject) -> None:
        spec = (ms.body or {}).get("spec") or {}
        live = [m for m in self.owned(ms) if m.deleted_at is None]
        want = int(spec.get("replicas", 1))
        for _ in range(want - len(live)):
            self.new_machine(ms, spec)
        if len(live) > want:
            views = [self.view(m) for m in live]
            for name in machines_to_delete(views, len(live) - want, spec.get("deletePolicy")):
                LOG.info("MachineSet %s/%s: scaling down, deleting Machine %s", ms.namespace,
                         ms.name, name)
                self.ctl.delete(MACHINE, ms.namespace, name)

    def view(self, m: KubeObject) -> MachineView:
        phase = (m.status or {}).get("phase", "")
        return MachineView(m.name, m.created_at, phase in ("Provisioned", "Running"),
                           phase == "Failed",
                           DELETE_MACHINE_ANNOTATION in (m.annotations or {}))

    def new_machine(self, ms: KubeObject, spec: dict[str, Any]) -> None:
        template = spec.get("template") or {}
        meta = template.get("metadata") or {}
        labels = {**(meta.get("labels") or {}), SET_NAME_LABEL: ms.name,
                  CLUSTER_NAME_LABEL: spec.get("clusterName", "")}
        owner = {"apiVersion": f"{CAPI_GROUP}/{VERSION}", "kind": MACHINE_SET,
                 "name": ms.name, "uid": ms.uid, "controller": True,
                 "blockOwnerDeletion": True}
        for _ in range(10):  # a generated name may be taken: draw again
            name = f"{ms.name[:58]}-{''.join(random.choices(_NAME_CHARS, k=5))}"
            try:
                kube_create(self.db, MACHINE, ms.namespace, name, labels=labels,
                            annotations=dict(meta.get("annotations") or {}),
                            finalizers=[FINALIZER],
                            body={"spec": dict(template.get("spec") or {}),
                                  "ownerReferences": [owner]})
            except Conflict:
                continue
            LOG.info("MachineSet %s/%s: Machine %s created", ms.namespace, ms.name, name)
            return

    def set_status(self, ms: KubeObject) -> None:
        spec = (ms.body or {}).get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") \
            or {}
        live = [m for m in self.owned(ms) if m.deleted_at is None]
        statuses = [self.statuses.get(m.uid) or m.status or {} for m in live]
        ready = [s for s in statuses if s.get("phase") == "Running"]
        now = utcnow()
        min_ready = int(spec.get("minReadySeconds") or 0)
        available = [s for s in ready if _age(s.get("lastUpdated"), now) >= min_ready]
        status = {"selector": selector_string(spec.get("selector")), "replicas": len(live),
                  "fullyLabeledReplicas": sum(1 for m in live if all(
                      (m.labels or {}).get(k) == v for k, v in template_labels.items())),
                  "readyReplicas": len(ready), "availableReplicas": len(available),
                  "observedGeneration": ms.generation}
        if status != (ms.status or {}):
            kube_update(self.db, MACHINE_SET, ms.namespace, ms.name, None, status=status)

    # ------------------------------------------------------------ Machines
    def host_of(self, m: KubeObject) -> KubeObject | None:
        if not m.node_uuid:
            return None
        for h in self.hosts:
            if h.node_uuid == m.node_uuid and h.namespace == m.namespace:
                return h
        return None

    def template(self, m: KubeObject) -> dict[str, Any] | None:
        ref = ((m.body or {}).get("spec") or {}).get("infrastructureRef") or {}
        return self._templates.get((ref.get("namespace") or m.namespace, ref.get("name", "")))

    def user_data(self, m: KubeObject, m3: dict[str, Any]) -> tuple[str | None, str]:
        """``(Secret name or None, why not ready)``: the template's ``userData``, else
        the Machine's ``bootstrap.dataSecretName``; ready when the Secret exists."""
        name = (m3.get("userData") or {}).get("name") or \
            (((m.body or {}).get("spec") or {}).get("bootstrap") or {}).get("dataSecretName")
        if not name:
            return None, ("no user data: set spec.bootstrap.dataSecretName or the "
                          "Metal3MachineTemplate's spec.template.spec.userData")
        if (m.namespace, name) not in self._secrets:
            return None, f'user data Secret "{name}" not found'
        return name, ""

    def machine(self, m: KubeObject) -> None:
        if m.deleted_at is not None:
            self.release(m)
            return
        if FINALIZER not in (m.finalizers or []):  # a Machine made by hand gets it now
            m = kube_update(self.db, MACHINE, m.namespace, m.name, None,
                            finalizers=[*(m.finalizers or []), FINALIZER])
        m3 = self.template(m)
        conditions: dict[str, str] = {}
        secret, why = self.user_data(m, m3 or {})
        if secret is None:
            conditions["BootstrapReady"] = why
        if m3 is None:
            ref = ((m.body or {}).get("spec") or {}).get("infrastructureRef") or {}
            conditions["InfrastructureReady"] = (f'{M3MT} "{ref.get("name", "")}" not found')
        elif secret is not None:
            if not m.node_uuid:
                m = self.claim(m, m3) or m
                if not m.node_uuid:
                    conditions["InfrastructureReady"] = (
                        "no available BareMetalHost in namespace "
                        f'"{m.namespace}" matches the hostSelector')
            if m.node_uuid:
                self.write_host(m, m3, secret)
        self.write_status(m, secret is not None, conditions)

    def candidates(self, m: KubeObject, m3: dict[str, Any]) -> list[Node]:
        """The nodes of the hosts a Machine may claim (CAPM3's chooseHost): in its
        namespace, ``available`` and ``OK``, no consumerRef, matching ``hostSelector``,
        their node free (no allocation, not in maintenance)."""
        if self._free is None:
            self._free = []
            for h in self.hosts:
                node = self.nodes.get(h.node_uuid or "")
                spec = (h.body or {}).get("spec") or {}
                if (node is None or spec.get("consumerRef") or node.allocation_id is not None
                        or node.instance_uuid or node.maintenance):
                    continue
                st = host_status(node, spec, h.namespace)
                if st["provisioning"]["state"] == "available" and \
                        st["operationalStatus"] == "OK":
                    self._free.append((h, node))
        return [node for h, node in self._free
                if h.namespace == m.namespace and node.uuid not in self.taken
                and selector_matches(m3.get("hostSelector"), h.labels or {})]

    def claim(self, m: KubeObject, m3: dict[str, Any]) -> KubeObject | None:
        """Claim a host's node for ``m`` through an allocation whose UUID is the
        Machine's uid (one found from an interrupted pass is taken up); the node is
        recorded on the Machine. Returns the updated Machine, None if nothing was free."""
        try:
            alloc = db_api.get_allocation(self.db, m.uid)
        except NotFound:
            alloc = None
        if alloc is None:
            by_class: dict[str | None, list[str]] = {}
            for node in self.candidates(m, m3):
                by_class.setdefault(node.resource_class, []).append(node.uuid)
            for resource_class, uuids in by_class.items():
                alloc = self.ctl.allocations.claim(
                    resource_class, uuids, m.uid,
                    {"machine": f"{m.namespace}/{m.name}"})
                if alloc.state == ACTIVE:
                    break
                db_api.destroy_allocation(self.db, alloc)  # its uuid is the Machine's
                alloc = None
        if alloc is None or alloc.node_id is None:
            return None
        node = db_api.node_by_id(self.db, alloc.node_id)
        self.taken.add(node.uuid)
        LOG.info("Machine %s/%s: claimed node %s (allocation %s)", m.namespace, m.name,
                 node.uuid, alloc.uuid)
        return kube_update(self.db, MACHINE, m.namespace, m.name, None, node_uuid=node.uuid)

    def consumer_ref(self, m: KubeObject) -> dict[str, Any]:
        return {"apiVersion": f"{CAPI_GROUP}/{VERSION}", "kind": MACHINE, "name": m.name,
                "namespace": m.namespace}

    def _ours(self, host: KubeObject, m: KubeObject) -> bool:
        ref = ((host.body or {}).get("spec") or {}).get("consumerRef") or {}
        return ref.get("kind") == MACHINE and ref.get("name") == m.name and \
            ref.get("namespace", host.namespace) == m.namespace

    def write_host(self, m: KubeObject, m3: dict[str, Any], secret: str) -> None:
        """The claimed host's spec: consumerRef, image, userData, online (and CAPM3's
        automatedCleaningMode), written through the store unless already so."""
        host = self.host_of(m)
        if host is None:
            return
        spec = dict((host.body or {}).get("spec") or {})
        if spec.get("consumerRef") and not self._ours(host, m):
            return  # someone else's now: the status says so
        image = {k: v for k, v in (m3.get("image") or {}).items() if v}
        new = {**spec, "consumerRef": self.consumer_ref(m), "image": image,
               "userData": {"name": secret, "namespace": m.namespace}, "online": True}
        if m3.get("automatedCleaningMode"):
            new["automatedCleaningMode"] = m3["automatedCleaningMode"]
        if new != spec:
            self.put_host(host, new)
            LOG.info("Machine %s/%s: BareMetalHost %s consumed (image %s)", m.namespace,
                     m.name, host.name, image.get("url"))

    def put_host(self, host: KubeObject, spec: dict[str, Any]) -> None:
        self.store.replace_host(host.namespace, host.name, host.resource_version,
                                {"labels": host.labels or {},
                                 "annotations": host.annotations or {},
                                 "finalizers": host.finalizers or []}, spec)

    def write_status(self, m: KubeObject, bootstrap_ready: bool,
                     reasons: dict[str, str]) -> None:
        host = self.host_of(m)
        node = self.nodes.get(m.node_uuid or "") if host is not None else None
        st = host_status(node, (host.body or {}).get("spec") or {}, m.namespace) \
            if node is not None and host is not None else {}
        state = (st.get("provisioning") or {}).get("state", "")
        failed = st.get("errorType") == "provisioning error"
        failure = st.get("errorMessage") or "its BareMetalHost failed to provision"
        if m.node_uuid and host is None:  # claimed, then the host was deleted under it
            failed, failure = True, "the BareMetalHost it consumed was deleted"
        if host is not None and not self._ours(host, m) and \
                ((host.body or {}).get("spec") or {}).get("consumerRef"):
            reasons["InfrastructureReady"] = f'BareMetalHost "{host.name}" is consumed by ' \
                "another object"
        phase = machine_phase(False, bootstrap_ready, state, failed,
                              bool(st.get("poweredOn")))
        infra_ready = state == "provisioned" and host is not None
        if host is not None and not infra_ready and "InfrastructureReady" not in reasons:
            reasons["InfrastructureReady"] = f'BareMetalHost "{host.name}" is {state or "?"}'
        old = m.status or {}
        status: dict[str, Any] = {
            "phase": phase, "bootstrapReady": bootstrap_ready,
            "infrastructureReady": infra_ready, "observedGeneration": m.generation,
            "lastUpdated": old.get("lastUpdated") if old.get("phase") == phase
            else _ts(utcnow())}
        addresses = [{"type": "InternalIP", "address": nic["ip"]}
                     for nic in (st.get("hardware") or {}).get("nics") or [] if nic.get("ip")]
        if addresses:
            status["addresses"] = addresses
        if failed:
            status.update(failureReason="CreateError", failureMessage=failure)
        status["conditions"] = _conditions(old.get("conditions") or [], reasons,
                                           ("BootstrapReady", "InfrastructureReady"))
        if status != old:
            m = kube_update(self.db, MACHINE, m.namespace, m.name, None, status=status)
        self.statuses[m.uid] = status
        spec = (m.body or {}).get("spec") or {}
        if infra_ready and host is not None and not spec.get("providerID"):
            body = {**(m.body or {}), "spec": {**spec, "providerID": provider_id(
                m.namespace, host.name, m.name)}}  # CAPI's machine controller writes it
            kube_update(self.db, MACHINE, m.namespace, m.name, m.resource_version, body=body)

    def release(self, m: KubeObject) -> None:
        """A deleted Machine: its host's image, user data and power cleared (the host's
        reconcile deprovisions it); once the host's node rests, the allocation and the
        consumerRef go, then the finalizer, and the Machine with it."""
        status = {**(m.status or {}), "phase": "Deleting"}
        if (m.status or {}).get("phase") != "Deleting":
            status["lastUpdated"] = _ts(utcnow())
            m = kube_update(self.db, MACHINE, m.namespace, m.name, None, status=status)
        self.statuses[m.uid] = status
        host = self.host_of(m)
        if host is not None and self._ours(host, m):
            spec = dict((host.body or {}).get("spec") or {})
            if spec.get("image") or spec.get("userData") or spec.get("online"):
                spec = {k: v for k, v in spec.items() if k not in ("image", "userData")}
                self.put_host(host, {**spec, "online": False})
                LOG.info("Machine %s/%s: releasing BareMetalHost %s", m.namespace, m.name,
                         host.name)
                return
            node = self.nodes.get(host.node_uuid or "")
            if node is not None and (node.provision_state not in _RESTED
                                     or node.target_provision_state or node.reservation):
                return  # deprovisioning: wait
            self.free_allocation(m)
            self.put_host(host, {k: v for k, v in spec.items() if k != "consumerRef"})
            LOG.info("Machine %s/%s: BareMetalHost %s released", m.namespace, m.name,
                     host.name)
            return
        self.free_allocation(m)
        finalizers = [f for f in m.finalizers or [] if f != FINALIZER]
        if finalizers:
            kube_update(self.db, MACHINE, m.namespace, m.name, None, finalizers=finalizers)
        else:
            kube_delete(self.db, MACHINE, m.namespace, m.name)
            LOG.info("Machine %s/%s deleted", m.namespace, m.name)

    def free_allocation(self, m: KubeObject) -> None:
        with contextlib.suppress(NotFound):  # none made, or the tear down deleted it
            self.ctl.allocations.delete(m.uid)


# Cluster API's fallback reasons of a condition that is not true yet
_WAITING = {"BootstrapReady": "WaitingForDataSecret",
            "InfrastructureReady": "WaitingForInfrastructure"}


def _conditions(old: list[dict[str, Any]], reasons: dict[str, str],
                types: tuple[str, ...]) -> list[dict[str, Any]]:
    """Cluster API conditions (``type``, ``status``, ``reason``, ``message``,
    ``severity``, ``lastTransitionTime``): ``Ready`` and each of ``types``, False with the
    message of ``reasons`` where one is given; a transition time kept while the status
    holds."""
    before = {c.get("type"): c for c in old}
    now = _ts(utcnow())
    out = []
    for kind in ("Ready", *types):
        message = reasons.get(kind) or (next(iter(reasons.values()), "") if kind == "Ready"
                                        else "")
        cond: dict[str, Any] = {"type": kind, "status": "False" if message else "True"}
        if message:
            reason = _WAITING.get(kind) or next(
                (_WAITING[k] for k in types if reasons.get(k)), "")
            cond.update(reason=reason, message=message, severity="Info")
        prev = before.get(kind) or {}
        cond["lastTransitionTime"] = prev.get("lastTransitionTime", now) \
            if prev.get("status") == cond["status"] else now
        out.append(cond)
    return out


def _age(when: str | None, now: dt.datetime) -> float:
    if not when:
        return 0.0
    try:
        then = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return 0.0
    return (now - then).total_seconds()
