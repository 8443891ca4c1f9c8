"""The protobuf form of ``/openapi/v2``: an OpenAPI (Swagger 2.0) document, as a dict, encoded
as gnostic's ``openapi.v2.Document``, which is what kubectl (client-go's discovery
``OpenAPISchema``) asks for first and decodes.

Source: google/gnostic ``openapiv2/OpenAPIv2.proto`` (message and field numbers) and its
compiler's mapping of Swagger onto those messages (maps as repeated ``Named*`` pairs,
``type`` as a ``TypeItem``, ``$ref`` as ``_ref``, vendor extensions as ``NamedAny`` whose
``Any.yaml`` holds the value as YAML, which kube-openapi reads back). Only the messages and
fields metalplane's document uses are declared; the message classes are built at run time
from that table with the ``protobuf`` package (:func:`k8s_protobuf.build_messages`: no
generated code, no protoc). This module
encodes; it neither builds the document (:mod:`metalplane.api.k8s_openapi`) nor serves it.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml

from metalplane.api.k8s_protobuf import build_messages

__all__ = ["ACCEPTED", "CONTENT_TYPE", "decode_document", "encode_document"]

# what kubectl asks for ("@", which Go's mime parser refuses in an answer) and what is
# answered, as kube-openapi's handler does
ACCEPTED = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
CONTENT_TYPE = ACCEPTED[1]

# message -> [(field, number, type)]; a type that starts with "*" is repeated; lower-case
# types are scalars, capitalised ones messages of this table. Numbers are gnostic's.
_MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "Document": [("swagger", 1, "string"), ("info", 2, "Info"), ("consumes", 6, "*string"),
                 ("produces", 7, "*string"), ("paths", 8, "Paths"),
                 ("definitions", 9, "Definitions")],
    "Info": [("title", 1, "string"), ("version", 2, "string"), ("description", 3, "string")],
    "Paths": [("path", 2, "*NamedPathItem")],
    "NamedPathItem": [("name", 1, "string"), ("value", 2, "PathItem")],
    "PathItem": [("get", 2, "Operation"), ("put", 3, "Operation"), ("post", 4, "Operation"),
                 ("delete", 5, "Operation"), ("patch", 8, "Operation"),
                 ("parameters", 9, "*ParametersItem")],
    "Operation": [("tags", 1, "*string"), ("description", 3, "string"),
                  ("operation_id", 5, "string"), ("produces", 6, "*string"),
                  ("consumes", 7, "*string"), ("parameters", 8, "*ParametersItem"),
                  ("responses", 9, "Responses"), ("schemes", 10, "*string"),
                  ("vendor_extension", 13, "*NamedAny")],
    "ParametersItem": [("parameter", 1, "Parameter")],
    "Parameter": [("body_parameter", 1, "BodyParameter"),
                  ("non_body_parameter", 2, "NonBodyParameter")],
    "BodyParameter": [("description", 1, "string"), ("name", 2, "string"), ("in", 3, "string"),
                      ("required", 4, "bool"), ("schema", 5, "Schema")],
    "NonBodyParameter": [("query_parameter_sub_schema", 3, "QueryParameterSubSchema"),
                         ("path_parameter_sub_schema", 4, "PathParameterSubSchema")],
    "QueryParameterSubSchema": [("required", 1, "bool"), ("in", 2, "string"),
                                ("description", 3, "string"), ("name", 4, "string"),
                                ("allow_empty_value", 5, "bool"), ("type", 6, "string")],
    "PathParameterSubSchema": [("required", 1, "bool"), ("in", 2, "string"),
                               ("description", 3, "string"), ("name", 4, "string"),
                               ("type", 5, "string")],
    "Responses": [("response_code", 1, "*NamedResponseValue")],
    "NamedResponseValue": [("name", 1, "string"), ("value", 2, "ResponseValue")],
    "ResponseValue": [("response", 1, "Response")],
    "Response": [("description", 1, "string"), ("schema", 2, "SchemaItem")],
    "SchemaItem": [("schema", 1, "Schema")],
    "Schema": [("_ref", 1, "string"), ("format", 2, "string"), ("title", 3, "string"),
               ("description", 4, "string"), ("required", 19, "*string"),
               ("enum", 20, "*Any"), ("additional_properties", 21, "AdditionalPropertiesItem"),
               ("type", 22, "TypeItem"), ("items", 23, "ItemsItem"),
               ("properties", 25, "Properties"), ("vendor_extension", 31, "*NamedAny")],
    "AdditionalPropertiesItem": [("schema", 1, "Schema"), ("boolean", 2, "bool")],
    "TypeItem": [("value", 1, "*string")],
    "ItemsItem": [("schema", 1, "*Schema")],
    "Properties": [("additional_properties", 1, "*NamedSchema")],
    "Definitions": [("additional_properties", 1, "*NamedSchema")],
    "NamedSchema": [("name", 1, "string"), ("value", 2, "Schema")],
    "NamedAny": [("name", 1, "string"), ("value", 2, "Any")],
    "Any": [("yaml", 2, "string")],
}
_ONEOF = {"AdditionalPropertiesItem", "ParametersItem", "Parameter", "NonBodyParameter",
          "ResponseValue", "SchemaItem"}  # gnostic's "oneof oneof { ... }" messages


@functools.cache
def _classes() -> dict[str, Any]:
    """The message classes of :data:`_MESSAGES`, built once."""
    return build_messages("openapi.v2", "proto3", _MESSAGES, frozenset(_ONEOF))


def _any(value: Any) -> Any:
    return _classes()["Any"](yaml=yaml.safe_dump(value, default_flow_style=False))


def _named_any(name: str, value: Any) -> Any:
    return _classes()["NamedAny"](name=name, value=_any(value))


def _extensions(doc: dict[str, Any]) -> list[Any]:
    return [_named_any(k, v) for k, v in doc.items() if k.startswith("x-")]


def _schema(doc: dict[str, Any]) -> Any:
    """A JSON Schema (Swagger's subset) as ``Schema``."""
    c = _classes()
    out = c["Schema"]()
    if "$ref" in doc:
        out._ref = doc["$ref"]
    for key in ("format", "title", "description"):
        if key in doc:
            setattr(out, key, doc[key])
    out.required.extend(doc.get("required", []))
    out.enum.extend(_any(v) for v in doc.get("enum", []))
    if "type" in doc:
        types = doc["type"] if isinstance(doc["type"], list) else [doc["type"]]
        out.type.value.extend(types)
    extra = doc.get("additionalProperties")
    if isinstance(extra, bool):
        out.additional_properties.boolean = extra
    elif isinstance(extra, dict):
        out.additional_properties.schema.CopyFrom(_schema(extra))
    if "items" in doc:
        items = doc["items"] if isinstance(doc["items"], list) else [doc["items"]]
        out.items.schema.extend(_schema(i) for i in items)
    if "properties" in doc:
        out.properties.additional_properties.extend(
            c["NamedSchema"](name=k, value=_schema(v)) for k, v in doc["properties"].items())
    out.vendor_extension.extend(_extensions(doc))
    return out


def _parameter(doc: dict[str, Any]) -> Any:
    c = _classes()
    item = c["ParametersItem"]()
    if doc["in"] == "body":
        body = item.parameter.body_parameter
        body.name, body.required = doc["name"], bool(doc.get("required"))
        setattr(body, "in", "body")
        body.description = doc.get("description", "")
        body.schema.CopyFrom(_schema(doc["schema"]))
        return item
    sub = (item.parameter.non_body_parameter.query_parameter_sub_schema if doc["in"] == "query"
           else item.parameter.non_body_parameter.path_parameter_sub_schema)
    if doc["in"] not in ("query", "path"):
        raise ValueError(f"parameter {doc['name']!r}: 'in: {doc['in']}' is not encoded")
    sub.name, sub.type = doc["name"], doc.get("type", "string")
    setattr(sub, "in", doc["in"])
    sub.required = bool(doc.get("required"))
    sub.description = doc.get("description", "")
    return item


def _operation(doc: dict[str, Any]) -> Any:
    c = _classes()
    op = c["Operation"](description=doc.get("description", ""),
                        operation_id=doc.get("operationId", ""))
    op.tags.extend(doc.get("tags", []))
    op.consumes.extend(doc.get("consumes", []))
    op.produces.extend(doc.get("produces", []))
    op.schemes.extend(doc.get("schemes", []))
    op.parameters.extend(_parameter(p) for p in doc.get("parameters", []))
    for code, response in doc.get("responses", {}).items():
        value = c["ResponseValue"]()
        value.response.description = response.get("description", "")
        if "schema" in response:
            value.response.schema.schema.CopyFrom(_schema(response["schema"]))
        op.responses.response_code.add(name=str(code), value=value)
    op.vendor_extension.extend(_extensions(doc))
    return op


def encode_document(doc: dict[str, Any]) -> bytes:
    """``doc`` (a Swagger 2.0 document: ``swagger``, ``info``, ``paths`` with get, put, post,
    delete and patch operations whose parameters are in body, query or path,
    ``definitions``) as the bytes of gnostic's ``openapi.v2.Document``. Raises
    ``ValueError`` for a parameter location it does not encode (header, formData)."""
    c = _classes()
    out = c["Document"](swagger=doc.get("swagger", "2.0"))
    info = doc.get("info", {})
    out.info.title, out.info.version = info.get("title", ""), info.get("version", "")
    out.consumes.extend(doc.get("consumes", []))
    out.produces.extend(doc.get("produces", []))
    for path, item in doc.get("paths", {}).items():
        value = c["PathItem"]()
        for verb in ("get", "put", "post", "delete", "patch"):
            if verb in item:
                getattr(value, verb).CopyFrom(_operation(item[verb]))
        value.parameters.extend(_parameter(p) for p in item.get("parameters", []))
        out.paths.path.add(name=path, value=value)
    out.definitions.additional_properties.extend(
        c["NamedSchema"](name=k, value=_schema(v)) for k, v in
        doc.get("definitions", {}).items())
    return bytes(out.SerializeToString(deterministic=True))


def decode_document(data: bytes) -> Any:
    """The ``openapi.v2.Document`` message of ``data`` (fields this module declares; the
    others are kept as unknown fields). For tests and tools."""
    doc = _classes()["Document"]()
    doc.ParseFromString(data)
    return doc
