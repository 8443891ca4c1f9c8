"""The kinds the Kubernetes-style API serves, in ONE table (:data:`KINDS`), and what is
built from it: the ``/openapi/v2`` document kubectl validates against, and the schema walk
behind ``fieldValidation=Strict`` and strategic merge patch.

A kind is one :class:`KindInfo` entry: its group(s), version, resource, scope, the verbs
served and the schema of its fields. From it come the definition
(``x-kubernetes-group-version-kind``, a list, one per group serving it), the paths and
operations (each with ``x-kubernetes-action`` and ``x-kubernetes-group-version-kind``) as
kube-apiserver publishes them, and the ``fieldValidation`` query parameter on PATCH (and
POST, PUT), by which kubectl (since 1.25) learns that the server validates fields itself
and skips its client-side validation. Adding a kind is adding one entry.

Sources: kube-apiserver's published ``/openapi/v2`` (k8s.io/kube-openapi ``builder``,
k8s.io/apiserver ``endpoints/installer.go``: operation ids, actions, parameters);
``x-kubernetes-patch-strategy``/``x-kubernetes-patch-merge-key`` of k8s.io/api
``core/v1/types.go`` and apimachinery ``meta/v1/types.go``; kubectl's
``query_param_verifier.go`` (which operation it reads); Metal3's
``baremetalhost_types.go`` for BareMetalHost's fields. This module builds documents; it
serves nothing and holds no rules about objects' values (those are
:mod:`metalplane.conductor.hosts`').
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from metalplane import __version__
from metalplane.conductor.hosts import BMH, NAMESPACE, SECRET, SPEC_FIELDS
from metalplane.conductor.machines import (
    CAPI_GROUP,
    INFRA_GROUP,
    M3MT,
    M3MT_SPEC,
    MACHINE,
    MACHINE_SET,
    MACHINE_SET_SPEC,
    MACHINE_SPEC,
    MAP,
)

__all__ = ["KINDS", "META", "KindInfo", "definitions", "kind_info", "openapi_v2",
           "resolve", "unknown_fields"]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_REF = "#/definitions/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _str(description: str, **more: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **more}


def _map(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "additionalProperties": {"type": "string"}}


@dataclass(frozen=True)
class KindInfo:
    """One served kind. ``groups``: the first is its own, the others serve the same objects
    (an alias); ``""`` is the core group. ``fields``: the schema ``properties`` beyond
    ``apiVersion``, ``kind`` and ``metadata``. ``strategic``: whether strategic merge patch
    is accepted (built-in kinds; kube-apiserver answers 415 for custom resources)."""

    kind: str
    plural: str
    groups: tuple[str, ...]
    version: str
    namespaced: bool
    definition: str
    description: str
    fields: dict[str, Any]
    strategic: bool = False
    verbs: tuple[str, ...] = ("create", "get", "list", "update", "patch", "delete")
    list_all: bool = True  # also listed across namespaces (/apis/G/V/PLURAL)
    required: tuple[str, ...] = field(default=())

    def api_version(self, group: str) -> str:
        return f"{group}/{self.version}" if group else self.version


# ---------------------------------------------------------------- BareMetalHost's fields
_BMH_DOC = {  # Metal3's field documentation, shortened (baremetalhost_types.go)
    "online": "Should the server be online?",
    "bmc": "How do we connect to the BMC (Baseboard Management Controller) on the host?",
    "bmc.address": "Address holds the URL for accessing the controller on the network: "
                   "ipmi://host:port, redfish://host/redfish/v1/Systems/ID, "
                   "redfish+http://..., redfish+https://...",
    "bmc.credentialsName": "The name of the secret containing the BMC credentials "
                           "(username and password), in the host's namespace.",
    "bmc.disableCertificateVerification": "DisableCertificateVerification disables "
                                          "verification of server certificates when using "
                                          "HTTPS to connect to the BMC.",
    "bootMACAddress": "The MAC address of the NIC used for provisioning the host.",
    "image": "Image holds the details of the image to be provisioned.",
    "image.url": "URL is a location of an image to deploy.",
    "image.checksum": "Checksum is the checksum for the image.",
    "image.checksumType": "ChecksumType is the checksum algorithm for the image: md5, "
                          "sha256, sha512.",
    "image.format": "Format contains the format of the image (raw, qcow2, ...).",
    "userData": "UserData holds the reference to the Secret containing the user data to be "
                "passed to the host before it boots.",
    "networkData": "NetworkData holds the reference to the Secret containing network "
                   "configuration (e.g. content of network_data.json) which is passed to "
                   "the Config Drive.",
    "metaData": "MetaData holds the reference to the Secret containing host metadata (e.g. "
                "meta_data.json) which is passed to the Config Drive.",
    "consumerRef": "ConsumerRef can be used to store information about something that is "
                   "using a host. When it is not empty, the host is considered \"in use\".",
    "externallyProvisioned": "ExternallyProvisioned means something else is managing the "
                             "image running on the host and the operator should only manage "
                             "the power status and hardware inventory inspection.",
    "rootDeviceHints": "Provide guidance about how to choose the device for the image being "
                       "provisioned.",
    "automatedCleaningMode": "When set to disabled, automated cleaning will be avoided "
                             "during provisioning and deprovisioning: metadata or disabled.",
    "description": "Description is a human-entered text used to help identify the host.",
}
_JSON_TYPES = {bool: "boolean", str: "string", int: "integer"}


def _from_fields(fields: dict[str, Any], docs: dict[str, str], prefix: str = ""
                 ) -> dict[str, Any]:
    """Schema ``properties`` from a ``{name: type | {nested}}`` table (hosts' SPEC_FIELDS),
    described by ``docs`` (keyed by dotted path)."""
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        path = f"{prefix}{name}"
        if isinstance(kind, dict):
            prop: dict[str, Any] = {"type": "object",
                                    "properties": _from_fields(kind, docs, path + ".")}
        else:
            prop = {"type": _JSON_TYPES[kind]}
            if kind is int:
                prop["format"] = "int64"
        if path in docs:
            prop["description"] = docs[path]
        out[name] = prop
    if prefix == "":
        out["automatedCleaningMode"]["enum"] = ["metadata", "disabled"]
    return out


_BMH_STATUS: dict[str, Any] = {
    "type": "object",
    "description": "BareMetalHostStatus defines the observed state of BareMetalHost; "
                   "written by metalplane, computed from the node.",
    "properties": {
        "operationalStatus": _str("OperationalStatus holds the status of the host: OK, "
                                  "discovered, error, delayed, detached, servicing"),
        "errorType": _str("ErrorType indicates the type of failure encountered when the "
                          "OperationalStatus is OperationalStatusError"),
        "errorMessage": _str("The last error message reported by the provisioning "
                             "subsystem"),
        "errorCount": {"type": "integer", "description": "ErrorCount records how many times "
                       "the host has encoutered an error since the last successful "
                       "operation"},
        "lastUpdated": _str("LastUpdated identifies when this status was last observed.",
                            format="date-time"),
        "hardwareProfile": _str("The name of the profile matching the hardware details."),
        "hardware": {"type": "object", "description": "The hardware discovered to exist on "
                     "the host (filled by inspection).",
                     "properties": {
                         "cpu": {"type": "object", "properties": {
                             "arch": {"type": "string"}, "model": {"type": "string"},
                             "clockMegahertz": {"type": "number"},
                             "count": {"type": "integer"},
                             "flags": {"type": "array", "items": {"type": "string"}}}},
                         "ramMebibytes": {"type": "integer"},
                         "nics": {"type": "array", "items": {"type": "object"}},
                         "storage": {"type": "array", "items": {"type": "object"}},
                         "systemVendor": {"type": "object"},
                         "firmware": {"type": "object"},
                         "hostname": {"type": "string"}}},
        "provisioning": {"type": "object", "description": "Information tracked by the "
                         "provisioner.", "properties": {
                             "state": _str("An indicator for what the provisioner is doing "
                                           "with the host."),
                             "ID": _str("The hosts's ID from the underlying provisioning "
                                        "tool (the node's UUID)"),
                             "image": {"type": "object", "description": "Image holds the "
                                       "details of the last image successfully provisioned "
                                       "to the host.",
                                       "properties": _from_fields(
                                           SPEC_FIELDS["image"], _BMH_DOC, "image.")},
                             "rootDeviceHints": {"type": "object"},
                             "bootMode": {"type": "string"}}},
        "goodCredentials": {"type": "object", "description": "The last credentials we were "
                            "able to validate as working.", "properties": {
                                "credentials": {"type": "object", "properties": {
                                    "name": {"type": "string"},
                                    "namespace": {"type": "string"}}},
                                "credentialsVersion": {"type": "string"}}},
        "triedCredentials": {"type": "object"},
        "poweredOn": {"type": "boolean", "description": "Whether or not the host is "
                      "currently powered on"},
        "operationHistory": {"type": "object"},
    },
}

# ---------------------------------------------------------------- Cluster API's fields
def _capi(kind: Any, description: str = "") -> dict[str, Any]:
    """A schema from the field tables of :mod:`metalplane.conductor.machines` (an object
    of fields, ``[item]``, ``MAP``, ``str``/``int``/``bool``)."""
    if isinstance(kind, dict):
        schema: dict[str, Any] = {"type": "object", "properties": {
            k: _capi(v) for k, v in kind.items()}}
    elif isinstance(kind, list):
        schema = {"type": "array", "items": _capi(kind[0])}
    elif kind == MAP:
        schema = {"type": "object", "additionalProperties": {"type": "string"}}
    else:
        schema = {"type": _JSON_TYPES[kind], **({"format": "int32"} if kind is int else {})}
    if description:
        schema["description"] = description
    return schema


_CONDITIONS = {"type": "array", "description": "Conditions defines current service state.",
               "items": {"type": "object", "properties": {
                   k: {"type": "string"} for k in ("type", "status", "severity", "reason",
                                                   "message", "lastTransitionTime")}}}
_MS_STATUS = {"type": "object", "description": "MachineSetStatus defines the observed state "
              "of MachineSet (written by metalplane).", "properties": {
                  "selector": _str("The selector in the query-parameter syntax."),
                  **{k: {"type": "integer", "format": "int32"} for k in (
                      "replicas", "fullyLabeledReplicas", "readyReplicas",
                      "availableReplicas")},
                  "observedGeneration": {"type": "integer", "format": "int64"},
                  "failureReason": {"type": "string"}, "failureMessage": {"type": "string"},
                  "conditions": _CONDITIONS}}
_MACHINE_STATUS = {"type": "object", "description": "MachineStatus defines the observed "
                   "state of Machine (written by metalplane).", "properties": {
                       "phase": _str("Phase represents the current phase of machine "
                                     "actuation: Pending, Provisioning, Provisioned, "
                                     "Running, Deleting, Failed."),
                       "bootstrapReady": {"type": "boolean"},
                       "infrastructureReady": {"type": "boolean"},
                       "addresses": {"type": "array", "items": {"type": "object",
                                                                "properties": {
                                                                    "type": {"type": "string"},
                                                                    "address": {
                                                                        "type": "string"}}}},
                       "nodeRef": {"type": "object"},
                       "lastUpdated": _str("When the phase last changed.", format="date-time"),
                       "failureReason": {"type": "string"},
                       "failureMessage": {"type": "string"},
                       "observedGeneration": {"type": "integer", "format": "int64"},
                       "conditions": _CONDITIONS}}

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind=NAMESPACE, plural="namespaces", groups=("",), version="v1", namespaced=False,
        definition="io.k8s.api.core.v1.Namespace", strategic=True,
        verbs=("create", "get", "list", "update", "patch", "delete"),
        description="Namespace provides a scope for Names.",
        fields={
            "spec": {"type": "object", "description": "NamespaceSpec describes the "
                     "attributes on a Namespace.", "properties": {"finalizers": {
                         "type": "array", "items": {"type": "string"},
                         "description": "Finalizers is an opaque list of values that must "
                                        "be empty to permanently remove object from "
                                        "storage."}}},
            "status": {"type": "object", "description": "NamespaceStatus is information "
                       "about the current status of a Namespace.", "properties": {
                           "phase": _str("Phase is the current lifecycle phase of the "
                                         "namespace: Active, Terminating")}},
        }),
    KindInfo(
        kind=SECRET, plural="secrets", groups=("",), version="v1", namespaced=True,
        definition="io.k8s.api.core.v1.Secret", strategic=True,
        description="Secret holds secret data of a certain type. The total bytes of the "
                    "values in the Data field must be less than MaxSecretSize bytes.",
        fields={
            "data": {"type": "object", "description": "Data contains the secret data. Each "
                     "key must consist of alphanumeric characters, '-', '_' or '.'. The "
                     "serialized form of the secret data is a base64 encoded string.",
                     "additionalProperties": {"type": "string", "format": "byte"}},
            "stringData": _map("stringData allows specifying non-binary secret data in "
                               "string form. It is provided as a write-only input field "
                               "for convenience: merged into the data field on write."),
            "type": _str("Used to facilitate programmatic handling of secret data."),
        }),
    KindInfo(
        kind=BMH, plural="baremetalhosts", groups=("metal3.io", "metalkube.org"),
        version="v1alpha1", namespaced=True, definition="io.metal3.v1alpha1.BareMetalHost",
        description="BareMetalHost is the Schema for the baremetalhosts API (Metal3): one "
                    "physical server, a view of one metalplane node.",
        fields={
            "spec": {"type": "object", "description": "BareMetalHostSpec defines the "
                     "desired state of BareMetalHost.",
                     "properties": _from_fields(SPEC_FIELDS, _BMH_DOC)},
            "status": _BMH_STATUS,
        }),
    KindInfo(
        kind=MACHINE_SET, plural="machinesets", groups=(CAPI_GROUP,), version="v1beta1",
        namespaced=True, definition="io.x-k8s.cluster.v1beta1.MachineSet",
        description="MachineSet is the Schema for the machinesets API (Cluster API): it "
                    "keeps replicas Machines, each claiming a BareMetalHost.",
        fields={"spec": _capi(MACHINE_SET_SPEC, "MachineSetSpec defines the desired state "
                              "of MachineSet."),
                "status": _MS_STATUS}),
    KindInfo(
        kind=MACHINE, plural="machines", groups=(CAPI_GROUP,), version="v1beta1",
        namespaced=True, definition="io.x-k8s.cluster.v1beta1.Machine",
        description="Machine is the Schema for the machines API (Cluster API): one "
                    "BareMetalHost claimed through an allocation and provisioned.",
        fields={"spec": _capi(MACHINE_SPEC, "MachineSpec defines the desired state of "
                              "Machine."),
                "status": _MACHINE_STATUS}),
    KindInfo(
        kind=M3MT, plural="metal3machinetemplates", groups=(INFRA_GROUP,), version="v1beta1",
        namespaced=True,
        definition="io.x-k8s.cluster.infrastructure.v1beta1.Metal3MachineTemplate",
        description="Metal3MachineTemplate is the Schema for the metal3machinetemplates API "
                    "(CAPM3): the image, user data and host selector of Machines.",
        fields={"spec": _capi(M3MT_SPEC, "Metal3MachineTemplateSpec defines the desired "
                              "state of Metal3MachineTemplate.")}),
)


def kind_info(kind: str) -> KindInfo:
    """The :class:`KindInfo` of ``kind``. Raises ``KeyError``."""
    for info in KINDS:
        if info.kind == kind:
            return info
    raise KeyError(kind)


# ---------------------------------------------------------------- definitions
def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


_COMMON: dict[str, Any] = {
    META + "Time": {"type": "string", "format": "date-time",
                    "description": "Time is a wrapper around time.Time which supports "
                                   "correct marshaling to YAML and JSON (RFC 3339)."},
    META + "Patch": {"type": "object", "description": "Patch is provided to give a concrete "
                     "name and type to the Kubernetes PATCH request body."},
    META + "FieldsV1": {"type": "object", "description": "FieldsV1 stores a set of fields "
                        "in a data structure like a Trie, in JSON format."},
    META + "ListMeta": {"type": "object", "description": "ListMeta describes metadata that "
                        "synthetic resources must have.", "properties": {
                            "continue": {"type": "string"},
                            "remainingItemCount": {"type": "integer", "format": "int64"},
                            "resourceVersion": {"type": "string"},
                            "selfLink": {"type": "string"}}},
    META + "OwnerReference": {
        "type": "object", "description": "OwnerReference contains enough information to "
        "let you identify an owning object.",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "name": {"type": "string"}, "uid": {"type": "string"},
                       "controller": {"type": "boolean"},
                       "blockOwnerDeletion": {"type": "boolean"}},
        "x-kubernetes-map-type": "atomic"},
    META + "ManagedFieldsEntry": {
        "type": "object", "description": "ManagedFieldsEntry is a workflow-id, a FieldSet "
        "and the group version of the resource that the fieldset applies to.",
        "properties": {"apiVersion": {"type": "string"}, "fieldsType": {"type": "string"},
                       "fieldsV1": _ref(META + "FieldsV1"), "manager": {"type": "string"},
                       "operation": {"type": "string"}, "subresource": {"type": "string"},
                       "time": _ref(META + "Time")}},
    META + "ObjectMeta": {
        "type": "object", "description": "ObjectMeta is metadata that all persisted "
        "resources must have, which includes all objects users must create.",
        "properties": {
            "annotations": _map("Annotations is an unstructured key value map stored with "
                                "a resource."),
            "creationTimestamp": _ref(META + "Time"),
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "deletionTimestamp": _ref(META + "Time"),
            "finalizers": {"type": "array", "items": {"type": "string"},
                           "description": "Must be empty before the object is deleted "
                                          "from the registry.",
                           "x-kubernetes-list-type": "set",
                           "x-kubernetes-patch-strategy": "merge"},
            "generateName": _str("GenerateName is an optional prefix, used by the server, "
                                 "to generate a unique name ONLY IF the Name field has not "
                                 "been provided."),
            "generation": {"type": "integer", "format": "int64", "description":
                           "A sequence number representing a specific generation of the "
                           "desired state. Populated by the system. Read-only."},
            "labels": _map("Map of string keys and values that can be used to organize and "
                           "categorize (scope and select) objects."),
            "managedFields": {"type": "array", "items": _ref(META + "ManagedFieldsEntry"),
                              "x-kubernetes-list-type": "atomic"},
            "name": _str("Name must be unique within a namespace."),
            "namespace": _str("Namespace defines the space within which each name must be "
                              "unique."),
            "ownerReferences": {"type": "array", "items": _ref(META + "OwnerReference"),
                                "x-kubernetes-list-map-keys": ["uid"],
                                "x-kubernetes-list-type": "map",
                                "x-kubernetes-patch-merge-key": "uid",
                                "x-kubernetes-patch-strategy": "merge"},
            "resourceVersion": _str("An opaque value that represents the internal version "
                                    "of this object. Populated by the system. Read-only."),
            "selfLink": _str("Deprecated: selfLink is a legacy read-only field."),
            "uid": _str("UID is the unique in time and space value for this object. "
                        "Populated by the system. Read-only."),
        }},
    META + "StatusCause": {"type": "object", "properties": {
        "field": {"type": "string"}, "message": {"type": "string"},
        "reason": {"type": "string"}}},
    META + "StatusDetails": {"type": "object", "properties": {
        "causes": {"type": "array", "items": _ref(META + "StatusCause")},
        "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
        "retryAfterSeconds": {"type": "integer"}, "uid": {"type": "string"}}},
    META + "Status": {"type": "object", "description": "Status is a return value for calls "
                      "that don't return other objects.", "properties": {
                          "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                          "code": {"type": "integer"},
                          "details": _ref(META + "StatusDetails"),
                          "message": {"type": "string"},
                          "metadata": _ref(META + "ListMeta"),
                          "reason": {"type": "string"}, "status": {"type": "string"}},
                      "x-kubernetes-group-version-kind": [_gvk("", "v1", "Status")]},
}


def _kind_schema(info: KindInfo) -> dict[str, Any]:
    return {"type": "object", "description": info.description, "properties": {
        "apiVersion": _str("APIVersion defines the versioned schema of this representation "
                           "of an object."),
        "kind": _str("Kind is a string value representing the REST resource this object "
                     "represents."),
        "metadata": {**_ref(META + "ObjectMeta"), "description": "Standard object's "
                     "metadata."},
        **info.fields},
        **({"required": list(info.required)} if info.required else {}),
        "x-kubernetes-group-version-kind": [_gvk(g, info.version, info.kind)
                                            for g in info.groups]}


@functools.cache
def definitions() -> dict[str, Any]:
    """Every named schema of the document (``definitions``), by name."""
    out = dict(_COMMON)
    for info in KINDS:
        out[info.definition] = _kind_schema(info)
        out[info.definition + "List"] = {
            "type": "object", "description": f"{info.kind}List is a list of {info.kind}.",
            "required": ["items"], "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "items": {"type": "array", "items": _ref(info.definition)},
                "metadata": _ref(META + "ListMeta")},
            "x-kubernetes-group-version-kind": [_gvk(g, info.version, info.kind + "List")
                                                for g in info.groups]}
    return out


def resolve(schema: dict[str, Any] | None) -> dict[str, Any]:
    """``schema`` with a ``$ref`` to :func:`definitions` followed ({} for None)."""
    seen = 0
    while schema and "$ref" in schema and seen < 16:
        schema = definitions().get(str(schema["$ref"]).removeprefix(_REF), {})
        seen += 1
    return schema or {}


# ---------------------------------------------------------------- paths
def _query(name: str, description: str, type_: str = "string") -> dict[str, Any]:
    return {"in": "query", "name": name, "type": type_, "uniqueItems": True,
            "description": description}


_PRETTY = _query("pretty", "If 'true', then the output is pretty printed.")
_FIELD_MANAGER = _query("fieldManager", "fieldManager is a name associated with the actor "
                        "or entity that is making these changes.")
_FIELD_VALIDATION = _query(
    "fieldValidation", "fieldValidation instructs the server on how to handle objects in "
    "the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values: "
    "Ignore (unknown fields are still refused by metalplane's own checks, 422), Warn (the "
    "same), Strict (400 BadRequest, 'strict decoding error: unknown field ...', naming "
    "every unknown field).")
_LIST_PARAMS = [
    _query("labelSelector", "A selector to restrict the list of returned objects by their "
           "labels."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by their "
           "fields (metadata.name, metadata.namespace)."),
]
_CONSUMES_PATCH = ["application/json-patch+json", "application/merge-patch+json"]
_PRODUCES = ["application/json", "application/yaml"]


def _op_id(verb: str, group: str, version: str, kind: str, namespaced: bool,
           all_namespaces: bool = False) -> str:
    """kube-apiserver's operation id: ``patchCoreV1NamespacedSecret``,
    ``listMetal3IoV1alpha1BareMetalHostForAllNamespaces``."""
    words = (group or "core").replace("-", ".").split(".")
    prefix = "".join(w[:1].upper() + w[1:] for w in words) + version[:1].upper() + version[1:]
    scope = "Namespaced" if namespaced and not all_namespaces else ""
    suffix = "ForAllNamespaces" if all_namespaces else ""
    return f"{verb}{prefix}{scope}{kind}{suffix}"


def _tag(group: str, version: str) -> str:
    if not group:
        return f"core_{version}"
    return "".join(w[:1].upper() + w[1:] if i else w
                   for i, w in enumerate(group.split("."))) + f"_{version}"


def _operation(info: KindInfo, group: str, verb: str, action: str, response: str,
               params: list[dict[str, Any]], all_namespaces: bool = False,
               body: str | None = None) -> dict[str, Any]:
    namespaced = info.namespaced
    words = {"list": "list", "create": "create", "get": "read", "update": "replace",
             "patch": "patch", "delete": "delete"}
    op: dict[str, Any] = {
        "description": {"list": f"list or watch objects of kind {info.kind}",
                        "create": f"create a {info.kind}", "get": f"read the specified "
                        f"{info.kind}", "update": f"replace the specified {info.kind}",
                        "patch": f"partially update the specified {info.kind}",
                        "delete": f"delete a {info.kind}"}[verb],
        "operationId": _op_id(words[verb], group, info.version, info.kind, namespaced,
                              all_namespaces),
        "tags": [_tag(group, info.version)],
        "consumes": (["*/*"] if verb != "patch" else
                     [*_CONSUMES_PATCH, *(["application/strategic-merge-patch+json"]
                                          if info.strategic else [])]),
        "produces": _PRODUCES,
        "schemes": ["https"],
        "parameters": ([{"in": "body", "name": "body", "required": True,
                         "schema": _ref(body)}] if body else []) + params,
        "responses": {"200": {"description": "OK", "schema": _ref(response)},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        # the kind itself, on list operations too (as kube-apiserver publishes it)
        "x-kubernetes-group-version-kind": _gvk(group, info.version, info.kind),
    }
    if verb == "create":
        op["responses"]["201"] = {"description": "Created", "schema": _ref(response)}
    return op


def _paths(info: KindInfo, group: str) -> dict[str, Any]:
    base = "/api/v1" if not group else f"/apis/{group}/{info.version}"
    collection = (f"{base}/namespaces/{{namespace}}/{info.plural}" if info.namespaced
                  else f"{base}/{info.plural}")
    path_params = ([{"in": "path", "name": "namespace", "type": "string", "required": True,
                     "uniqueItems": True, "description": "object name and auth scope, "
                     "such as for teams and projects"}] if info.namespaced else [])
    name_param = {"in": "path", "name": "name", "type": "string", "required": True,
                  "uniqueItems": True, "description": f"name of the {info.kind}"}
    write = [_FIELD_MANAGER, _FIELD_VALIDATION]
    out: dict[str, Any] = {}
    coll: dict[str, Any] = {"parameters": [*path_params, _PRETTY]}
    if "list" in info.verbs:
        coll["get"] = _operation(info, group, "list", "list", info.definition + "List",
                                 _LIST_PARAMS)
    if "create" in info.verbs:
        coll["post"] = _operation(info, group, "create", "post", info.definition, write,
                                  body=info.definition)
    out[collection] = coll
    one: dict[str, Any] = {"parameters": [name_param, *path_params, _PRETTY]}
    for verb, method, action, body in (("get", "get", "get", None),
                                       ("update", "put", "put", info.definition),
                                       ("patch", "patch", "patch", META + "Patch"),
                                       ("delete", "delete", "delete", None)):
        if verb in info.verbs:
            one[method] = _operation(info, group, verb, action, info.definition,
                                     write if body else [], body=body)
    out[f"{collection}/{{name}}"] = one
    if info.namespaced and info.list_all and "list" in info.verbs:
        out[f"{base}/{info.plural}"] = {
            "parameters": [_PRETTY],
            "get": _operation(info, group, "list", "list", info.definition + "List",
                              _LIST_PARAMS, all_namespaces=True)}
    return out


@functools.cache
def openapi_v2() -> dict[str, Any]:
    """The Swagger 2.0 document of every kind in :data:`KINDS` (what kube-apiserver serves
    at ``/openapi/v2``): ``{"swagger": "2.0", "info", "paths", "definitions"}``. Built once;
    callers must not change it."""
    paths: dict[str, Any] = {}
    for info in KINDS:
        for group in info.groups:
            paths.update(_paths(info, group))
    return {"swagger": "2.0",
            "info": {"title": "metalplane", "version": f"v1.32.0+metalplane.{__version__}"},
            "paths": dict(sorted(paths.items())), "definitions": definitions()}


# ---------------------------------------------------------------- strict decoding
def unknown_fields(kind: str, doc: Any) -> list[str]:
    """The paths of the fields of ``doc`` (a manifest of ``kind``) that its schema does not
    know, as kube-apiserver's strict decoding names them (``spec.foo``,
    ``metadata.bar``, ``spec.items[0].baz``), in document order. ``status`` is not walked:
    a write's status is dropped (the status subresource is metalplane's)."""
    out: list[str] = []
    top = {k: v for k, v in (doc.items() if isinstance(doc, dict) else []) if k != "status"}
    _walk(_kind_schema(kind_info(kind)), top, "", out)
    return out


def _walk(schema: dict[str, Any], value: Any, path: str, out: list[str]) -> None:
    schema = resolve(schema)
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if props is not None and key in props:
                _walk(props[key], item, where, out)
            elif isinstance(extra, dict):
                _walk(extra, item, where, out)
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", out)
