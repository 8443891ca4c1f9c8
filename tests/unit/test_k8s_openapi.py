"""The /openapi/v2 document built from the table of kinds (metalplane.api.k8s_openapi) and
its gnostic protobuf form (metalplane.api.k8s_openapi_pb): what kubectl reads from it."""

from __future__ import annotations

from typing import Any

import yaml

from metalplane.api.k8s_openapi import KINDS, definitions, openapi_v2, unknown_fields
from metalplane.api.k8s_openapi_pb import decode_document, encode_document


def test_every_kind_and_alias_has_a_definition_and_paths_with_its_gvk() -> None:
    doc = openapi_v2()
    for info in KINDS:
        gvks = doc["definitions"][info.definition]["x-kubernetes-group-version-kind"]
        assert gvks == [{"group": g, "kind": info.kind, "version": info.version}
                        for g in info.groups]
        for group in info.groups:
            patches = [op["patch"] for op in doc["paths"].values() if "patch" in op
                       and op["patch"]["x-kubernetes-group-version-kind"] ==
                       {"group": group, "kind": info.kind, "version": info.version}]
            assert len(patches) == 1, (info.kind, group)
            names = [p["name"] for p in patches[0]["parameters"]]
            assert "fieldValidation" in names and "dryRun" not in names
            assert ("application/strategic-merge-patch+json" in patches[0]["consumes"]) \
                == info.strategic
    secret = doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]
    assert secret["patch"]["operationId"] == "patchCoreV1NamespacedSecret"
    assert secret["patch"]["x-kubernetes-action"] == "patch"
    hosts = doc["paths"]["/apis/metal3.io/v1alpha1/baremetalhosts"]
    assert hosts["get"]["operationId"] == \
        "listMetal3IoV1alpha1BareMetalHostForAllNamespaces"
    assert "/apis/metalkube.org/v1alpha1/namespaces/{namespace}/baremetalhosts" in doc["paths"]


def test_the_protobuf_form_carries_what_kubectl_reads() -> None:
    doc = decode_document(encode_document(openapi_v2()))
    assert doc.swagger == "2.0"
    named = {d.name: d.value for d in doc.definitions.additional_properties}
    assert set(named) == set(definitions())
    host = named["io.metal3.v1alpha1.BareMetalHost"]
    ext = {e.name: yaml.safe_load(e.value.yaml) for e in host.vendor_extension}
    assert ext["x-kubernetes-group-version-kind"] == [
        {"group": "metal3.io", "kind": "BareMetalHost", "version": "v1alpha1"},
        {"group": "metalkube.org", "kind": "BareMetalHost", "version": "v1alpha1"}]
    props = {p.name: p.value for p in host.properties.additional_properties}
    assert props["metadata"]._ref == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    spec = {p.name: p.value for p in props["spec"].properties.additional_properties}
    assert list(spec["online"].type.value) == ["boolean"]
    assert "BMC" in spec["bmc"].description
    secret = {p.name: p.value for p in named["io.k8s.api.core.v1.Secret"]
              .properties.additional_properties}
    assert secret["data"].additional_properties.schema.format == "byte"
    # kubectl's query_param_verifier: the PATCH operation with the GVK, and its parameters
    found: dict[str, Any] = {}
    for path in doc.paths.path:
        if not path.value.HasField("patch"):
            continue
        gvk = [yaml.safe_load(e.value.yaml) for e in path.value.patch.vendor_extension
               if e.name == "x-kubernetes-group-version-kind"]
        params = [p.parameter.non_body_parameter.query_parameter_sub_schema.name
                  for p in path.value.patch.parameters]
        found[path.name] = (gvk, params)
    gvk, params = found["/apis/metalkube.org/v1alpha1/namespaces/{namespace}/baremetalhosts/"
                        "{name}"]
    assert gvk == [{"group": "metalkube.org", "kind": "BareMetalHost", "version": "v1alpha1"}]
    assert "fieldValidation" in params


def test_unknown_fields_are_named_as_strict_decoding_names_them() -> None:
    manifest = {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                "metadata": {"name": "h", "labels": {"any": "key"}, "bogus": 1},
                "spec": {"online": True, "bmc": {"address": "ipmi://x", "adress": "y"},
                         "foo": {"bar": 1}},
                "status": {"anything": "is dropped"}, "extra": 1}
    assert unknown_fields("BareMetalHost", manifest) == [
        "metadata.bogus", "spec.bmc.adress", "spec.foo", "extra"]
    assert unknown_fields("Secret", {"metadata": {"ownerReferences": [
        {"uid": "u", "name": "n", "kind": "k", "apiVersion": "v1", "nope": 1}]},
        "data": {"a": "Yg=="}, "stringData": {"b": "c"}, "type": "Opaque"}) == [
        "metadata.ownerReferences[0].nope"]
    assert unknown_fields("Namespace", {"metadata": {"name": "n"},
                                        "spec": {"finalizers": ["kubernetes"]}}) == []
