"""A BareMetalHost's status from its node (metalplane.common.metal3), the spec check and
the Kubernetes conventions helpers of the Kubernetes-style API (selectors, AGE)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from metalplane.api.k8s_api import KubeError, human_duration, match_labels
from metalplane.common.metal3 import host_status, provisioning_state
from metalplane.conductor.host_reconcile import Step, bmc_address, decide, mirror_spec
from metalplane.conductor.hosts import FieldInvalid, check_name, check_spec

SPEC = {"online": True, "bmc": {"address": "ipmi://192.0.2.1", "credentialsName": "bmc"}}
WHEN = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)


def node(**fields: Any) -> SimpleNamespace:
    values: dict[str, Any] = dict(
        uuid="u-1", provision_state="available", target_provision_state=None,
        power_state="power off", last_error=None, maintenance=False, properties={},
        created_at=WHEN, updated_at=None, reservation=None, inspection_finished_at=WHEN,
        target_power_state=None, instance_info={})
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
    assert host_status(node(provision_state="enroll"), {"bmc": {"address": "ipmi://x"}}
                       )["operationalStatus"] == "discovered"
    # registered without a Secret (a node of the Bare Metal API): its BMC answers
    assert host_status(node(), {"bmc": {"address": "ipmi://x"}})["operationalStatus"] == "OK"
    assert host_status(node(power_state="power on"), SPEC)["poweredOn"] is True
    hw = host_status(node(properties={"cpus": 8, "memory_mb": 16384, "local_gb": 100,
                                      "cpu_arch": "x86_64"}), SPEC)["hardware"]
    assert hw["cpu"] == {"arch": "x86_64", "count": 8}
    assert hw["ramMebibytes"] == 16384
    assert hw["storage"] == [{"sizeBytes": 100 * 1024 ** 3}]
    st = host_status(node(provision_state="active", instance_info={"image_source": "http://i"}),
                     {**SPEC, "image": {"url": "http://j"}})
    assert st["provisioning"]["image"] == {"url": "http://i"}  # what is deployed


def test_decide_takes_one_step_towards_available_or_adopted() -> None:
    def verb(n: SimpleNamespace, spec: dict[str, Any]) -> str | None:
        step = decide(n, spec)
        return step.arg if step is not None and step.kind == "verb" else None

    assert verb(node(provision_state="enroll"), SPEC) == "manage"
    assert verb(node(provision_state="enroll", last_error="x"), SPEC) is None
    assert verb(node(provision_state="manageable", inspection_finished_at=None), SPEC) == \
        "inspect"
    assert verb(node(provision_state="manageable"), SPEC) == "provide"
    assert verb(node(provision_state="manageable"), {**SPEC, "externallyProvisioned": True}
                ) == "adopt"
    assert decide(node(provision_state="verifying", reservation="c"), SPEC) is None
    assert decide(node(provision_state="enroll", maintenance=True), SPEC) is None
    for state in ("inspect failed", "clean failed"):
        assert decide(node(provision_state=state), SPEC) is None


IMAGE = {"url": "http://i/a.qcow2", "checksum": "sha256:ab", "format": "qcow2"}
DEPLOYED = {"image_source": "http://i/a.qcow2", "image_checksum": "sha256:ab",
            "image_disk_format": "qcow2"}


def test_decide_provisions_deprovisions_and_powers() -> None:
    online = {**SPEC, "online": True}
    assert decide(node(), {**online, "image": IMAGE}) == Step("deploy")
    assert decide(node(), online) == Step("power", "power on")  # no image: just power
    assert decide(node(power_state="power on"), online) is None
    active = node(provision_state="active", power_state="power on", instance_info=DEPLOYED)
    assert decide(active, {**online, "image": IMAGE}) is None
    assert decide(active, {**online, "image": IMAGE, "online": False}) == \
        Step("power", "power off")
    assert decide(active, online) == Step("verb", "undeploy")  # image removed
    assert decide(active, {**online, "image": {**IMAGE, "url": "http://i/b"}}) == \
        Step("verb", "undeploy")  # image changed: deprovision first
    assert decide(node(provision_state="active"), {**online, "externallyProvisioned": True}
                  ) == Step("power", "power on")  # adopted: power only
    assert decide(node(provision_state="active", target_power_state="power on"),
                  online) is None  # moving: wait


def test_a_failed_deploy_is_retried_only_for_new_inputs() -> None:
    drive = {"meta_data": {"name": "h"}}
    failed = node(provision_state="deploy failed", last_error="boom",
                  instance_info={**DEPLOYED, "configdrive": drive})
    spec = {**SPEC, "image": IMAGE}
    assert decide(failed, spec, drive=lambda: drive) is None
    assert decide(failed, spec, drive=lambda: {"user_data": "new"}) == Step("deploy")
    assert decide(failed, {**spec, "image": {**IMAGE, "checksum": "sha256:cd"}},
                  drive=lambda: drive) == Step("deploy")
    assert decide(failed, SPEC) == Step("verb", "undeploy")


def test_decide_on_a_deleted_host() -> None:
    active = node(provision_state="active", instance_info=DEPLOYED)
    assert decide(active, {**SPEC, "image": IMAGE}, deleting=True) == Step("verb", "undeploy")
    assert decide(active, {**SPEC, "externallyProvisioned": True}, deleting=True) == \
        Step("delete_node", "detach")
    on = node(power_state="power on")
    assert decide(on, SPEC, deleting=True) == Step("power", "power off")
    assert decide(on, SPEC, deleting=True, powered_off_tried=True) == Step("delete_node")
    assert decide(node(), SPEC, deleting=True) == Step("delete_node")
    assert decide(None, SPEC, deleting=True) == Step("finalize")
    assert decide(None, SPEC) is None
    st = host_status(on, SPEC, deleting=True)
    assert st["provisioning"]["state"] == "powering off before delete"
    assert host_status(node(provision_state="cleaning", instance_info=DEPLOYED), SPEC
                       )["provisioning"]["state"] == "deprovisioning"
    assert host_status(active, SPEC, deleting=True)["provisioning"]["state"] == \
        "deprovisioning"


def test_a_node_of_the_bare_metal_api_as_a_host_spec() -> None:
    n = node(driver="redfish", driver_info={"redfish_address": "http://10.0.0.1:8000",
                                            "redfish_system_id": "/redfish/v1/Systems/s1",
                                            "redfish_password": "secret"},
             power_state="power on", instance_info={}, description=None, extra={},
             automated_clean=None)
    assert mirror_spec(n, "52:54:00:00:00:01") == {  # type: ignore[arg-type]
        "online": True, "bootMACAddress": "52:54:00:00:00:01",
        "bmc": {"address": "redfish+http://10.0.0.1:8000/redfish/v1/Systems/s1"}}
    assert bmc_address("ipmi", {"ipmi_address": "10.0.0.2", "ipmi_port": 6230}) == \
        "ipmi://10.0.0.2:6230"
    assert bmc_address("fake-hardware", {}) == ""
    adopted = node(driver="fake-hardware", driver_info={}, provision_state="active",
                   instance_info={}, description="d", extra={"consumer": "m"},
                   automated_clean=False)
    assert mirror_spec(adopted, None) == {  # type: ignore[arg-type]
        "online": False, "externallyProvisioned": True, "description": "d",
        "consumerRef": {"name": "m"}, "automatedCleaningMode": "disabled"}


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
