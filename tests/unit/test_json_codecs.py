"""JSON through orjson, with the stdlib for what orjson refuses: the store's JSON columns
read back, and the Kubernetes-style API's lists sent."""

from __future__ import annotations

import json
import math

import pytest

from metalplane.db.engine import json_loads


def test_ordinary_documents_read_as_the_stdlib_reads_them() -> None:
    doc = {"spec": {"online": True, "bmc": {"address": "redfish+http://[::1]:8000/x"}},
           "n": [1, 2.5, None, "é"]}
    assert json_loads(json.dumps(doc)) == doc


def test_what_orjson_refuses_but_the_stdlib_wrote_still_reads() -> None:
    assert json_loads(json.dumps({"size": 2 ** 70})) == {"size": 2 ** 70}
    assert math.isnan(json_loads(json.dumps({"x": float("nan")}))["x"])


def test_bad_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        json_loads("{not json")


def test_k8s_lists_are_sent_as_the_stdlib_would_encode_them() -> None:
    from metalplane.api.k8s_api import sent

    doc = {"items": [{"name": "é", "n": 1.5, "ok": True, "none": None}]}
    assert json.loads(sent(doc).body) == doc
    assert json.loads(sent({"size": 2 ** 70}).body) == {"size": 2 ** 70}  # the fallback
