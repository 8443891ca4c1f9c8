"""Patch types of the Kubernetes-style API (metalplane.api.k8s_patch): JSON merge patch,
JSON patch, and strategic merge patch with its directives, against the served schemas
(Secret, Namespace, ObjectMeta) and a small one for ``$retainKeys``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from metalplane.api.k8s_openapi import definitions, resolve
from metalplane.api.k8s_patch import (
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

SECRET = definitions()["io.k8s.api.core.v1.Secret"]
NAMESPACE = definitions()["io.k8s.api.core.v1.Namespace"]


def smp(original: dict[str, Any], patch: Any, schema: dict[str, Any] = SECRET
        ) -> dict[str, Any]:
    return strategic_merge_patch(original, patch, schema, resolve)


def owner(uid: str, name: str = "x") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}


def test_merge_patch_is_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    assert merge_patch(target, {"a": {"b": None, "e": 3}, "d": [3]}) == \
        {"a": {"c": 2, "e": 3}, "d": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "d": [1, 2]}  # not changed
    assert merge_patch(target, [1]) == [1]


def test_json_patch_applies_and_names_the_failing_operation() -> None:
    doc = {"spec": {"online": True}, "data": {"password": "c2VjcmV0"}}
    assert json_patch(doc, [{"op": "replace", "path": "/spec/online", "value": False},
                            {"op": "add", "path": "/spec/description", "value": "r3"}]) == \
        {"spec": {"online": False, "description": "r3"}, "data": {"password": "c2VjcmV0"}}
    with pytest.raises(PatchError) as err:
        json_patch(doc, [{"op": "replace", "path": "/spec/nope/x", "value": 1}])
    assert err.value.code == 422 and "/spec/nope/x" in err.value.message
    assert "c2VjcmV0" not in err.value.message  # never the document (a Secret's data)
    with pytest.raises(PatchError) as err:
        json_patch(doc, [{"op": "test", "path": "/data/password", "value": "x"}])
    assert err.value.code == 422 and "c2VjcmV0" not in err.value.message
    for bad in ({"op": "add"}, [{"op": "frobnicate", "path": "/a"}], [1]):
        with pytest.raises(PatchError) as err:
            json_patch(doc, bad)
        assert err.value.code == 400


def test_maps_merge_and_null_deletes_a_key() -> None:
    original = {"type": "Opaque", "data": {"username": "dQ==", "password": "cA=="}}
    out = smp(original, {"data": {"password": None, "token": "dA=="}})
    assert out == {"type": "Opaque", "data": {"username": "dQ==", "token": "dA=="}}
    assert original["data"]["password"] == "cA=="  # the input is not changed


def test_patch_replace_and_delete_directives_on_a_map() -> None:
    original = {"type": "Opaque", "data": {"username": "dQ==", "password": "cA=="}}
    assert smp(original, {"data": {"$patch": "replace", "token": "dA=="}})["data"] == \
        {"token": "dA=="}
    assert smp(original, {"data": {"$patch": "delete"}})["data"] == {}
    for bad in ("merge", "frobnicate"):
        with pytest.raises(PatchError) as err:
            smp(original, {"data": {"$patch": bad, "x": "eA=="}})
        assert err.value.code == 400 and bad in err.value.message
        assert "dQ==" not in err.value.message


def test_a_list_without_a_strategy_is_replaced() -> None:
    original = {"spec": {"finalizers": ["kubernetes", "other"]}}
    assert smp(original, {"spec": {"finalizers": ["mine"]}}, NAMESPACE) == \
        {"spec": {"finalizers": ["mine"]}}


def test_finalizers_merge_as_a_set_in_apimachinery_order() -> None:
    original = {"metadata": {"name": "s", "finalizers": ["a/1", "b/2"]}}
    out = smp(original, {"metadata": {"finalizers": ["c/3", "a/1"]}})
    # patch items in the patch's order, the server-only ones where they were
    assert out["metadata"]["finalizers"] == ["c/3", "a/1", "b/2"]
    out = smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/1"],
                                      "finalizers": ["e/5"]}})
    assert out["metadata"]["finalizers"] == ["e/5", "b/2"]
    out = smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/2"]}})
    assert out["metadata"]["finalizers"] == ["a/1"]
    # deleting from a list that is not there changes nothing
    assert smp({"metadata": {}}, {"metadata": {
        "$deleteFromPrimitiveList/finalizers": ["x"]}}) == {"metadata": {}}
    with pytest.raises(PatchError):
        smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": "a/1"}})


def test_set_element_order_orders_the_merged_list() -> None:
    original = {"metadata": {"finalizers": ["a/1", "b/2", "c/3"]}}
    out = smp(original, {"metadata": {"$setElementOrder/finalizers": ["c/3", "b/2", "a/1"]}})
    assert out["metadata"]["finalizers"] == ["c/3", "b/2", "a/1"]
    out = smp(original, {"metadata": {"$setElementOrder/finalizers": ["b/2", "d/4", "a/1"],
                                      "finalizers": ["d/4"]}})
    assert out["metadata"]["finalizers"] == ["b/2", "d/4", "a/1", "c/3"]
    with pytest.raises(PatchError) as err:
        smp(original, {"metadata": {"$setElementOrder/finalizers": "a/1"}})
    assert err.value.code == 400


def test_owner_references_merge_by_uid_with_delete_and_replace_elements() -> None:
    original = {"metadata": {"ownerReferences": [owner("u1", "one"), owner("u2", "two")]}}
    out = smp(original, {"metadata": {"ownerReferences": [
        {"uid": "u2", "name": "renamed"}, owner("u3", "three")]}})
    assert [(o["uid"], o["name"]) for o in out["metadata"]["ownerReferences"]] == [
        ("u1", "one"), ("u2", "renamed"), ("u3", "three")]
    out = smp(original, {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}]}})
    assert [o["uid"] for o in out["metadata"]["ownerReferences"]] == ["u2"]
    out = smp(original, {"metadata": {"ownerReferences": [{"$patch": "replace"},
                                                          owner("u9")]}})
    assert out["metadata"]["ownerReferences"] == [owner("u9")]
    for bad, code in (([{"name": "no-uid"}], 400), ([{"$patch": "merge", "uid": "u1"}], 400),
                      ([{"$patch": "delete"}], 400), ([["a"]], 422)):
        with pytest.raises(PatchError) as err:
            smp(original, {"metadata": {"ownerReferences": bad}})
        assert err.value.code == code, bad


def test_retain_keys_clears_the_keys_not_listed() -> None:
    schema = {"type": "object", "properties": {"strategy": {
        "type": "object", "x-kubernetes-patch-strategy": "retainKeys",
        "properties": {"type": {"type": "string"}, "rollingUpdate": {"type": "object"}}}}}
    original = {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}
    out = smp(original, {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}, schema)
    assert out == {"strategy": {"type": "Recreate"}}
    with pytest.raises(PatchError) as err:  # a patched key must be retained
        smp(original, {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}, schema)
    assert err.value.code == 400
    with pytest.raises(PatchError):
        smp(original, {"strategy": {"$retainKeys": "type"}}, schema)


def test_a_patch_that_is_not_an_object_is_refused() -> None:
    for bad in ([], "x", None):
        with pytest.raises(PatchError) as err:
            smp({}, bad)
        assert err.value.code == 400


def test_the_original_is_never_changed() -> None:
    original = {"metadata": {"finalizers": ["a"], "ownerReferences": [owner("u1")]},
                "data": {"k": "dg=="}}
    before = copy.deepcopy(original)
    smp(original, {"metadata": {"finalizers": ["b"], "ownerReferences": [
        {"uid": "u1", "name": "y"}]}, "data": {"$patch": "delete"}})
    assert original == before
