"""Kubernetes' protobuf request bodies (``application/vnd.kubernetes.protobuf``) of the
built-in kinds metalplane serves, Namespace and Secret, decoded into the JSON shape the API
handles; and the run-time building of protobuf message classes from a field table, which
:mod:`metalplane.api.k8s_openapi_pb` uses too.

kubectl's typed verbs (``kubectl create namespace``, ``kubectl create secret generic``)
send their object in protobuf: the 4 bytes ``k8s\\x00`` then a ``runtime.Unknown``
(``typeMeta`` {apiVersion, kind}, ``raw`` the object's own message, ``contentEncoding``,
``contentType``). Sources: k8s.io/apimachinery ``pkg/runtime/serializer/protobuf``
(the envelope), ``pkg/runtime/generated.proto`` (Unknown, TypeMeta),
``pkg/apis/meta/v1/generated.proto`` (ObjectMeta, OwnerReference, Time) and k8s.io/api
``core/v1/generated.proto`` (Secret, Namespace): only the messages and fields needed are
declared, with those files' numbers. Decoding only: answers stay JSON (kubectl accepts it).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

__all__ = ["CONTENT_TYPE", "KINDS", "BodyError", "build_messages", "decode_object"]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _FDP.TYPE_STRING, "bool": _FDP.TYPE_BOOL, "bytes": _FDP.TYPE_BYTES,
            "int64": _FDP.TYPE_INT64, "int32": _FDP.TYPE_INT32}


def build_messages(package: str, syntax: str, table: dict[str, list[tuple[str, int, str]]],
                   oneofs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Message classes from ``table``: ``{message: [(field, number, type)]}`` where a type
    is a scalar (``string``, ``bool``, ``bytes``, ``int64``, ``int32``), another message of
    the table, ``map<K,V>`` of scalars, and a leading ``*`` makes it repeated. The fields
    of a message named in ``oneofs`` form one ``oneof`` (gnostic's ``oneof oneof``).
    ``syntax`` is ``proto2`` or ``proto3``. Raises ``TypeError`` (from protobuf) for a
    table that does not describe valid messages."""
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package.replace('.', '/')}.proto",
                                             package=package, syntax=syntax)
    for name, fields in table.items():
        msg = fdp.message_type.add(name=name)
        if name in oneofs:
            msg.oneof_decl.add(name="oneof")
        for field, number, kind in fields:
            f = msg.field.add(name=field, number=number, json_name=field,
                              label=_FDP.LABEL_OPTIONAL)
            if kind.startswith("map<"):
                key, value = kind[4:-1].split(",")
                entry = msg.nested_type.add(name=field[:1].upper() + field[1:] + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_SCALARS[key.strip()],
                                label=_FDP.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=_SCALARS[value.strip()],
                                label=_FDP.LABEL_OPTIONAL)
                f.label, f.type = _FDP.LABEL_REPEATED, _FDP.TYPE_MESSAGE
                f.type_name = f".{package}.{name}.{entry.name}"
                continue
            if kind.startswith("*"):
                f.label, kind = _FDP.LABEL_REPEATED, kind[1:]
            if kind in _SCALARS:
                f.type = _SCALARS[kind]
            else:
                f.type, f.type_name = _FDP.TYPE_MESSAGE, f".{package}.{kind}"
            if name in oneofs:
                f.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"{package}.{name}")) for name in table}


_CORE: dict[str, list[tuple[str, int, str]]] = {
    "Unknown": [("typeMeta", 1, "TypeMeta"), ("raw", 2, "bytes"),
                ("contentEncoding", 3, "string"), ("contentType", 4, "string")],
    "TypeMeta": [("apiVersion", 1, "string"), ("kind", 2, "string")],  # runtime's
    "Time": [("seconds", 1, "int64"), ("nanos", 2, "int32")],
    "OwnerReference": [("kind", 1, "string"), ("name", 3, "string"), ("uid", 4, "string"),
                       ("apiVersion", 5, "string"), ("controller", 6, "bool"),
                       ("blockOwnerDeletion", 7, "bool")],
    "ObjectMeta": [("name", 1, "string"), ("generateName", 2, "string"),
                   ("namespace", 3, "string"), ("selfLink", 4, "string"),
                   ("uid", 5, "string"), ("resourceVersion", 6, "string"),
                   ("generation", 7, "int64"), ("creationTimestamp", 8, "Time"),
                   ("deletionTimestamp", 9, "Time"),
                   ("deletionGracePeriodSeconds", 10, "int64"),
                   ("labels", 11, "map<string,string>"),
                   ("annotations", 12, "map<string,string>"),
                   ("ownerReferences", 13, "*OwnerReference"),
                   ("finalizers", 14, "*string")],
    "Secret": [("metadata", 1, "ObjectMeta"), ("data", 2, "map<string,bytes>"),
               ("type", 3, "string"), ("stringData", 4, "map<string,string>"),
               ("immutable", 5, "bool")],
    "NamespaceSpec": [("finalizers", 1, "*string")],
    "NamespaceStatus": [("phase", 1, "string")],
    "Namespace": [("metadata", 1, "ObjectMeta"), ("spec", 2, "NamespaceSpec"),
                  ("status", 3, "NamespaceStatus")],
}
KINDS = ("Namespace", "Secret")  # the kinds whose protobuf bodies are decoded (core v1)


class BodyError(ValueError):
    """A protobuf body that is not served: ``code`` 415 (another kind, an encoding) or 400
    (it does not parse), ``message`` saying which."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@functools.cache
def _classes() -> dict[str, Any]:
    return build_messages("metalplane.k8s", "proto2", _CORE)


def _times(doc: Any) -> Any:
    """``Time`` messages ({seconds, nanos}) as RFC 3339 strings; an empty one (Go's zero
    time, which gogo-protobuf always writes) removed."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            if key in ("creationTimestamp", "deletionTimestamp") and isinstance(value, dict):
                if value.get("seconds"):
                    when = dt.datetime.fromtimestamp(int(value["seconds"]), dt.UTC)
                    out[key] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                continue
            out[key] = _times(value)
        return out
    if isinstance(doc, list):
        return [_times(v) for v in doc]
    return doc


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form (``apiVersion``, ``kind``, ``metadata``, ...; ``data`` values base64)
    of a protobuf request body of a core v1 Namespace or Secret. Raises
    :class:`BodyError`: 400 without the ``k8s\\x00`` prefix or when it does not parse,
    415 for another kind or a ``contentEncoding``."""
    if not body.startswith(MAGIC):
        raise BodyError(400, "the protobuf body does not start with the k8s\\x00 prefix")
    c = _classes()
    unknown = c["Unknown"]()
    try:
        unknown.ParseFromString(body[len(MAGIC):])
    except DecodeError as exc:
        raise BodyError(400, f"the protobuf body does not parse: {exc}") from None
    api_version, kind = unknown.typeMeta.apiVersion, unknown.typeMeta.kind
    if api_version != "v1" or kind not in KINDS:
        raise BodyError(415, f"protobuf bodies are served for v1 {', '.join(KINDS)} only "
                        f"(not {api_version} {kind}): send application/json")
    if unknown.contentEncoding:
        raise BodyError(415, f"contentEncoding {unknown.contentEncoding!r} is not served")
    obj = c[kind]()
    try:
        obj.ParseFromString(unknown.raw)
    except DecodeError as exc:
        raise BodyError(400, f"the protobuf {kind} does not parse: {exc}") from None
    doc = _times(MessageToDict(obj, preserving_proto_field_name=True))
    return {"apiVersion": api_version, "kind": kind, **doc}
