"""The pure rules of the Machine controller: host selection by label selector, the
scale-down order, the phase, and the checks and defaults of the manifests."""

from __future__ import annotations

import datetime as dt

import pytest

from metalplane.conductor.hosts import FieldInvalid
from metalplane.conductor.machines import (
    MachineView,
    check_fields,
    check_machine_set,
    check_template,
    machine_phase,
    machines_to_delete,
    provider_id,
    selector_matches,
    selector_string,
)

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ({}, {"role": "worker"}, True),  # empty selects everything
    (None, {}, True),
    ({"matchLabels": {"role": "worker"}}, {"role": "worker", "rack": "3"}, True),
    ({"matchLabels": {"role": "worker"}}, {"role": "master"}, False),
    ({"matchLabels": {"role": "worker"}}, {}, False),
    ({"matchExpressions": [{"key": "rack", "operator": "In", "values": ["2", "3"]}]},
     {"rack": "3"}, True),
    ({"matchExpressions": [{"key": "rack", "operator": "In", "values": ["2", "3"]}]},
     {}, False),
    ({"matchExpressions": [{"key": "rack", "operator": "NotIn", "values": ["3"]}]},
     {}, True),
    ({"matchExpressions": [{"key": "rack", "operator": "NotIn", "values": ["3"]}]},
     {"rack": "3"}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"gpu": ""}, True),
    ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"gpu": "a"}, False),
    ({"matchLabels": {"role": "worker"},
      "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]},
     {"role": "worker"}, True),
])
def test_selector_matches(selector: dict[str, object] | None, labels: dict[str, str],
                          matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


def test_selector_string_is_the_query_syntax_sorted_by_key() -> None:
    assert selector_string({"matchLabels": {"z": "1", "a": "2"}, "matchExpressions": [
        {"key": "m", "operator": "In", "values": ["y", "x"]},
        {"key": "b", "operator": "DoesNotExist"},
        {"key": "n", "operator": "NotIn", "values": ["q"]},
        {"key": "e", "operator": "Exists"}]}) == "a=2,!b,e,m in (x,y),n notin (q),z=1"
    assert selector_string({}) == ""


def test_scale_down_deletes_marked_failed_and_unprovisioned_machines_before_newest() -> None:
    machines = [MachineView("old-up", at(0), provisioned=True),
                MachineView("new-up", at(5), provisioned=True),
                MachineView("mid-pending", at(2)),
                MachineView("old-failed", at(1), provisioned=True, failed=True),
                MachineView("marked", at(0), provisioned=True, marked=True)]
    assert machines_to_delete(machines, 5) == ["marked", "old-failed", "mid-pending",
                                               "new-up", "old-up"]
    assert machines_to_delete(machines, 3) == ["marked", "old-failed", "mid-pending"]
    ups = [m for m in machines if m.name.endswith("-up")]
    assert machines_to_delete(ups, 1) == ["new-up"]
    assert machines_to_delete(ups, 1, "Newest") == ["new-up"]
    assert machines_to_delete(ups, 1, "Oldest") == ["old-up"]
    assert sorted(machines_to_delete(ups, 2, "Random")) == ["new-up", "old-up"]
    assert machines_to_delete(machines, 0) == []
    assert machines_to_delete(machines, -1) == []
    # not provisioned ones go first among themselves by the policy too
    pending = [MachineView("p1", at(1)), MachineView("p2", at(2))]
    assert machines_to_delete([*ups, *pending], 1) == ["p2"]


@pytest.mark.parametrize(("args", "phase"), [
    ((True, True, "provisioned", False, True), "Deleting"),
    ((False, True, "provisioning", True, False), "Failed"),
    ((False, False, "available", False, False), "Pending"),
    ((False, True, "", False, False), "Provisioning"),  # no host yet
    ((False, True, "provisioning", False, False), "Provisioning"),
    ((False, True, "provisioned", False, False), "Provisioned"),
    ((False, True, "provisioned", False, True), "Running"),
])
def test_machine_phase(args: tuple[bool, bool, str, bool, bool], phase: str) -> None:
    assert machine_phase(*args) == phase


def test_provider_id_is_capm3s() -> None:
    assert provider_id("default", "worker-0", "workers-abcde") == \
        "metal3://default/worker-0/workers-abcde"


def _set(**spec: object) -> dict[str, object]:
    base: dict[str, object] = {
        "clusterName": "ostest",
        "template": {"spec": {"infrastructureRef": {"kind": "Metal3MachineTemplate",
                                                    "name": "workers"}}}}
    return {**base, **spec}


def test_machine_set_defaults_as_cluster_apis_webhook() -> None:
    spec = check_machine_set("workers", _set())
    assert spec["replicas"] == 1
    assert spec["selector"] == {"matchLabels": {"cluster.x-k8s.io/set-name": "workers"}}
    template = spec["template"]
    assert template["metadata"]["labels"] == {"cluster.x-k8s.io/set-name": "workers"}
    assert template["spec"]["clusterName"] == "ostest"
    kept = check_machine_set("workers", _set(
        replicas=0, selector={"matchLabels": {"pool": "a"}},
        template={"metadata": {"labels": {"pool": "a"}}, "spec": {
            "clusterName": "other", "infrastructureRef": {"kind": "Metal3MachineTemplate",
                                                          "name": "w"}}}))
    assert kept["replicas"] == 0 and kept["selector"] == {"matchLabels": {"pool": "a"}}
    assert kept["template"]["spec"]["clusterName"] == "other"


@pytest.mark.parametrize(("spec", "field"), [
    (_set(replicas=-1), "spec.replicas"),
    (_set(replicas="2"), "spec.replicas"),
    (_set(replicas=True), "spec.replicas"),
    ({"template": _set()["template"]}, "spec.clusterName"),
    (_set(deletePolicy="Cheapest"), "spec.deletePolicy"),
    (_set(selector={"matchLabels": {"pool": "a"}}), "spec.template.metadata.labels"),
    (_set(selector={"matchLabels": {"pool": 1}}), "spec.selector.matchLabels"),
    (_set(selector={"matchExpressions": [{"key": "a", "operator": "In"}]}),
     "spec.selector.matchExpressions[0].values"),
    (_set(selector={"matchExpressions": [{"key": "a", "operator": "Exists",
                                          "values": ["x"]}]}),
     "spec.selector.matchExpressions[0].values"),
    (_set(template={"spec": {}}), "spec.template.spec.infrastructureRef.name"),
    (_set(template={"spec": {"infrastructureRef": {"kind": "Metal3Machine", "name": "x"}}}),
     "spec.template.spec.infrastructureRef.kind"),
    (_set(template={"spec": {"infrastructureRef": {
        "kind": "Metal3MachineTemplate", "name": "x", "apiVersion": "v1"}}}),
     "spec.template.spec.infrastructureRef.apiVersion"),
    (_set(template={"spec": {"failureDomain": "a"}}), "spec.template.spec.failureDomain"),
    (_set(minReadySeconds=1.5), "spec.minReadySeconds"),
])
def test_machine_set_errors_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(FieldInvalid) as err:
        check_machine_set("workers", spec)
    assert err.value.field == field


def _template(**m3: object) -> dict[str, object]:
    return {"template": {"spec": {"image": {"url": "http://i/img.qcow2", "checksum": "abc"},
                                  **m3}}}


def test_template_checks() -> None:
    check_template(_template(hostSelector={"matchLabels": {"role": "worker"}},
                             userData={"name": "ud"}, automatedCleaningMode="disabled"))
    check_template({"template": {"spec": {"image": {"url": "http://i/x.iso",
                                                    "format": "live-iso"}}}})
    for spec, field in [
        ({"template": {"spec": {}}}, "spec.template.spec.image.url"),
        ({"template": {"spec": {"image": {"url": "u"}}}}, "spec.template.spec.image.checksum"),
        (_template(image={"url": "u", "checksum": "c", "format": "iso"}),
         "spec.template.spec.image.format"),
        (_template(image={"url": "u", "checksum": "c", "checksumType": "crc"}),
         "spec.template.spec.image.checksumType"),
        (_template(hostSelector={"matchExpressions": [{"key": "r", "operator": "Like"}]}),
         "spec.template.spec.hostSelector.matchExpressions[0].operator"),
        (_template(automatedCleaningMode="always"),
         "spec.template.spec.automatedCleaningMode"),
        (_template(customDeploy={"method": "x"}), "spec.template.spec.customDeploy"),
        ({"nodeReuse": True}, "spec.nodeReuse"),
    ]:
        with pytest.raises(FieldInvalid) as err:
            check_template(spec)
        assert err.value.field == field, spec


def test_check_fields_types() -> None:
    schema = {"a": [{"b": int}], "m": "map of strings", "s": str, "o": {"x": bool}}
    check_fields({"a": [{"b": 1}], "m": {"k": "v"}, "s": "x", "o": {"x": True},
                  "n": None} | {}, {**schema, "n": str}, "spec")
    for value, field in [({"a": {"b": 1}}, "spec.a"), ({"a": [{"b": "1"}]}, "spec.a[0].b"),
                         ({"m": {"k": 1}}, "spec.m"), ({"o": []}, "spec.o"),
                         ({"o": {"x": "true"}}, "spec.o.x"), ({"z": 1}, "spec.z"),
                         ([], "spec")]:
        with pytest.raises(FieldInvalid) as err:
            check_fields(value, schema, "spec")
        assert err.value.field == field, value


def test_conditions_ready_mirrors_the_first_waiting_reason_and_keeps_transition_times() -> None:
    from metalplane.conductor.machines import _conditions
    types = ("BootstrapReady", "InfrastructureReady")
    first = _conditions([], {"InfrastructureReady": "no host matches"}, types)
    by_type = {c["type"]: c for c in first}
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["reason"] == "WaitingForInfrastructure"
    assert by_type["Ready"]["message"] == "no host matches"
    assert by_type["BootstrapReady"] == {"type": "BootstrapReady", "status": "True",
                                         "lastTransitionTime": by_type["Ready"][
                                             "lastTransitionTime"]}
    old = [{**c, "lastTransitionTime": "2000-01-01T00:00:00Z"} for c in first]
    again = {c["type"]: c for c in _conditions(old, {"InfrastructureReady": "x"}, types)}
    assert again["InfrastructureReady"]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    done = {c["type"]: c for c in _conditions(old, {}, types)}
    assert done["Ready"]["status"] == "True" and "reason" not in done["Ready"]
    assert done["InfrastructureReady"]["lastTransitionTime"] != "2000-01-01T00:00:00Z"
    assert done["BootstrapReady"]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
