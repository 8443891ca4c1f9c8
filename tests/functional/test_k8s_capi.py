"""Cluster API MachineSets and Machines with the real kubectl against a real server whose
hosts' BMCs are sushy-tools' emulator (issue #19): the example's Metal3MachineTemplate and
MachineSet, ``kubectl scale`` claiming ``role: worker`` hosts through Ironic allocations
and releasing them, the tables, and bad manifests answered with a Status."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.functional.test_k8s import EXAMPLE, Kubectl, kubeconfig
from tests.helpers.peers import Emulator, sushy_emulator
from tests.helpers.server import RunningServer

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")]

MACHINESET = Path(__file__).parents[2] / "examples" / "metal3" / "machineset.yaml"
HOSTS = {"worker-0": "worker", "worker-1": "worker", "master-0": "master"}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=len(HOSTS)) as emu:
        yield emu


def until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """``check()``'s first true answer, polled every 0.3 s for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.3)
    raise AssertionError(f"not {what} after {timeout}s")


def hosts_manifest(emulator: Emulator, tmp: Path) -> Path:
    """The example's Secret and host for each of HOSTS, labelled ``role``."""
    secret, host = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    docs: list[dict[str, Any]] = [secret]
    for i, (name, role) in enumerate(HOSTS.items()):
        docs.append({**host, "apiVersion": "metal3.io/v1alpha1",
                     "metadata": {"name": name, "labels": {"role": role}},
                     "spec": {**host["spec"], "bootMACAddress": f"00:ab:4f:d8:9e:{i:02x}",
                              "bmc": {**host["spec"]["bmc"], "address": (
                                  f"redfish+http://{emulator.url.removeprefix('http://')}"
                                  f"/redfish/v1/Systems/{emulator.systems[i]['uuid']}")}}})
    out = tmp / "hosts.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    return out


