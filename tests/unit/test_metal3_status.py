"""A BareMetalHost's status from its node (metalplane.common.metal3), the spec check and
the Kubernetes conventions helpers of the Kubernetes-style API (selectors, AGE)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.api.k8s_api import KubeError, human_duration, match_labels
from metalplane.common.metal3 import host_status, provisioning_state
from metalplane.conductor.hosts import FieldInvalid, KubeStore, check_name, check_spec

SPEC = {"online": True, "bmc": {"address": "ipmi://192.0.2.1", "credentialsName": "bmc"}}
WHEN = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)


def node(**fields: Any) -> SimpleNamespace:
    values: dict[str, Any] = dict(
        uuid="u-1", provision_state="available", target_provision_state=None,
        power_state="power off", last_error=None, maintenance=False, properties={},
        created_at=WHEN, updated_at=None, reservation=None, inspection_finished_at=WHEN)
    values.update(fields)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(("state", "metal3"), [
    ("enroll", "registering"), ("verifying", "registering"), ("inspecting", "inspecting"),
    ("inspect wait", "inspecting"), ("cleaning", "preparing"), ("available", "available"),
    ("deploying", "provisioning"), ("wait call-back", "provisioning"),
    ("active", "provisioned"), ("deleting", "deprovisioning"),
])
def test_provisioning_state_names(state: str, metal3: str) -> None:
    assert provisioning_state(node(provision_state=state)) == metal3


def test_externally_provisioned_only_when_the_spec_says_so() -> None:
    assert provisioning_state(node(provision_state="active"), True) == "externally provisioned"
    assert provisioning_state(node(provision_state="adopting"), True) == \
        "externally provisioned"
    assert provisioning_state(node(provision_state="available"), True) == "available"
    st = host_status(node(provision_state="active"), {**SPEC, "externallyProvisioned": True})
    assert st["provisioning"]["state"] == "externally provisioned"
    assert st["hardwareProfile"] == ""


def test_an_available_host_is_ok() -> None:
    st = host_status(node(), SPEC, "lab")
    assert st["operationalStatus"] == "OK"
    assert st["errorType"] == "" and st["errorMessage"] == "" and st["errorCount"] == 0
    assert st["poweredOn"] is False
    assert st["provisioning"] == {"state": "available", "ID": "u-1", "image": {}}
    assert st["goodCredentials"] == {"credentials": {"name": "bmc", "namespace": "lab"}}
    assert st["lastUpdated"] == "2026-12-01T14:00:00Z"
    assert "hardware" not in st  # not inspected: no HardwareDetails


@pytest.mark.parametrize(("state", "error_type"), [
    ("inspect failed", "inspection error"), ("clean failed", "preparation error"),
    ("deploy failed", "provisioning error"), ("adopt failed",
                                              "provisioned registration error"),
])
def test_failed_states_are_errors_of_metal3s_types(state: str, error_type: str) -> None:
    st = host_status(node(provision_state=state, last_error="boom"), SPEC)
    assert (st["operationalStatus"], st["errorType"], st["errorMessage"]) == (
        "error", error_type, "boom")


def test_wrong_credentials_are_a_registration_error_without_good_credentials() -> None:
    st = host_status(node(provision_state="enroll", last_error="401 Unauthorized"), SPEC)
    assert st["operationalStatus"] == "error" and st["errorType"] == "registration error"
    assert st["provisioning"]["state"] == "registering"
    assert st["goodCredentials"] == {}


def test_detached_powered_discovered_and_hardware() -> None:
    assert host_status(node(maintenance=True), SPEC)["operationalStatus"] == "detached"
    assert host_status(node(), {"bmc": {"address": "ipmi://x"}})["operationalStatus"] == \
        "discovered"
    assert host_status(node(power_state="power on"), SPEC)["poweredOn"] is True
    hw = host_status(node(properties={"cpus": 8, "memory_mb": 16384, "local_gb": 100,
                                      "cpu_arch": "x86_64"}), SPEC)["hardware"]
    assert hw["cpu"] == {"arch": "x86_64", "count": 8}
    assert hw["ramMebibytes"] == 16384
    assert hw["storage"] == [{"sizeBytes": 100 * 1024 ** 3}]
    st = host_status(node(provision_state="active"), {**SPEC, "image": {"url": "http://i"}})
    assert st["provisioning"]["image"] == {"url": "http://i"}


def test_next_verb_takes_one_step_towards_available_or_adopted() -> None:
    verb = KubeStore.next_verb
    assert verb(node(provision_state="enroll"), SPEC) == "manage"
    assert verb(node(provision_state="enroll", last_error="x"), SPEC) is None
    assert verb(node(provision_state="manageable", inspection_finished_at=None), SPEC) == \
        "inspect"
    assert verb(node(provision_state="manageable"), SPEC) == "provide"
    assert verb(node(provision_state="manageable"), {**SPEC, "externallyProvisioned": True}
                ) == "adopt"
    assert verb(node(provision_state="verifying", reservation="c"), SPEC) is None
    assert verb(node(provision_state="enroll", maintenance=True), SPEC) is None
    for state in ("available", "active", "inspect failed", "clean failed"):
        assert verb(node(provision_state=state), SPEC) is None


def test_spec_check_names_the_field() -> None:
    check_spec({**SPEC, "image": {"url": "http://i", "checksum": "c"},
                "rootDeviceHints": {"minSizeGigabytes": 10}, "automatedCleaningMode": "disabled",
                "consumerRef": {"name": "m"}, "userData": {"name": "ud"}})
    for spec, field in (({"bogus": 1}, "spec.bogus"),
                        ({"bmc": {"adress": "x"}}, "spec.bmc.adress"),
                        ({"online": "yes"}, "spec.online"),
                        ({"rootDeviceHints": {"minSizeGigabytes": True}},
                         "spec.rootDeviceHints.minSizeGigabytes"),
                        ({"automatedCleaningMode": "always"}, "spec.automatedCleaningMode"),
                        ({"image": "http://i"}, "spec.image")):
        with pytest.raises(FieldInvalid) as exc:
            check_spec(spec)
        assert exc.value.field == field and exc.value.message.startswith(field)
    assert check_name("worker-0.rack-1") == "worker-0.rack-1"
    for bad in ("", "Worker", "-a", "a_b", "a" * 254):
        with pytest.raises(FieldInvalid):
            check_name(bad)


def test_label_selectors() -> None:
    labels = {"role": "worker", "zone": "a"}
    for selector, matches in (("role=worker", True), ("role==worker", True),
                              ("role!=worker", False), ("role=worker,zone=b", False),
                              ("role", True), ("!role", False), ("rack", False),
                              ("!rack", True), ("zone in (a, b)", True),
                              ("zone notin (a,b)", False), ("role in (master)", False),
                              ("", True)):
        assert match_labels(selector, labels) is matches, selector
    with pytest.raises(KubeError):
        match_labels("=x", labels)


def test_age_as_kubectl_prints_it() -> None:
    for seconds, text in ((5, "5s"), (119, "119s"), (130, "2m10s"), (600, "10m"),
                          (3 * 3600 + 60, "3h1m"), (20 * 3600, "20h"),
                          (3 * 86400 + 4 * 3600, "3d4h"), (12 * 86400, "12d"), (-3, "0s")):
        assert human_duration(seconds) == text