def items(kubectl: Kubectl, what: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(kubectl("get", what, "-o", "json").stdout)
    return {i["metadata"]["name"]: i for i in doc["items"]}


def ready_to_scale(server: RunningServer, emulator: Emulator, tmp: Path) -> Kubectl:
    """kubectl, with the hosts ``available`` and the example's manifests created."""
    kubectl = kubeconfig(server, tmp / "kubeconfig")
    kubectl("create", "-f", str(hosts_manifest(emulator, tmp)))
    until("all hosts available", lambda: all(
        (h.get("status") or {}).get("provisioning", {}).get("state") == "available"
        for h in items(kubectl, "bmh").values()) and len(items(kubectl, "bmh")) == 3)
    r = kubectl("create", "-f", str(MACHINESET))
    assert r.stdout.splitlines() == [
        "secret/workers-user-data created",
        "metal3machinetemplate.infrastructure.cluster.x-k8s.io/workers created",
        "machineset.cluster.x-k8s.io/workers created"]
    return kubectl


def consumers(kubectl: Kubectl) -> dict[str, str]:
    """host name -> the name of the Machine consuming it."""
    return {name: ((h["spec"].get("consumerRef") or {}).get("name") or "")
            for name, h in items(kubectl, "bmh").items()}


def test_scale_claims_and_releases_worker_hosts(server: RunningServer, emulator: Emulator,
                                                tmp_path: Path) -> None:
    kubectl = ready_to_scale(server, emulator, tmp_path)
    resources = [line.split() for line in kubectl("api-resources").stdout.splitlines()]
    assert ["machinesets", "ms", "cluster.x-k8s.io/v1beta1", "true", "MachineSet"] in resources
    assert ["machines", "ma", "cluster.x-k8s.io/v1beta1", "true", "Machine"] in resources
    assert ["metal3machinetemplates", "m3mt", "infrastructure.cluster.x-k8s.io/v1beta1", "true",
            "Metal3MachineTemplate"] in resources

    table = kubectl("get", "ms").stdout.splitlines()
    assert table[0].split() == ["NAME", "CLUSTER", "REPLICAS", "READY", "AVAILABLE", "AGE",
                                "VERSION"]
    assert table[1].split()[:5] == ["workers", "ostest", "0", "0", "0"]
    wide = kubectl("get", "ms", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[:3] == ["NAME", "CLUSTER", "DESIRED"]

    r = kubectl("scale", "machineset", "workers", "--replicas=2")
    assert r.stdout.strip() == "machineset.cluster.x-k8s.io/workers scaled"
    owners = until("two worker hosts claimed", lambda: (
        c := consumers(kubectl))["worker-0"] and c["worker-1"] and c)
    assert owners["master-0"] == ""  # not selected by role: worker
    machines = items(kubectl, "machines")
    assert sorted(machines) == sorted([owners["worker-0"], owners["worker-1"]])
    ms = items(kubectl, "ms")["workers"]
    for name, machine in machines.items():
        assert name.startswith("workers-") and len(name) == len("workers-") + 5
        assert machine["metadata"]["labels"]["machineset"] == "workers"
        assert machine["metadata"]["labels"]["cluster.x-k8s.io/set-name"] == "workers"
        assert machine["metadata"]["finalizers"] == ["machine.cluster.x-k8s.io"]
        assert machine["metadata"]["ownerReferences"] == [{
            "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineSet",
            "name": "workers", "uid": ms["metadata"]["uid"], "controller": True,
            "blockOwnerDeletion": True}]
        assert machine["spec"]["infrastructureRef"]["name"] == "workers"
    hosts = items(kubectl, "bmh")
    for host in ("worker-0", "worker-1"):
        spec = hosts[host]["spec"]
        assert spec["consumerRef"] == {"apiVersion": "cluster.x-k8s.io/v1beta1",
                                       "kind": "Machine", "name": owners[host],
                                       "namespace": "default"}
        assert spec["image"]["url"] == \
            "http://172.22.0.1/images/debian-12-generic-amd64.qcow2"
        assert spec["image"]["format"] == "qcow2"
        assert spec["userData"] == {"name": "workers-user-data", "namespace": "default"}
        assert spec["online"] is True
    assert "image" not in hosts["master-0"]["spec"]

    # the claims are Ironic allocations: the Machine's uid, the worker's node
    allocations = server.http.get("/v1/allocations").json()["allocations"]
    nodes = {server.node(h)["uuid"]: h for h in HOSTS}
    assert {a["uuid"]: nodes[a["node_uuid"]] for a in allocations} == {
        machines[owners[h]]["metadata"]["uid"]: h for h in ("worker-0", "worker-1")}
    assert all(a["state"] == "active" for a in allocations)

    table = kubectl("get", "machines").stdout.splitlines()
    assert table[0].split() == ["NAME", "CLUSTER", "NODENAME", "PROVIDERID", "PHASE", "AGE",
                                "VERSION"]
    until("two replicas counted", lambda: kubectl(
        "get", "ms", "workers", "-o", "jsonpath={.status.replicas}").stdout == "2")
    status = items(kubectl, "ms")["workers"]["status"]
    assert status["selector"] == "machineset=workers"
    assert status["observedGeneration"] == ms["metadata"]["generation"]
    machine = items(kubectl, "machines")[owners["worker-0"]]
    assert machine["status"]["bootstrapReady"] is True
    assert machine["status"]["phase"] in ("Provisioning", "Provisioned", "Running")

    # the scale subresource, as kubectl's --current-replicas uses it (GET, then PUT)
    r = kubectl("scale", "ms", "workers", "--current-replicas=3", "--replicas=1", ok=False)
    assert r.returncode != 0 and "Expected replicas to be 3, was 2" in r.stderr
    r = kubectl("get", "--raw", "/apis/cluster.x-k8s.io/v1beta1/namespaces/default/"
                "machinesets/workers/scale")
    scale = json.loads(r.stdout)
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "machineset=workers"}

    r = kubectl("scale", "ms", "workers", "--current-replicas=2", "--replicas=0")
    assert "scaled" in r.stdout
    until("both hosts released", lambda: not any(consumers(kubectl).values())
          and not items(kubectl, "machines"), timeout=90)
    hosts = items(kubectl, "bmh")
    for host in ("worker-0", "worker-1"):
        assert "image" not in hosts[host]["spec"] and "userData" not in hosts[host]["spec"]
        assert hosts[host]["status"]["provisioning"]["state"] == "available"
    assert server.http.get("/v1/allocations").json()["allocations"] == []
    until("no replicas counted", lambda: kubectl(
        "get", "ms", "workers", "-o", "jsonpath={.status.replicas}").stdout == "0")

    # a Machine deleted by hand goes through its finalizer; its set makes another one
    kubectl("scale", "ms", "workers", "--replicas=1")
    first = until("a host claimed", lambda: next(
        (m for m in consumers(kubectl).values() if m), ""))
    kubectl("delete", "machine", first, "--wait=false")
    until("the Machine replaced", lambda: (c := [m for m in consumers(kubectl).values() if m])
          and first not in c and first not in items(kubectl, "machines"), timeout=90)
    # deleting the set deletes its Machines (the garbage collector), freeing the host
    kubectl("delete", "ms", "workers")
    until("the hosts free", lambda: not any(consumers(kubectl).values())
          and not items(kubectl, "machines"), timeout=90)


def test_scale_provisions_and_deprovisions_hosts(server: RunningServer, emulator: Emulator,
                                                 tmp_path: Path) -> None:
    """End to end, as the Metal3 demo: scaling to 1 provisions a worker, 0 deprovisions
    it and it is available again."""
    kubectl = ready_to_scale(server, emulator, tmp_path)
    kubectl("scale", "machineset", "workers", "--replicas=1")

    def provisioned() -> str:
        for name, h in items(kubectl, "bmh").items():
            if h["status"]["provisioning"]["state"] == "provisioned":
                return name
        return ""

    host = until("a host provisioned", provisioned, timeout=60)
    machine = until("the Machine running", lambda: next(
        (m for m in items(kubectl, "machines").values()
         if m["status"].get("phase") == "Running"), None))
    assert machine["spec"]["providerID"] == \
        f"metal3://default/{host}/{machine['metadata']['name']}"
    assert machine["status"]["infrastructureReady"] is True
    until("one ready replica", lambda: items(kubectl, "ms")["workers"]["status"].get(
        "readyReplicas") == 1)
    kubectl("scale", "machineset", "workers", "--replicas=0")
    until("the host available again", lambda: items(kubectl, "bmh")[host]["status"][
        "provisioning"]["state"] == "available" and not items(kubectl, "machines"),
        timeout=90)


def test_bad_manifests_get_a_status_naming_the_field(server: RunningServer,
                                                     tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    docs = {d["kind"]: d for d in yaml.safe_load_all(MACHINESET.read_text()) if d}

    def create(doc: dict[str, Any]) -> str:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(doc))
        r = kubectl("create", "-f", str(path), ok=False)
        assert r.returncode != 0
        return r.stderr

    ms, m3mt = docs["MachineSet"], docs["Metal3MachineTemplate"]
    assert 'spec.replicas: Invalid value: -1: must be greater than or equal to 0' in create(
        {**ms, "spec": {**ms["spec"], "replicas": -1}})
    assert 'spec.clusterName: Required value' in create(
        {**ms, "spec": {k: v for k, v in ms["spec"].items() if k != "clusterName"}})
    err = create({**ms, "spec": {**ms["spec"], "selector": {"matchLabels": {"tier": "db"}}}})
    assert "spec.template.metadata.labels" in err and "does not match" in err
    err = create({**ms, "spec": {**ms["spec"], "template": {**ms["spec"]["template"], "spec": {
        **ms["spec"]["template"]["spec"], "infrastructureRef": {"kind": "AWSMachineTemplate",
                                                                "name": "x"}}}}})
    assert 'spec.template.spec.infrastructureRef.kind: Unsupported value: ' \
        '"AWSMachineTemplate"' in err
    # kubectl (>= 1.25) asks for fieldValidation=Strict: the schema's walk names it
    assert 'strict decoding error: unknown field "spec.replica"' in create(
        {**ms, "spec": {**ms["spec"], "replica": 2}})
    assert "spec.template.spec.image.url: Required value" in create(
        {**m3mt, "spec": {"template": {"spec": {"image": {"checksum": "x"}}}}})
    err = create({**m3mt, "spec": {"template": {"spec": {
        **m3mt["spec"]["template"]["spec"],
        "hostSelector": {"matchExpressions": [{"key": "role", "operator": "Like"}]}}}}})
    assert 'spec.template.spec.hostSelector.matchExpressions[0].operator: Unsupported ' \
        'value: "Like"' in err
    assert "The Metal3MachineTemplate" in err or "Metal3MachineTemplate" in err
    assert kubectl("get", "ms,m3mt", "-o", "name").stdout == ""

    kubectl("create", "-f", str(MACHINESET))
    kubectl("apply", "-f", str(MACHINESET))  # from /openapi/v2, with merge patches
    r = kubectl("apply", "-f", str(MACHINESET))  # the second changes nothing
    assert "metal3machinetemplate.infrastructure.cluster.x-k8s.io/workers unchanged" in \
        r.stdout.splitlines()
    assert "machineset.cluster.x-k8s.io/workers unchanged" in r.stdout.splitlines()
    assert "clusterName\t<string>" in kubectl("explain", "machineset.spec.template.spec").stdout
    r = kubectl("scale", "ms", "workers", "--replicas=-1", ok=False)
    assert r.returncode != 0 and "replicas" in r.stderr
    r = kubectl("get", "ms", "nothere", ok=False)
    assert 'machinesets.cluster.x-k8s.io "nothere" not found' in r.stderr
    r = kubectl("patch", "ms", "workers", "--type", "merge", "-p",
                '{"spec": {"replicas": 3, "template": {"spec": {"bootstrap": '
                '{"configRef": {"name": "kubeadm"}}}}}}', ok=False)
    assert 'spec.template.spec.bootstrap.configRef: unknown field "configRef"' in r.stderr
    r = kubectl("patch", "ms", "workers", "--type", "merge", "-p", '{"spec": {"replicas": 0,'
                ' "deletePolicy": "Oldest"}}')
    assert "patched" in r.stdout
    assert kubectl("get", "ms", "workers", "-o",
                   "jsonpath={.spec.deletePolicy}").stdout == "Oldest"

    # a stale Scale is refused as any stale object (kubectl checks its own precondition
    # first, so this asks the server directly)
    url = (f"{server.k8s_url}/apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinesets/"
           "workers/scale")
    answer = httpx.put(url, json={
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "workers", "resourceVersion": "1"}, "spec": {"replicas": 2}},
        timeout=30)
    assert answer.status_code == 409 and answer.json()["reason"] == "Conflict"
    answer = httpx.patch(url, content='{"spec": {"replicas": "two"}}', timeout=30,
                         headers={"Content-Type": "application/merge-patch+json"})
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"][0]["field"] == "spec.replicas"

    # a Machine made by hand gets the finalizer and says why it waits
    lone = tmp_path / "lone.yaml"
    lone.write_text(yaml.safe_dump({
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
        "metadata": {"name": "lone"}, "spec": {"clusterName": "ostest", "infrastructureRef": {
            "kind": "Metal3MachineTemplate", "name": "nothere"}}}))
    kubectl("create", "-f", str(lone))
    machine = until("the Machine reconciled", lambda: (m := json.loads(kubectl(
        "get", "ma", "lone", "-o", "json").stdout)).get("status") and m)
    assert machine["metadata"]["finalizers"] == ["machine.cluster.x-k8s.io"]
    assert machine["status"]["phase"] == "Pending"
    conditions = {c["type"]: c for c in machine["status"]["conditions"]}
    assert conditions["InfrastructureReady"]["status"] == "False"
    assert conditions["InfrastructureReady"]["message"] == \
        'Metal3MachineTemplate "nothere" not found'
    assert conditions["BootstrapReady"]["status"] == "False"
    assert "no user data" in conditions["BootstrapReady"]["message"]
    assert kubectl("delete", "ma", "lone").stdout.strip() == \
        'machine.cluster.x-k8s.io "lone" deleted'
    assert kubectl("get", "ma", "-o", "name").stdout == ""


def test_patches_and_scales_outlive_the_controllers_status_writes(
        server: RunningServer, tmp_path: Path) -> None:
    """A patch without a resourceVersion of its own applies to the latest object, as the
    apiserver retries it: the controller's status writes (Machines made and deleted as
    the set scales) never turn ``kubectl scale`` or ``kubectl patch`` into a 409."""
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    kubectl("create", "-f", str(MACHINESET))
    url = f"{server.k8s_url}/apis/cluster.x-k8s.io/v1beta1/namespaces/default/machinesets/" \
        "workers"
    merge = {"Content-Type": "application/merge-patch+json"}
    answers = []
    with httpx.Client(timeout=30, headers=merge) as http:
        for i in range(40):
            answers.append(http.patch(f"{url}/scale", content=json.dumps(
                {"spec": {"replicas": i % 4}})).status_code)
            answers.append(http.patch(url, content=json.dumps(
                {"metadata": {"labels": {"round": str(i)}}})).status_code)
    assert answers == [200] * 80
    assert kubectl("get", "ms", "workers", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    until("three Machines", lambda: len(items(kubectl, "machines")) == 3)
